using Microsoft.ML.Data;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// One trained transformer used from 8 threads, through a PredictionEngine per thread and through concurrent batch
/// Transform calls, gives exactly the scores a single thread gets.
/// </summary>
[TestClass]
public sealed class ConcurrencyTests
{
    private const int Threads = 8;
    private static string _model = string.Empty;
    private static MLContext _ml = null!;
    private static ITransformer _trained = null!;
    private static List<ToyData.Row> _rows = null!;

    [ClassInitialize]
    public static void Train(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 41);
        _ml = new MLContext(seed: 1);
        var train = _ml.Data.LoadFromEnumerable(ToyData.Rows(48, seed: 1));
        var options = BadDataTests.Options(_model);
        options.Epochs = 2;
        _trained = _ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(_ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options))
            .Fit(train);
        _rows = ToyData.Rows(40, seed: 2);
        _rows.AddRange(BadDataTests.UnusualTexts.Select(t => new ToyData.Row { Text = t, Label = "positive" }));
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void PredictionEnginesOnEightThreadsGiveTheSingleThreadScores()
    {
        var engine = _ml.Model.CreatePredictionEngine<ToyData.Row, Prediction>(_trained);
        var expected = _rows.Select(r => engine.Predict(r)).Select(p => (p.Score.ToArray(), p.PredictedLabel)).ToArray();

        var results = new (float[] Score, uint Label)[Threads][];
        RunOnThreads(thread =>
        {
            // Each thread has its own engine and walks the rows in its own order.
            var own = _ml.Model.CreatePredictionEngine<ToyData.Row, Prediction>(_trained);
            var mine = new (float[], uint)[_rows.Count];
            var order = Enumerable.Range(0, _rows.Count).ToArray();
            new Random(thread).Shuffle(order);
            foreach (var i in order)
            {
                var p = own.Predict(_rows[i]);
                mine[i] = (p.Score.ToArray(), p.PredictedLabel);
            }

            results[thread] = mine;
        });

        for (var t = 0; t < Threads; t++)
        {
            for (var i = 0; i < _rows.Count; i++)
            {
                CollectionAssert.AreEqual(expected[i].Item1, results[t][i].Score, $"thread {t}, row {i}: scores [{string.Join(", ", results[t][i].Score)}] differ from the single-thread scores [{string.Join(", ", expected[i].Item1)}]");
                Assert.AreEqual(expected[i].PredictedLabel, results[t][i].Label, $"thread {t}, row {i}");
            }
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void ConcurrentBatchTransformsGiveTheSingleThreadScores()
    {
        var data = _ml.Data.LoadFromEnumerable(_rows);
        var expected = _trained.Transform(data).GetColumn<float[]>("Score").ToArray();

        var results = new float[Threads][][];
        RunOnThreads(thread =>
        {
            // Half the threads share one transformed view, half make their own: both are used concurrently.
            var view = thread % 2 == 0 ? _trained.Transform(data) : _trained.Transform(_ml.Data.LoadFromEnumerable(_rows));
            results[thread] = view.GetColumn<float[]>("Score").ToArray();
        });

        for (var t = 0; t < Threads; t++)
        {
            Assert.AreEqual(expected.Length, results[t].Length);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], results[t][i], $"thread {t}, row {i}: scores differ from the single-thread scores");
            }
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void EnginesAndBatchTransformsMixedOnEightThreadsAgree()
    {
        var data = _ml.Data.LoadFromEnumerable(_rows);
        var batch = _trained.Transform(data).GetColumn<float[]>("Score").ToArray();
        var engine = _ml.Model.CreatePredictionEngine<ToyData.Row, Prediction>(_trained);
        var single = _rows.Select(r => engine.Predict(r).Score.ToArray()).ToArray();

        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        RunOnThreads(thread =>
        {
            for (var round = 0; round < 2; round++)
            {
                if ((thread + round) % 2 == 0)
                {
                    var scores = _trained.Transform(data).GetColumn<float[]>("Score").ToArray();
                    for (var i = 0; i < scores.Length; i++)
                    {
                        if (!scores[i].SequenceEqual(batch[i]))
                        {
                            failures.Add($"thread {thread}: batch row {i}");
                        }
                    }
                }
                else
                {
                    var own = _ml.Model.CreatePredictionEngine<ToyData.Row, Prediction>(_trained);
                    for (var i = 0; i < _rows.Count; i++)
                    {
                        if (!own.Predict(_rows[i]).Score.SequenceEqual(single[i]))
                        {
                            failures.Add($"thread {thread}: engine row {i}");
                        }
                    }
                }
            }
        });

        Assert.IsTrue(failures.IsEmpty, $"{failures.Count} row(s) differ: {string.Join("; ", failures.Take(10))}");
    }

    private static void RunOnThreads(Action<int> work)
    {
        using var start = new Barrier(Threads);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                work(t);
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (!errors.IsEmpty)
        {
            throw new AggregateException($"{errors.Count} thread(s) failed", errors);
        }
    }

    private sealed class Prediction
    {
        public float[] Score { get; set; } = [];

        public uint PredictedLabel { get; set; }
    }
}
