using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Transformers;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Methods.PromptTuning.PromptLearningTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Methods.PrefixTuning;

[TestClass]
public sealed class PrefixTuningTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 31); // GQA: 4 heads, 2 key/value heads of 16
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    internal static PrefixTuningOptions FastOptions(string model) => new()
    {
        ModelPath = model,
        VirtualTokenCount = 4,
        Epochs = 12,
        BatchSize = 16,
        LearningRate = 1e-1,
        WarmupRatio = 0.05,
        MaxSequenceLength = 32,
        Seed = 5,
    };

    private static LlamaSequenceClassifier Build(string folder, PrefixTuningSettings settings)
    {
        var model = ClassifierFactory.LoadDecoder(folder, CPU, ScalarType.Float32);
        return (LlamaSequenceClassifier)TuningMethodRegistry.Get(TuningMethod.PrefixTuning).Factory
            .Build(model, 3, JsonSerializer.SerializeToElement(settings, SettingsJson.Options), tokenLevel: false);
    }

    [TestMethod]
    [DataRow(0, 1e-1, DisplayName = "plain prefixes")]
    [DataRow(16, 3e-2, DisplayName = "prefixes through the projection MLP")]
    public void LearnsASeparableToyTask(int projectionHiddenSize, double learningRate)
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 120);
        var options = FastOptions(_model);
        options.ProjectionHiddenSize = projectionHiddenSize;
        options.LearningRate = learningRate; // the MLP's Tanh saturates at the plain prefixes' rate
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.PrefixTuning(options)).Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        var transformer = (LabelTuningMulticlassTransformer)((IEnumerable<ITransformer>)model).Last();
        Console.WriteLine($"prefix h={projectionHiddenSize}: accuracy {metrics.MicroAccuracy:P1}, {transformer.Runtime.LastTraining!.TrainableParameters} trainable parameters");
        Assert.IsTrue(metrics.MicroAccuracy >= 0.9, $"prefix h={projectionHiddenSize}: accuracy {metrics.MicroAccuracy:P1}");
    }

    [TestMethod]
    public void PrefixesAreSizedByKeyValueHeadsAndOnlyTheyAndTheHeadTrain()
    {
        using var plain = Build(_model, new PrefixTuningSettings(5, 0, Pooling.Last));
        var c = plain.Model.Config;
        Assert.AreNotEqual(c.NumAttentionHeads, c.KeyValueHeadCount, "the tiny model must use grouped-query attention");
        var width = c.NumHiddenLayers * 2 * c.KeyValueHeadCount * c.HeadDimension;
        var trainable = plain.TrainableParameters();
        CollectionAssert.AreEqual(new[] { "adapter.embedding.weight", "score.weight" }, trainable.Select(p => p.Name).ToArray());
        CollectionAssert.AreEqual(new long[] { 5, width }, trainable[0].Parameter.shape);

        using var projected = Build(_model, new PrefixTuningSettings(5, 16, Pooling.Last));
        var tokenDim = c.KeyValueHeadCount * c.HeadDimension;
        var shapes = projected.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.shape);
        CollectionAssert.AreEquivalent(
            new[] { "adapter.embedding.weight", "adapter.transform.0.weight", "adapter.transform.0.bias", "adapter.transform.2.weight", "adapter.transform.2.bias", "score.weight" },
            shapes.Keys.ToArray());
        CollectionAssert.AreEqual(new long[] { 5, tokenDim }, shapes["adapter.embedding.weight"]);
        CollectionAssert.AreEqual(new long[] { width, 16 }, shapes["adapter.transform.2.weight"]);

        projected.FreezeBase();
        Assert.AreEqual(0, projected.Model.parameters().Count(p => p.requires_grad), "the base decoder must stay frozen");
    }

    [TestMethod]
    public void EveryLayerReadsItsOwnKeyAndValuePrefix()
    {
        // Layer l reads row 2l of the [layers·2, KV, n, Dh] view as keys and 2l+1 as values; the text sits at n..n+T-1.
        using var classifier = Build(_model, new PrefixTuningSettings(3, 0, Pooling.Last));
        classifier.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var adapter = (PrefixTuningAdapter)classifier.Adapter;
        var c = classifier.Model.Config;
        var ids = tensor(new long[] { 5, 17, 42, 99, 7 }).view(1, 5);
        var adapted = adapter.Adapt(classifier.Model, ids, ones_like(ids), causal: true);
        Assert.AreEqual(0, adapted.VirtualTokens);
        var prefixes = adapted.Input.PrefixKeyValues!;
        Assert.AreEqual(c.NumHiddenLayers, prefixes.Count);
        var table = adapter.Table().view(3, c.NumHiddenLayers * 2, c.KeyValueHeadCount, c.HeadDimension); // [n, L·2, KV, Dh]
        for (var layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            CollectionAssert.AreEqual(new long[] { 1, c.KeyValueHeadCount, 3, c.HeadDimension }, prefixes[layer].Key.shape);
            Assert.IsTrue(Same(prefixes[layer].Key[0], table[.., 2 * layer].transpose(0, 1)), $"layer {layer} keys");
            Assert.IsTrue(Same(prefixes[layer].Value[0], table[.., (2 * layer) + 1].transpose(0, 1)), $"layer {layer} values");
        }

        var implicitPositions = classifier.Model.forward(adapted.Input).LastHiddenState;
        var explicitPositions = classifier.Model.forward(adapted.Input with { PositionIds = arange(3, 8).unsqueeze(0) }).LastHiddenState;
        Assert.IsTrue(Same(implicitPositions, explicitPositions), "the text must sit at positions n..n+T-1");
    }

    [TestMethod]
    public void FoldingTheProjectionChangesNothingButTheParameters()
    {
        using var classifier = Build(_model, new PrefixTuningSettings(4, 16, Pooling.Last));
        classifier.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var batch = Data.TokenBatch.Collate([[5, 6, 7, 8], [9, 10]], 0, CPU);
        var before = classifier.forward(batch);
        var adapter = (PrefixTuningAdapter)classifier.Adapter;
        Assert.IsTrue(adapter.Fold());
        Assert.IsFalse(adapter.Fold(), "a folded adapter has nothing left to fold");
        Assert.AreEqual(0, adapter.ProjectionHiddenSize);
        var names = classifier.TrainableParameters().Select(p => p.Name).ToArray();
        CollectionAssert.AreEqual(new[] { "adapter.embedding.weight", "score.weight" }, names);
        Assert.IsTrue(Same(before, classifier.forward(batch)), "folding must not change a single score");
    }

    [TestMethod]
    public void PaddedBatchesScoreLikeSingleRows()
    {
        using var classifier = Build(_model, new PrefixTuningSettings(4, 0, Pooling.Last));
        AssertPaddedEqualsUnpadded(classifier, classifier.Model.Config.VocabSize);
    }

    [TestMethod]
    public void TrainingStepsLeaveNoLiveTensors()
    {
        using var classifier = Build(_model, new PrefixTuningSettings(4, 8, Pooling.Last));
        AssertTrainingStepsLeaveNoLiveTensors(classifier, classifier.Model.Config.VocabSize);
    }

    [TestMethod]
    public void SavedProjectedModelReloadsExactlyInAFreshProcess()
    {
        // PEFT issue #1607 lost the prompt encoder on reload; here the MLP is folded into the saved prefixes.
        var (ml, train, test, mapLabel) = ToyViews(train: 32);
        var options = FastOptions(_model);
        options.Epochs = 1;
        options.ProjectionHiddenSize = 16;
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.PrefixTuning(options)).Fit(train);
        var transformer = (LabelTuningMulticlassTransformer)((IEnumerable<ITransformer>)model).Last();
        Assert.AreEqual(0, transformer.Runtime.Description.Settings.GetProperty("ProjectionHiddenSize").GetInt32(), "the saved settings describe the folded prefixes");
        AssertFreshProcessScoresMatch(ml, model, train, test);
    }

    [TestMethod]
    public void PeftExportThenImportScoresTheSame()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 32);
        var options = FastOptions(_model);
        options.Epochs = 1;
        options.ProjectionHiddenSize = 8;
        var labelMap = mapLabel.Fit(train);
        var transformer = ml.MulticlassClassification.Trainers.PrefixTuning(options).Fit(labelMap.Transform(train));
        var expected = transformer.Transform(labelMap.Transform(test)).GetColumn<float[]>("Score").ToArray();
        var dir = Directory.CreateTempSubdirectory("lt-prefix-peft-");
        try
        {
            transformer.ExportPeftAdapter(dir.FullName);
            using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.FullName, "adapter_config.json"))))
            {
                Assert.AreEqual("PREFIX_TUNING", config.RootElement.GetProperty("peft_type").GetString());
                Assert.AreEqual(2, config.RootElement.GetProperty("num_attention_heads").GetInt32(), "GQA: heads = key/value heads");
                Assert.AreEqual(32, config.RootElement.GetProperty("token_dim").GetInt32(), "GQA: token_dim = key/value heads × head_dim");
                Assert.IsFalse(config.RootElement.GetProperty("prefix_projection").GetBoolean(), "saved folded");
            }

            var imported = PeftAdapters.Import(ml, dir.FullName, _model, ToyData.ClassNames.Order(StringComparer.Ordinal).ToArray(), maxSequenceLength: 32);
            var actual = imported.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (var i = 0; i < expected.Length; i++)
            {
                for (var k = 0; k < expected[i].Length; k++)
                {
                    Assert.AreEqual(expected[i][k], actual[i][k], 1e-5, $"row {i} class {k}"); // other batch sizes pad differently
                }
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void TheSameSeedGivesTheSameScores()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 32);
        float[][] Run()
        {
            var options = FastOptions(_model);
            options.Epochs = 2;
            options.ProjectionHiddenSize = 8;
            return mapLabel.Append(ml.MulticlassClassification.Trainers.PrefixTuning(options)).Fit(train)
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
    public void BinaryTrainerFeedsTheBinaryEvaluator()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(BinaryRows(80, seed: 3));
        var test = ml.Data.LoadFromEnumerable(BinaryRows(40, seed: 4));
        var model = ml.BinaryClassification.Trainers.PrefixTuning(FastOptions(_model)).Fit(train);
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.Accuracy >= 0.9, $"accuracy {metrics.Accuracy:P1}");
    }

    [TestMethod]
    public void BadOptionsGiveErrorsThatNameTheOption()
    {
        var ml = new MLContext(seed: 1);
        void Rejects(Action<PrefixTuningOptions> change, string name)
        {
            var options = FastOptions(_model);
            change(options);
            var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.PrefixTuning(options));
            Assert.AreEqual(name, error.ParamName);
            StringAssert.Contains(error.Message, name);
        }

        Rejects(o => o.VirtualTokenCount = 0, "VirtualTokenCount");
        Rejects(o => o.VirtualTokenCount = -1, "VirtualTokenCount");
        Rejects(o => o.ProjectionHiddenSize = -8, "ProjectionHiddenSize");
        Rejects(o => o.Pooling = (Pooling)5, "Pooling");
        Rejects(o => o.LearningRate = 0, "LearningRate");
        Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.PrefixTuning(new PrefixTuningOptions()));
    }
}
