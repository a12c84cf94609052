using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// What the user can plan before training: threads as an option, the time a step and an epoch will take (reported
/// before the first step), and a run that would not fit in memory split into micro-batches with the same results.
/// </summary>
[TestClass]
public sealed class TrainingPlanningTests
{
    private const int Sequence = 32;
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 41);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        MemoryBudget.AvailableBytesOverride = null;
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    /// <summary>Rows long enough to be cut to <see cref="Sequence"/> tokens, so every batch has the same shape.</summary>
    private static (MLContext Ml, IDataView Train, IDataView Test) LongRows()
    {
        var ml = new MLContext(seed: 1);
        IEnumerable<Row> Rows(int count, int seed) => ToyData.Rows(count, seed).Select(r => new Row
        {
            Text = string.Join(' ', Enumerable.Repeat(r.Text, 8)),
            Label = r.Label,
        });
        var map = ml.Transforms.Conversion.MapValueToKey("Label").Fit(ml.Data.LoadFromEnumerable(Rows(24, 1)));
        return (ml, map.Transform(ml.Data.LoadFromEnumerable(Rows(24, 1))), map.Transform(ml.Data.LoadFromEnumerable(Rows(8, 2))));
    }

    private static LabelSupervisedLlamaOptions Options(MemoryCheck check, List<TrainingProgress> reports) => new()
    {
        ModelPath = _model,
        Epochs = 2,
        BatchSize = 8,
        MaxSequenceLength = Sequence,
        LoraRank = 4,
        LoraDropout = 0,
        LearningRate = 1e-2,
        Seed = 5,
        MemoryCheck = check,
        Progress = new LabelSupervisedLlamaTests.SyncProgress(reports.Add),
    };

    [TestMethod]
    public void ARunThatDoesNotFitIsSplitIntoMicroBatchesWithTheSameResults()
    {
        var (ml, train, test) = LongRows();
        var wholeReports = new List<TrainingProgress>();
        using var whole = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(MemoryCheck.Off, wholeReports)).Fit(train);
        var expected = whole.Transform(test).GetColumn<float[]>("Score").ToArray();

        // Between what 8 rows and what 2 rows need: halving 8 -> 4 -> 2 stops at the first that fits.
        var classifier = whole.Runtime.Classifier;
        var decoder = ((LlamaSequenceClassifier)classifier).Model;
        var eight = MemoryEstimate.For(decoder, classifier, 8, Sequence).TrainingBytes;
        var four = MemoryEstimate.For(decoder, classifier, 4, Sequence).TrainingBytes;
        var eightCheckpointed = MemoryEstimate.For(decoder, classifier, 8, Sequence, checkpointing: true).TrainingBytes;
        var available = Math.Max((four + eight) / 2, eightCheckpointed); // 8 rows fit only when checkpointed, 4 rows fit either way
        Assert.IsTrue(four < available && available < eight, $"4 rows {four}, 8 rows {eight}, 8 rows checkpointed {eightCheckpointed}");
        MemoryBudget.AvailableBytesOverride = available;
        try
        {
            var reports = new List<TrainingProgress>();
            var options = Options(MemoryCheck.Warn, reports);
            options.GradientCheckpointing = GradientCheckpointing.Off; // Auto would checkpoint first, and then the batch fits
            using var split = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(train);
            var warning = reports.SingleOrDefault(r => r.Kind == TrainingProgressKind.Warning);
            Assert.IsNotNull(warning, "the progress receiver sees the change");
            StringAssert.Contains(warning.Message, "2 micro-batches of at most 4 rows");
            Assert.AreEqual(wholeReports.Count(r => r.IsStep), reports.Count(r => r.IsStep), "the same optimizer steps");
            var actual = split.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (var i = 0; i < expected.Length; i++)
            {
                for (var c = 0; c < expected[i].Length; c++)
                {
                    Assert.AreEqual(expected[i][c], actual[i][c], 1e-4, $"row {i} class {c}");
                }
            }

            var losses = wholeReports.Where(r => r.IsStep).Zip(reports.Where(r => r.IsStep), (a, b) => Math.Abs(a.Loss - b.Loss));
            Assert.IsTrue(losses.All(d => d < 1e-4), "the same loss at every step");

            // Auto: checkpointing alone makes the batch fit, so the batch stays whole and nothing is worth a warning.
            var autoReports = new List<TrainingProgress>();
            using var checkpointed = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(MemoryCheck.Warn, autoReports)).Fit(train);
            Assert.IsFalse(autoReports.Any(r => r.Kind == TrainingProgressKind.Warning), "checkpointing fits the batch");
            Assert.IsTrue(((LlamaSequenceClassifier)checkpointed.Runtime.Classifier).Model.GradientCheckpointing, "Auto turned checkpointing on");
            var fromCheckpointed = checkpointed.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (var i = 0; i < expected.Length; i++)
            {
                for (var c = 0; c < expected[i].Length; c++)
                {
                    Assert.AreEqual(expected[i][c], fromCheckpointed[i][c], 1e-5, $"checkpointed: row {i} class {c}");
                }
            }
        }
        finally
        {
            MemoryBudget.AvailableBytesOverride = null;
        }
    }

    [TestMethod]
    public void TheTimePerStepAndPerEpochIsReportedBeforeTheFirstStep()
    {
        var (ml, train, _) = LongRows();
        var reports = new List<TrainingProgress>();
        using var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(MemoryCheck.Warn, reports)).Fit(train);
        Assert.AreEqual(TrainingProgressKind.Estimate, reports[0].Kind, "the estimate comes before the first step");
        Assert.AreEqual(1, reports.Count(r => r.Kind == TrainingProgressKind.Estimate));
        var estimate = reports[0];
        foreach (var time in new[] { estimate.ExpectedStepTime!.Value, estimate.ExpectedEpochTime!.Value, estimate.EstimatedRemaining })
        {
            Assert.IsTrue(time > TimeSpan.Zero && time < TimeSpan.FromDays(1), $"a positive, finite time: {time}");
        }

        Assert.IsTrue(estimate.ExpectedEpochTime >= estimate.ExpectedStepTime, "an epoch (3 steps) takes at least a step");
        Assert.IsTrue(reports.Where(r => r.IsStep).All(r => r.ExpectedStepTime == estimate.ExpectedStepTime), "every step carries the estimate");
    }

    [TestMethod]
    public void ScoringReportsRowsPerSecond()
    {
        var (ml, train, test) = LongRows();
        var options = Options(MemoryCheck.Off, []);
        options.Epochs = 1;
        using var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(train);
        Assert.IsNull(model.ScoringRowsPerSecond, "nothing scored yet");
        var messages = new List<string>();
        ml.Log += (_, e) =>
        {
            lock (messages)
            {
                messages.Add(e.Message);
            }
        };
        Assert.AreEqual(8, model.Transform(test).GetColumn<float[]>("Score").Count());
        Assert.IsTrue(model.ScoringRowsPerSecond is { } rate && rate > 0 && double.IsFinite(rate), $"rows/s: {model.ScoringRowsPerSecond}");
        Assert.IsTrue(messages.Any(m => m.Contains("scored 8 row(s)", StringComparison.Ordinal) && m.Contains("rows/s", StringComparison.Ordinal)),
            "the log says the throughput");
    }

    [TestMethod]
    public void NumberOfThreadsAppliesWhileFittingAndIsRestoredAfterwards()
    {
        TorchRuntime.EnsureInitialized();
        var before = TorchRuntime.Threads;
        var wanted = before == 1 ? 2 : 1;
        var (ml, train, _) = LongRows();
        var seen = new List<int>();
        var options = Options(MemoryCheck.Off, []);
        options.Epochs = 1;
        options.NumberOfThreads = wanted;
        options.Progress = new LabelSupervisedLlamaTests.SyncProgress(_ => seen.Add(TorchRuntime.Threads));
        ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(train).Dispose();
        Assert.IsTrue(seen.Count > 0 && seen.All(t => t == wanted), $"threads while training: {string.Join(", ", seen)}");
        Assert.AreEqual(before, TorchRuntime.Threads, "restored after the fit");

        options.NumberOfThreads = 0;
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options));
        StringAssert.Contains(error.Message, "NumberOfThreads");
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LabelTuning.Sweep.LabelTuningExperimentSettings { ModelPath = _model, NumberOfThreads = 0 }.Validate());
    }

    private sealed class Row
    {
        public string Text { get; set; } = string.Empty;

        public string Label { get; set; } = string.Empty;
    }
}
