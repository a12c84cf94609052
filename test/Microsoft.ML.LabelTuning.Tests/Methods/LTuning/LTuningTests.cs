using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Methods.LTuning;

[TestClass]
public sealed class LTuningTests
{
    private static readonly string[] _labelTexts = ["The text is about something negative", "The text is about something positive", "The text is about sport"];
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 51);
    }

    [ClassCleanup]
    public static void DeleteModel() => Directory.Delete(_model, recursive: true);

    private static LTuningOptions Options(LabelPlacement placement = LabelPlacement.Before) => new()
    {
        ModelPath = _model,
        LabelTexts = _labelTexts,
        Epochs = 8,
        BatchSize = 16,
        LearningRate = 3e-2,
        WarmupRatio = 0.05,
        MaxSequenceLength = 32,
        NegativesPerExample = 2,
        LabelPlacement = placement,
        Seed = 3,
    };

    private static (MLContext Ml, IDataView Train, IDataView Test) Views(int train = 150)
    {
        var ml = new MLContext(seed: 1);
        var map = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue);
        var trainView = ml.Data.LoadFromEnumerable(ToyData.Rows(train, seed: 1));
        var fitted = map.Fit(trainView);
        return (ml, fitted.Transform(trainView), fitted.Transform(ml.Data.LoadFromEnumerable(ToyData.Rows(60, seed: 2))));
    }

    /// <summary>
    /// Real data with the default (Matching) head: every variant must clear 60% on IMDB (measured 68–75% over three
    /// seeds on 600 reviews). With the paper's true/false head alone all three stay at chance on this small base, which
    /// is why the Matching head is the default. About 35 s a row on 2 cores, so it is in the opt-in Slow category.
    /// </summary>
    [TestMethod]
    [TestCategory("Slow")]
    [DataRow("prefix", LabelPlacement.Before)]
    [DataRow("prompt", LabelPlacement.Before)]
    [DataRow("prompt", LabelPlacement.After)]
    public void LearnsSentimentOnThePretrainedDefaultModel(string variant, LabelPlacement placement)
    {
        var modelFolder = DefaultModelFolder();
        var root = Path.GetFullPath(Path.Combine(modelFolder, "..", ".."));
        var ml = new MLContext(seed: 1);
        var rows = File.ReadLines(Path.Combine(root, "data", "imdb", "train.tsv")).Skip(1).Select(l => l.Split('\t'))
            .Select(f => new ToyData.Row { Label = f[0], Text = f[1] }).ToList();
        var map = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue);
        var trainView = ml.Data.LoadFromEnumerable(rows.Take(600));
        var labels = map.Fit(trainView);
        var options = new LTuningOptions
        {
            ModelPath = modelFolder,
            LabelTexts = ["The review is negative", "The review is positive"],
            Epochs = 2,
            BatchSize = 8,
            MaxSequenceLength = 128,
            LabelPlacement = placement,
            Seed = 1,
        };
        IEstimator<ITransformer> trainer = variant == "prefix"
            ? ml.MulticlassClassification.Trainers.LTuningPrefix(options)
            : ml.MulticlassClassification.Trainers.LTuningPrompt(options);
        var model = trainer.Fit(labels.Transform(trainView));
        var test = labels.Transform(ml.Data.LoadFromEnumerable(rows.Skip(1600).Take(300)));
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.MicroAccuracy >= 0.6, $"{variant}/{placement}: accuracy {metrics.MicroAccuracy:P1} (chance 50%)");
    }

    /// <summary>
    /// On a frozen random tiny model only the prefix variant with mean pooling learns: its key/value prefixes are free
    /// parameters, while the prompt variants reach the text only through the random model's nearly uniform attention
    /// (measured 35–65% before the text and a constant 33% after it, over learning rates 3e-3 to 3e-2 and three seeds).
    /// </summary>
    [TestMethod]
    [DataRow(LTuningHead.TrueFalse)]
    [DataRow(LTuningHead.Matching)]
    public void ThePrefixVariantLearnsAToyTaskOnARandomModel(LTuningHead head)
    {
        var (ml, train, test) = Views(train: 150);
        var options = Options();
        options.Head = head;
        options.Pooling = Pooling.Mean;
        options.Epochs = 24;
        using var model = ml.MulticlassClassification.Trainers.LTuningPrefix(options).Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.MicroAccuracy >= 0.8, $"prefix/{head}: accuracy {metrics.MicroAccuracy:P1} on the toy task (chance 33%)");
    }

    /// <summary>
    /// The prompt variants need a base whose attention means something, so they learn the toy task on the shipped
    /// pretrained default model (measured 83–98% before the text and 98–100% after it over learning rates 1e-3 and 3e-3
    /// and three seeds, 13 s a fit).
    /// </summary>
    [TestMethod]
    [DataRow(LabelPlacement.Before, LTuningHead.TrueFalse)]
    [DataRow(LabelPlacement.After, LTuningHead.TrueFalse)]
    [DataRow(LabelPlacement.Before, LTuningHead.Matching)]
    [DataRow(LabelPlacement.After, LTuningHead.Matching)]
    public void ThePromptVariantLearnsAToyTaskOnThePretrainedDefaultModel(LabelPlacement placement, LTuningHead head)
    {
        var (ml, train, test) = Views(train: 150);
        var options = Options(placement);
        options.Head = head;
        options.ModelPath = DefaultModelFolder();
        options.Pooling = Pooling.Mean;
        options.Epochs = 20;
        options.LearningRate = 1e-3;
        using var model = ml.MulticlassClassification.Trainers.LTuningPrompt(options).Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.MicroAccuracy >= 0.8, $"prompt/{placement}/{head}: accuracy {metrics.MicroAccuracy:P1} on the toy task (chance 33%)");
    }

    private static string DefaultModelFolder()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Microsoft.ML.LabelTuning.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new DirectoryNotFoundException("repository root");
        }

        var folder = Path.Combine(root, "models", "labeltuning-default");
        Assert.IsTrue(File.Exists(Path.Combine(folder, "model.safetensors")), $"the shipped default model is missing from {folder}");
        return folder;
    }

    /// <summary>
    /// At initialisation every variant's pair scores depend on both the text and the label: a masking or placement bug
    /// that hid the text from the pooled state (or the label from the text) would make a column or a row constant.
    /// </summary>
    [TestMethod]
    [DataRow("prefix", LabelPlacement.Before, Pooling.Last)]
    [DataRow("prefix", LabelPlacement.Before, Pooling.Mean)]
    [DataRow("prompt", LabelPlacement.Before, Pooling.Last)]
    [DataRow("prompt", LabelPlacement.Before, Pooling.Mean)]
    [DataRow("prompt", LabelPlacement.After, Pooling.Last)]
    [DataRow("prompt", LabelPlacement.After, Pooling.Mean)]
    [DataRow("prefix", LabelPlacement.Before, Pooling.Mean, LTuningHead.Matching)]
    [DataRow("prompt", LabelPlacement.Before, Pooling.Mean, LTuningHead.Matching)]
    [DataRow("prompt", LabelPlacement.After, Pooling.Mean, LTuningHead.Matching)]
    public void ScoresDependOnTheTextAndOnTheLabel(string variant, LabelPlacement placement, Pooling pooling, LTuningHead head = LTuningHead.TrueFalse)
    {
        using var scope = NewDisposeScope();
        var kind = variant == "prefix" ? LTuningVariant.Prefix : LTuningVariant.Prompt;
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_model);
        var factory = new LTuningFactory(kind);
        var settings = factory.Prepare(
            System.Text.Json.JsonSerializer.SerializeToElement(new LTuningSettings(kind, _labelTexts, 1, placement, Pooling: pooling, Head: head), Microsoft.ML.LabelTuning.Methods.SettingsJson.Options),
            tokenizer, ["negative", "positive", "sport"]);
        random.manual_seed(9);
        using var classifier = (LTuningClassifier)factory.Build(ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32), 3, settings, false);
        var encoder = new TextEncoder(tokenizer, 32, Data.Truncation.Head);
        var sequences = ToyData.Rows(6, seed: 4).Select(r => encoder.Encode(new TextInput(r.Text, null), out _)).ToList();
        var batch = TokenBatch.Collate(sequences, encoder.PadId, CPU);
        using var noGrad = no_grad();
        foreach (var training in new[] { false, true }) // false: the cached After path where it applies
        {
            classifier.SetTraining(training);
            var logits = classifier.Logits(batch); // [B, K]
            var acrossTexts = (logits.amax(0) - logits.amin(0)).min().item<float>(); // smallest spread of a label's column
            var acrossLabels = (logits.amax(1) - logits.amin(1)).min().item<float>(); // smallest spread of a text's row
            Assert.IsTrue(acrossTexts > 1e-4, $"{variant}/{placement}/{pooling}/{head} (training {training}): a label's scores hardly change with the text (spread {acrossTexts})");
            Assert.IsTrue(acrossLabels > 1e-4, $"{variant}/{placement}/{pooling}/{head} (training {training}): a text's scores hardly change with the label (spread {acrossLabels})");
        }
    }

    [TestMethod]
    public void TheLabelTextsMatter()
    {
        var (ml, train, test) = Views(train: 90);
        float[][] Scores(string[] texts)
        {
            var options = Options();
            options.Epochs = 3;
            options.LabelTexts = texts;
            return ml.MulticlassClassification.Trainers.LTuningPrompt(options).Fit(train).Transform(test).GetColumn<float[]>("Score").ToArray();
        }

        var original = Scores(_labelTexts);
        var swapped = Scores([_labelTexts[1], _labelTexts[0], _labelTexts[2]]);
        var difference = original.Zip(swapped).Max(p => p.First.Zip(p.Second).Max(v => Math.Abs(v.First - v.Second)));
        Assert.IsTrue(difference > 1e-3, $"swapping two classes' label texts should change the trained scores (max difference {difference})");
    }

    [TestMethod]
    [DataRow("prefix", LabelPlacement.Before)]
    [DataRow("prompt", LabelPlacement.Before)]
    [DataRow("prompt", LabelPlacement.After)]
    [DataRow("prefix", LabelPlacement.Before, LTuningHead.Matching)]
    [DataRow("prompt", LabelPlacement.After, LTuningHead.Matching)]
    [DataRow("prompt", LabelPlacement.After, LTuningHead.Matching, Pooling.Mean)]
    [DataRow("prompt", LabelPlacement.After, LTuningHead.Matching, Pooling.Max)]
    [DataRow("prompt", LabelPlacement.After, LTuningHead.TrueFalse, Pooling.Mean)]
    public void BatchedKWayScoringEqualsOneLabelAtATime(
        string variant, LabelPlacement placement, LTuningHead head = LTuningHead.TrueFalse, Pooling pooling = Pooling.Last)
    {
        using var scope = NewDisposeScope();
        var (classifier, batch) = Build(variant == "prefix" ? LTuningVariant.Prefix : LTuningVariant.Prompt, placement, head, pooling: pooling);
        using var noGrad = no_grad();
        var batched = classifier.Logits(batch); // [B, K] (After: through the KV cache)
        classifier.SetTraining(true); // the uncached path
        var b = batch.InputIds.shape[0];
        for (var k = 0; k < classifier.ClassCount; k++)
        {
            var single = classifier.PairLogits(batch.InputIds, batch.AttentionMask, full(b, (long)k, dtype: ScalarType.Int64)); // [B, 2]
            var expected = single[.., 1] - single[.., 0];
            var delta = (batched[.., k] - expected).abs().max().item<float>();
            Assert.IsTrue(delta < 1e-4, $"label {k}: batched/cached scores differ from one-by-one by {delta}");
        }

        classifier.Dispose();
    }

    /// <summary>
    /// The memory estimate made before training counts what L-Tuning really runs: every text once with its true label
    /// and once per sampled false label, each with the label's l positions.
    /// </summary>
    [TestMethod]
    public void TheMemoryEstimateCountsTheLabelPairsAndTheLabelPositions()
    {
        using var scope = NewDisposeScope();
        var (classifier, _) = Build(LTuningVariant.Prompt, LabelPlacement.Before, LTuningHead.Matching, negatives: 2);
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_model);
        var labelLength = _labelTexts.Max(t => tokenizer.Encode(t, addSpecialTokens: false).Count) + 1; // + BOS
        using var decoder = ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32);
        var estimate = Training.MemoryEstimate.For(decoder, classifier, 8, 32);
        Assert.AreEqual(8 * 3, estimate.BatchSize, "each text with its true label and 2 false ones");
        Assert.AreEqual(32 + labelLength, estimate.SequenceLength, "32 text tokens and the longest label text's positions");
        classifier.Dispose();
    }

    [TestMethod]
    public void SavedModelReloadsInAFreshProcessWithIdenticalScores()
    {
        var (ml, train, test) = Views(train: 60);
        var options = Options(LabelPlacement.After);
        options.Epochs = 2;
        var model = ml.MulticlassClassification.Trainers.LTuningPrompt(options).Fit(train);
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        var dir = Directory.CreateTempSubdirectory("lt-ltuning-save-");
        try
        {
            var zip = Path.Combine(dir.FullName, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            var texts = Path.Combine(dir.FullName, "texts.txt");
            File.WriteAllLines(texts, ToyData.Rows(60, seed: 2).Select(r => r.Text));
            var actual = TestHostProcess.Run("score-texts", zip, texts).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(line => line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void TheSameSeedGivesTheSameScoresAndNothingLeaks()
    {
        var (ml, train, test) = Views(train: 48);
        float[][] Run()
        {
            var options = Options();
            options.Epochs = 2;
            using var model = ml.MulticlassClassification.Trainers.LTuningPrefix(options).Fit(train);
            return model.Transform(test).GetColumn<float[]>("Score").ToArray();
        }

        var first = Run();
        var baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var second = Run();
        Assert.AreEqual(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "live tensors after another fit/score/dispose");
        for (var i = 0; i < first.Length; i++)
        {
            CollectionAssert.AreEqual(first[i], second[i], $"row {i}");
        }
    }

    [TestMethod]
    public void BadLabelTextsGiveClearErrors()
    {
        var (ml, train, _) = Views(train: 12);
        var empty = Options();
        empty.LabelTexts = ["negative", " ", "sport"];
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.LTuningPrompt(empty)).Message, "LabelTexts[1] is empty");

        var duplicate = Options();
        duplicate.LabelTexts = ["same", "same", "sport"];
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.LTuningPrompt(duplicate)).Message, "more than once");

        var missing = Options();
        missing.LabelTexts = ["negative", "positive"];
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.LTuningPrompt(missing).Fit(train)).Message, "every class needs one");
    }

    private static (LTuningClassifier Classifier, TokenBatch Batch) Build(
        LTuningVariant variant, LabelPlacement placement, LTuningHead head, int negatives = 1, Pooling pooling = Pooling.Last)
    {
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_model);
        var factory = new LTuningFactory(variant);
        var settings = factory.Prepare(
            System.Text.Json.JsonSerializer.SerializeToElement(new LTuningSettings(variant, _labelTexts, negatives, placement, Pooling: pooling, Head: head), Microsoft.ML.LabelTuning.Methods.SettingsJson.Options),
            tokenizer, ["negative", "positive", "sport"]);
        random.manual_seed(9);
        var classifier = (LTuningClassifier)factory.Build(ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32), 3, settings, false);
        // Random heads and label encoders, so every path is exercised with non-trivial values.
        using (no_grad())
        {
            foreach (var (_, parameter) in classifier.TrainableParameters())
            {
                parameter.normal_(0, 0.5);
            }
        }

        classifier.SetTraining(false);
        var encoder = new TextEncoder(tokenizer, 32, Data.Truncation.Head);
        var sequences = ToyData.Rows(5, seed: 4).Select(r => encoder.Encode(new TextInput(r.Text, null), out _)).ToList(); // ragged: padding matters
        return (classifier, TokenBatch.Collate(sequences, encoder.PadId, CPU));
    }
}
