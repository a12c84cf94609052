using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;

[TestClass]
public sealed class LabelSupervisedLlamaTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 11);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    internal static LabelSupervisedLlamaOptions FastOptions(string model) => new()
    {
        ModelPath = model,
        Epochs = 20,
        BatchSize = 16,
        LearningRate = 1e-2,
        WarmupRatio = 0.05,
        LoraRank = 4,
        LoraAlpha = 8,
        LoraDropout = 0,
        MaxSequenceLength = 32,
        Seed = 5,
    };

    private static (MLContext Ml, IDataView Train, IDataView Test, IEstimator<ITransformer> MapLabel) ToyViews(int train = 300, int test = 60)
    {
        var ml = new MLContext(seed: 1);
        var trainView = ml.Data.LoadFromEnumerable(ToyData.Rows(train, seed: 1));
        var testView = ml.Data.LoadFromEnumerable(ToyData.Rows(test, seed: 2));
        var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue);
        return (ml, trainView, testView, mapLabel);
    }

    [TestMethod]
    [DataRow(Pooling.Last, false)]
    [DataRow(Pooling.Mean, false)]
    [DataRow(Pooling.Max, false)]
    [DataRow(Pooling.Last, true)]
    public void LearnsASeparableToyTask(Pooling pooling, bool unmasked)
    {
        var (ml, train, test, mapLabel) = ToyViews();
        var options = FastOptions(_model);
        options.Pooling = pooling;
        options.Unmasked = unmasked;
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.MicroAccuracy >= 0.9, $"{pooling}/unmasked={unmasked}: accuracy {metrics.MicroAccuracy:P1}");
    }

    [TestMethod]
    public void EvaluatePredictionEngineAndKeyValuesWork()
    {
        var (ml, train, test, mapLabel) = ToyViews();
        var pipeline = mapLabel
            .Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(FastOptions(_model)))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedText", "PredictedLabel"));
        var model = pipeline.Fit(train);
        var scored = model.Transform(test);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        Assert.AreEqual(3, metrics.ConfusionMatrix.NumberOfClasses);

        var slotNames = default(VBuffer<ReadOnlyMemory<char>>);
        scored.Schema["Score"].GetSlotNames(ref slotNames);
        CollectionAssert.AreEqual(new[] { "negative", "positive", "sport" }, slotNames.DenseValues().Select(s => s.ToString()).ToArray());

        var batchScores = scored.GetColumn<float[]>("Score").ToArray();
        var predicted = scored.GetColumn<string>("PredictedText").ToArray();
        var engine = ml.Model.CreatePredictionEngine<ToyData.Row, Prediction>(model);
        var rows = ToyData.Rows(60, seed: 2);
        for (var i = 0; i < rows.Count; i++)
        {
            var prediction = engine.Predict(rows[i]);
            Assert.AreEqual(predicted[i], prediction.PredictedText);
            for (var k = 0; k < 3; k++)
            {
                Assert.AreEqual(batchScores[i][k], prediction.Score[k], 1e-5, $"row {i} class {k}: batched and single-row scores differ");
            }
        }
    }

    [TestMethod]
    public void SavedModelLoadsInAFreshProcessWithIdenticalScores()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 60);
        var options = FastOptions(_model);
        options.Epochs = 2;
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train);
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        var dir = Directory.CreateTempSubdirectory("lt-ls-save-");
        try
        {
            var zip = Path.Combine(dir.FullName, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            var texts = Path.Combine(dir.FullName, "texts.txt");
            File.WriteAllLines(texts, ToyData.Rows(60, seed: 2).Select(r => r.Text));
            var output = TestHostProcess.Run("score-texts", zip, texts);
            var actual = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(line => line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            Assert.AreEqual(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}");
            }

            // In-process load too, and the base-model check: a changed base refuses to load.
            var loaded = ml.Model.Load(zip, out _);
            CollectionAssert.AreEqual(expected[0], loaded.Transform(test).GetColumn<float[]>("Score").First());
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void LoadingAgainstAChangedBaseModelFailsClearly()
    {
        var folder = TinyModels.CreateFolder(seed: 21);
        var dir = Directory.CreateTempSubdirectory("lt-ls-changed-");
        try
        {
            var (ml, train, _, mapLabel) = ToyViews(train: 30);
            var options = FastOptions(folder);
            options.Epochs = 1;
            var model = mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train);
            var zip = Path.Combine(dir.FullName, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            File.AppendAllText(Path.Combine(folder, "config.json"), " ");
            // ML.NET constructs loaders by reflection, so the error arrives wrapped; its innermost message is ours.
            var error = Assert.Throws<Exception>(() => ml.Model.Load(zip, out _));
            while (error.InnerException is not null)
            {
                error = error.InnerException;
            }

            Assert.IsInstanceOfType<InvalidDataException>(error);
            StringAssert.Contains(error.Message, "has changed since this model was trained");
        }
        finally
        {
            dir.Delete(recursive: true);
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void EmbeddedBaseModelMakesTheZipSelfContained()
    {
        var folder = TinyModels.CreateFolder(seed: 22);
        var dir = Directory.CreateTempSubdirectory("lt-ls-embed-");
        try
        {
            var (ml, train, test, mapLabel) = ToyViews(train: 30);
            var options = FastOptions(folder);
            options.Epochs = 1;
            options.EmbedBaseModel = true;
            var model = mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train);
            var expected = model.Transform(test).GetColumn<float[]>("Score").First();
            var zip = Path.Combine(dir.FullName, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            Directory.Delete(folder, recursive: true);
            var loaded = ml.Model.Load(zip, out _);
            CollectionAssert.AreEqual(expected, loaded.Transform(test).GetColumn<float[]>("Score").First());
        }
        finally
        {
            dir.Delete(recursive: true);
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    [TestMethod]
    public void TheSameSeedGivesTheSameScores()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 60);
        float[][] Run()
        {
            var options = FastOptions(_model);
            options.Epochs = 2;
            options.LoraDropout = 0.1; // dropout too must be reproducible
            return mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train)
                .Transform(test).GetColumn<float[]>("Score").ToArray();
        }

        var first = Run();
        var second = Run();
        for (var i = 0; i < first.Length; i++)
        {
            CollectionAssert.AreEqual(first[i], second[i], $"row {i}");
        }
    }

    [TestMethod]
    public void CancelledTrainingResumesFromItsCheckpointToTheSameResult()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 96);
        var labelMap = mapLabel.Fit(train);
        var keyed = labelMap.Transform(train);
        var dir = Directory.CreateTempSubdirectory("lt-ls-resume-");
        try
        {
            LabelSupervisedLlamaOptions Options()
            {
                var o = FastOptions(_model);
                o.Epochs = 3;
                o.BatchSize = 8;
                o.LoraDropout = 0.1;
                return o;
            }

            var reference = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options()).Fit(keyed)
                .Transform(labelMap.Transform(test)).GetColumn<float[]>("Score").ToArray();

            using var cancel = new CancellationTokenSource();
            var interrupted = Options();
            interrupted.CheckpointFolder = dir.FullName;
            interrupted.CheckpointEverySteps = 5;
            interrupted.CancellationToken = cancel.Token;
            interrupted.Progress = new SyncProgress(p =>
            {
                if (p.Step == 17)
                {
                    cancel.Cancel();
                }
            });
            Assert.ThrowsExactly<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(interrupted).Fit(keyed));
            Assert.IsTrue(File.Exists(Path.Combine(dir.FullName, "checkpoint.json")));

            var resumed = Options();
            resumed.CheckpointFolder = dir.FullName;
            var steps = new List<long>();
            resumed.Progress = new SyncProgress(p => { if (p.IsStep) { steps.Add(p.Step); } });
            var scores = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(resumed).Fit(keyed)
                .Transform(labelMap.Transform(test)).GetColumn<float[]>("Score").ToArray();
            Assert.AreEqual(18, steps.First(), "the resumed run continues after the cancelled step");
            for (var i = 0; i < reference.Length; i++)
            {
                CollectionAssert.AreEqual(reference[i], scores[i], $"row {i}: resumed training differs from uninterrupted training");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A checkpoint resumes only the run that wrote it: other class weights, another validation set or another patience
    /// change what is trained or which weights are kept, so each is refused with a clear error, and the same options
    /// still resume.
    /// </summary>
    [TestMethod]
    public void ACheckpointRefusesARunWithOtherClassWeightsOrValidationData()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 48);
        var labelMap = mapLabel.Fit(train);
        var keyed = labelMap.Transform(train);
        var validation = labelMap.Transform(test);
        var dir = Directory.CreateTempSubdirectory("lt-ls-fingerprint-");
        try
        {
            LabelSupervisedLlamaOptions Options()
            {
                var o = FastOptions(_model);
                o.Epochs = 2;
                o.BatchSize = 8;
                o.CheckpointFolder = dir.FullName;
                o.CheckpointEverySteps = 2;
                o.ValidationSet = validation;
                return o;
            }

            using var cancel = new CancellationTokenSource();
            var first = Options();
            first.CancellationToken = cancel.Token;
            first.Progress = new SyncProgress(p =>
            {
                if (p.Step == 4)
                {
                    cancel.Cancel();
                }
            });
            Assert.ThrowsExactly<OperationCanceledException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(first).Fit(keyed));

            var weighted = Options();
            weighted.ClassWeights = [1f, 2f, 1f];
            var otherValidation = Options();
            otherValidation.ValidationSet = labelMap.Transform(ml.Data.TakeRows(test, 10));
            var patient = Options();
            patient.EarlyStoppingPatience = 1;
            foreach (var (what, options) in new[] { ("class weights", weighted), ("validation set", otherValidation), ("patience", patient) })
            {
                var error = Assert.ThrowsExactly<InvalidOperationException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(keyed), what);
                StringAssert.Contains(error.Message, "belongs to a different run", what);
            }

            var steps = new List<long>();
            var same = Options();
            same.Progress = new SyncProgress(p => { if (p.IsStep) { steps.Add(p.Step); } });
            ml.MulticlassClassification.Trainers.LabelSupervisedLlama(same).Fit(keyed).Dispose();
            Assert.IsTrue(steps.Count > 0 && steps[0] > 1, $"the same options resume the checkpoint (first step {(steps.Count > 0 ? steps[0] : -1)})");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void BinaryTrainerFeedsTheBinaryEvaluator()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.BinaryRows(100, seed: 3));
        var test = ml.Data.LoadFromEnumerable(ToyData.BinaryRows(40, seed: 4));
        var model = ml.BinaryClassification.Trainers.LabelSupervisedLlama(FastOptions(_model)).Fit(train);
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.Accuracy >= 0.9, $"accuracy {metrics.Accuracy:P1}");
        Assert.IsTrue(metrics.AreaUnderRocCurve >= 0.9, $"AUC {metrics.AreaUnderRocCurve:F3}");
    }

    [TestMethod]
    public void EmptyAndNullTextsAreScoredNotDropped()
    {
        var (ml, train, _, mapLabel) = ToyViews(train: 30);
        var options = FastOptions(_model);
        options.Epochs = 1;
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train);
        var odd = ml.Data.LoadFromEnumerable(new[]
        {
            new ToyData.Row { Text = string.Empty, Label = "positive" },
            new ToyData.Row { Text = null!, Label = "negative" },
            new ToyData.Row { Text = "great", Label = "never-seen-label" },
        });
        var scores = model.Transform(odd).GetColumn<float[]>("Score").ToArray();
        Assert.AreEqual(3, scores.Length);
        foreach (var row in scores)
        {
            Assert.AreEqual(1.0, row.Sum(), 1e-4);
        }

        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(odd));
        var counted = metrics.ConfusionMatrix.Counts.Sum(row => row.Sum());
        Assert.AreEqual(2.0, counted, "a label never seen in training maps to a missing key and is skipped by Evaluate: two of the three rows count");
    }

    [TestMethod]
    public void BadInputsGiveErrorsThatNameTheColumn()
    {
        var (ml, train, _, mapLabel) = ToyViews(train: 20);
        var keyed = mapLabel.Fit(train).Transform(train);
        var options = FastOptions(_model);
        options.Epochs = 1;

        var missing = FastOptions(_model);
        missing.TextColumnName = "Review";
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(missing).Fit(keyed));
        StringAssert.Contains(error.Message, "Column 'Review' (text) was not found");

        error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(train));
        StringAssert.Contains(error.Message, "must be Key<UInt32> (map labels with MapValueToKey first) but is String");

        var oneClass = ml.Data.LoadFromEnumerable(ToyData.Rows(10, seed: 1, classes: 1));
        var oneKeyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(oneClass).Transform(oneClass);
        error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(oneKeyed));
        StringAssert.Contains(error.Message, "at least two");

        var noTokenizer = Directory.CreateTempSubdirectory("lt-notok-");
        try
        {
            foreach (var file in Directory.GetFiles(_model).Where(f => !Path.GetFileName(f).StartsWith("tokenizer", StringComparison.Ordinal)))
            {
                File.Copy(file, Path.Combine(noTokenizer.FullName, Path.GetFileName(file)));
            }

            var noTok = FastOptions(noTokenizer.FullName);
            var tokError = Assert.Throws<Exception>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(noTok).Fit(keyed));
            StringAssert.Contains(tokError.Message, "tokenizer");
            StringAssert.Contains(tokError.Message, noTokenizer.FullName);
        }
        finally
        {
            noTokenizer.Delete(recursive: true);
        }

        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(new LabelSupervisedLlamaOptions { ModelPath = _model, LoraRank = 0 }));
        Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(new LabelSupervisedLlamaOptions()));
    }

    [TestMethod]
    public void ValidationReportsEachEpochAndEarlyStoppingKeepsTheBestEpoch()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 90);
        var labels = mapLabel.Fit(train);
        var options = FastOptions(_model);
        options.Epochs = 6;
        options.LearningRate = 0.2; // far too high: validation loss soon rises, so patience ends the run early
        options.ValidationSet = labels.Transform(test);
        options.EarlyStoppingPatience = 1;
        var reports = new List<TrainingProgress>();
        options.Progress = new SyncProgress(reports.Add);
        using var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(labels.Transform(train));
        var validations = reports.Where(r => r.IsValidation).ToList();
        Assert.IsTrue(validations.Count >= 2, "a validation report per epoch");
        Assert.IsTrue(validations.Count < 6, $"early stopping should end the run before epoch 6 (ran {validations.Count})");
        Assert.IsTrue(validations.All(v => v.ValidationAccuracy is >= 0 and <= 1));
        Assert.AreEqual(validations.Min(v => v.ValidationLoss!.Value), model.Runtime.LastTraining!.BestValidationLoss!.Value, 1e-9);
    }

    [TestMethod]
    public void SentencePairsAndClassWeightsAreUsed()
    {
        var ml = new MLContext(seed: 1);
        var rows = ToyData.Rows(150, seed: 5).Select((r, i) => new PairRow { First = r.Text, Second = i % 2 == 0 ? "yes" : "no", Label = r.Label }).ToList();
        var data = ml.Data.LoadFromEnumerable(rows);
        var options = FastOptions(_model);
        options.TextColumnName = "First";
        options.SecondTextColumnName = "Second";
        options.ClassWeights = [1f, 2f, 1f];
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(data);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(data));
        Assert.IsTrue(metrics.MicroAccuracy >= 0.9, $"pair accuracy {metrics.MicroAccuracy:P1}");

        options.ClassWeights = [1f, 2f];
        Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(data));
    }

    private sealed class PairRow
    {
        public string First { get; set; } = string.Empty;

        public string Second { get; set; } = string.Empty;

        public string Label { get; set; } = string.Empty;
    }

    private sealed class Prediction
    {
        public float[] Score { get; set; } = [];

        public string PredictedText { get; set; } = string.Empty;
    }

    /// <summary>IProgress that reports on the training thread (Progress&lt;T&gt; posts asynchronously).</summary>
    internal sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
