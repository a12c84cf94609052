using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Transformers;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Methods.PromptTuning.PromptLearningTestKit;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Methods.PromptTuning;

[TestClass]
public sealed class PromptTuningTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 31);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    internal static PromptTuningOptions FastOptions(string model) => new()
    {
        ModelPath = model,
        VirtualTokenCount = 4,
        Epochs = 12,
        BatchSize = 16,
        LearningRate = 1e-1,
        DecomposedLearningRate = 1e-3,
        WarmupRatio = 0.05,
        MaxSequenceLength = 32,
        Seed = 5,
    };

    private static LlamaSequenceClassifier Build(string folder, PromptTuningSettings settings, int classes = 3)
    {
        var model = ClassifierFactory.LoadDecoder(folder, CPU, ScalarType.Float32);
        return (LlamaSequenceClassifier)TuningMethodRegistry.Get(TuningMethod.PromptTuning).Factory
            .Build(model, classes, JsonSerializer.SerializeToElement(settings, SettingsJson.Options), tokenLevel: false);
    }

    /// <summary>The memory estimate made before training counts the virtual tokens each text runs with.</summary>
    [TestMethod]
    public void TheMemoryEstimateCountsTheVirtualTokens()
    {
        using var classifier = Build(_model, new PromptTuningSettings(6, PromptTuningInit.Random, null, 0, 8, 32, 1, Pooling.Last));
        using var decoder = ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32);
        var estimate = Training.MemoryEstimate.For(decoder, classifier, 8, 32);
        Assert.AreEqual(8, estimate.BatchSize);
        Assert.AreEqual(32 + 6, estimate.SequenceLength, "32 text tokens and 6 virtual tokens");
    }

    [TestMethod]
    [DataRow(PromptTuningInit.Random, 0, 1, DisplayName = "prompt tuning, random init")]
    [DataRow(PromptTuningInit.SampleVocab, 0, 1, DisplayName = "prompt tuning, vocabulary init")]
    [DataRow(PromptTuningInit.Text, 0, 1, DisplayName = "prompt tuning, text init")]
    [DataRow(PromptTuningInit.Random, 4, 1, DisplayName = "DePT")]
    [DataRow(PromptTuningInit.Random, 4, 3, DisplayName = "EPT")]
    public void LearnsASeparableToyTask(PromptTuningInit init, int rank, int spaces)
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 120);
        var options = FastOptions(_model);
        options.Init = init;
        options.InitText = init == PromptTuningInit.Text ? "classify the review" : null;
        options.DecomposedRank = rank;
        options.ProjectionSpaces = spaces;
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.PromptTuning(options)).Fit(train);
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
        var transformer = (LabelTuningMulticlassTransformer)((IEnumerable<ITransformer>)model).Last();
        Console.WriteLine($"{init} r={rank} k={spaces}: accuracy {metrics.MicroAccuracy:P1}, {transformer.Runtime.LastTraining!.TrainableParameters} trainable parameters");
        Assert.IsTrue(metrics.MicroAccuracy >= 0.9, $"{init} r={rank} k={spaces}: accuracy {metrics.MicroAccuracy:P1}");
    }

    [TestMethod]
    public void OnlyThePromptAndTheHeadTrain()
    {
        var settings = new PromptTuningSettings(4, PromptTuningInit.Random, null, 3, 8, 32, 2, Pooling.Last);
        using var classifier = Build(_model, settings);
        var names = classifier.TrainableParameters().Select(p => p.Name).ToArray();
        CollectionAssert.AreEqual(
            new[] { "adapter.prompt_embeddings", "adapter.lora_embedding_A", "adapter.lora_embedding_B", "adapter.projection_down", "adapter.projection_up", "adapter.gate.weight", "adapter.gate.bias", "score.weight" },
            names);
        var d = classifier.Model.Config.HiddenSize;
        var expected = (4 * d) + (32 * 3) + (3 * d) + (2 * d * 3 * 2) + (d * 2) + 2 + (3 * d);
        Assert.AreEqual(expected, classifier.TrainableParameters().Sum(p => p.Parameter.numel()));

        classifier.FreezeBase();
        var frozen = classifier.Model.parameters().Where(p => p.requires_grad).ToList();
        Assert.AreEqual(0, frozen.Count, "the base decoder must stay frozen");
    }

    [TestMethod]
    public void TrainingLeavesTheBaseModelUntouched()
    {
        var (ml, train, _, mapLabel) = ToyViews(train: 32);
        var options = FastOptions(_model);
        options.Epochs = 1;
        options.DecomposedRank = 2;
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.PromptTuning(options)).Fit(train);
        var trained = ((LabelTuningMulticlassTransformer)((IEnumerable<ITransformer>)model).Last()).Runtime.Sequence.Model;
        using var fresh = ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32);
        var freshParameters = fresh.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, parameter) in trained.named_parameters())
        {
            Assert.IsTrue(Same(parameter, freshParameters[name]), $"base parameter '{name}' changed during training");
        }
    }

    [TestMethod]
    public void DecomposedPairTrainsAtItsOwnLearningRate()
    {
        // One optimizer step from the same start: Adam's first step moves every parameter by about its group's rate,
        // so DePT's B (zero at the start) ends at ±DecomposedLearningRate and scales with it, while the prompt does not.
        var (ml, train, _, mapLabel) = ToyViews(train: 16);
        var keyed = mapLabel.Fit(train).Transform(train);
        (Tensor Prompt, Tensor B) OneStep(double decomposedRate)
        {
            var options = FastOptions(_model);
            options.Epochs = 1;
            options.BatchSize = 16;
            options.WarmupRatio = 0;
            options.WeightDecay = 0;
            options.MaxGradientNorm = 0;
            options.LearningRate = 1e-2;
            options.DecomposedRank = 4;
            options.DecomposedLearningRate = decomposedRate;
            var transformer = ml.MulticlassClassification.Trainers.PromptTuning(options).Fit(keyed);
            var adapter = (PromptTuningAdapter)transformer.Runtime.Sequence.Adapter;
            var parameters = adapter.TrainableParameters.ToDictionary(p => p.Name, p => p.Parameter);
            return (parameters["prompt_embeddings"].detach().clone(), parameters["lora_embedding_B"].detach().clone());
        }

        var (promptSame, bSame) = OneStep(1e-2);
        var (promptSlow, bSlow) = OneStep(1e-4);
        Assert.AreEqual(1e-2, bSame.abs().max().item<float>(), 1e-4, "B moves by the shared rate when the rates are equal");
        Assert.AreEqual(1e-4, bSlow.abs().max().item<float>(), 1e-6, "B moves by DecomposedLearningRate");
        Assert.IsTrue(Same(promptSame, promptSlow), "the prompt's step does not depend on DecomposedLearningRate");
    }

    [TestMethod]
    [DataRow(0, 1, Pooling.Last)]
    [DataRow(0, 1, Pooling.Mean)]
    [DataRow(3, 2, Pooling.Last)]
    public void PaddedBatchesScoreLikeSingleRows(int rank, int spaces, Pooling pooling)
    {
        var settings = new PromptTuningSettings(4, PromptTuningInit.Random, null, rank, 8, 32, spaces, pooling);
        using var classifier = Build(_model, settings);
        using (no_grad())
        {
            foreach (var (_, parameter) in classifier.TrainableParameters())
            {
                parameter.normal_(0, 0.1); // DePT's B and EPT's U start at zero; make every part matter
            }
        }

        AssertPaddedEqualsUnpadded(classifier, classifier.Model.Config.VocabSize);
    }

    [TestMethod]
    [DataRow(Pooling.Last)]
    [DataRow(Pooling.Mean)]
    public void PositionsRunOverTheVirtualTokensAndTheText(Pooling pooling)
    {
        // PEFT's semantics: the prompt at positions 0..n-1 and the text at n..n+T-1 of one causal sequence. With
        // last-token pooling the adapter hands the prompt over as every layer's key/value prefix (it does not depend on
        // the text under the causal mask) and only the text's states come out; otherwise the prompt is prepended.
        var settings = new PromptTuningSettings(3, PromptTuningInit.Random, null, 0, 8, 32, 1, pooling);
        using var classifier = Build(_model, settings);
        classifier.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(new long[] { 5, 17, 42, 99, 7 }).view(1, 5);
        var mask = ones_like(ids);
        var adapted = classifier.Adapter.Adapt(classifier.Model, ids, mask, causal: true);
        var prefixed = pooling == Pooling.Last;
        Assert.AreEqual(prefixed ? 0 : 3, adapted.VirtualTokens);
        CollectionAssert.AreEqual(new long[] { 1, prefixed ? 5 : 8 }, adapted.PoolingMask.shape);
        var prompt = ((PromptTuningAdapter)classifier.Adapter).PromptEmbeddings.unsqueeze(0);
        var manual = cat([prompt, classifier.Model.EmbedTokens.call(ids)], 1);
        var expected = classifier.Model.forward(new LlamaInput { InputsEmbeds = manual, PositionIds = arange(8).unsqueeze(0) }).LastHiddenState;
        var actual = classifier.Model.forward(adapted.Input).LastHiddenState;
        Assert.IsTrue(actual.allclose(prefixed ? expected.narrow(1, 3, 5) : expected, rtol: 0, atol: 1e-6));
    }

    [TestMethod]
    public void TrainingStepsLeaveNoLiveTensors()
    {
        var settings = new PromptTuningSettings(4, PromptTuningInit.Random, null, 2, 8, 32, 2, Pooling.Last);
        using var classifier = Build(_model, settings);
        AssertTrainingStepsLeaveNoLiveTensors(classifier, classifier.Model.Config.VocabSize);
    }

    [TestMethod]
    public void SavedEptModelLoadsInAFreshProcessWithIdenticalScores()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 32);
        var options = FastOptions(_model);
        options.Epochs = 1;
        options.DecomposedRank = 3;
        options.ProjectionSpaces = 2;
        options.Init = PromptTuningInit.Text;
        options.InitText = "great game";
        var model = mapLabel.Append(ml.MulticlassClassification.Trainers.PromptTuning(options)).Fit(train);
        AssertFreshProcessScoresMatch(ml, model, train, test);
    }

    [TestMethod]
    public void PeftExportThenImportScoresTheSame()
    {
        var (ml, train, test, mapLabel) = ToyViews(train: 32);
        var options = FastOptions(_model);
        options.Epochs = 1;
        var labelMap = mapLabel.Fit(train);
        var transformer = ml.MulticlassClassification.Trainers.PromptTuning(options).Fit(labelMap.Transform(train));
        var expected = transformer.Transform(labelMap.Transform(test)).GetColumn<float[]>("Score").ToArray();
        var dir = Directory.CreateTempSubdirectory("lt-prompt-peft-");
        try
        {
            transformer.ExportPeftAdapter(dir.FullName);
            var imported = PeftAdapters.Import(ml, dir.FullName, _model, ToyData.ClassNames.Order(StringComparer.Ordinal).ToArray(), maxSequenceLength: 32);
            var actual = imported.Transform(test).GetColumn<float[]>("Score").ToArray();
            for (var i = 0; i < expected.Length; i++)
            {
                for (var k = 0; k < expected[i].Length; k++)
                {
                    Assert.AreEqual(expected[i][k], actual[i][k], 1e-5, $"row {i} class {k}"); // other batch sizes pad differently
                }
            }

            var dept = FastOptions(_model);
            dept.Epochs = 1;
            dept.DecomposedRank = 2;
            var deptModel = ml.MulticlassClassification.Trainers.PromptTuning(dept).Fit(labelMap.Transform(train));
            var error = Assert.ThrowsExactly<NotSupportedException>(() => deptModel.ExportPeftAdapter(dir.FullName));
            StringAssert.Contains(error.Message, "DePT");
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
            options.Init = PromptTuningInit.SampleVocab; // the init draws from the generator too
            options.DecomposedRank = 2;
            options.ProjectionSpaces = 2;
            return mapLabel.Append(ml.MulticlassClassification.Trainers.PromptTuning(options)).Fit(train)
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
    public void TextInitStartsFromTheTextsEmbeddingsCutOrRepeated()
    {
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_model);
        var ids = PromptTuningSettingsJson.InitTokenIds(tokenizer, "good game");
        Assert.IsTrue(ids.Length >= 2, $"'good game' has {ids.Length} tokens");
        using var decoder = ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32);
        var table = decoder.EmbedTokens.weight!;
        foreach (var n in new[] { ids.Length + 3, 1 }) // repeated, then cut
        {
            var settings = new PromptTuningSettings(n, PromptTuningInit.Text, ids, 0, 8, 32, 1, Pooling.Last);
            using var classifier = Build(_model, settings);
            var prompt = ((PromptTuningAdapter)classifier.Adapter).PromptEmbeddings;
            for (var i = 0; i < n; i++)
            {
                Assert.IsTrue(Same(prompt[i], table[ids[i % ids.Length]]), $"n = {n}: virtual token {i} is not the embedding of text token {i % ids.Length}");
            }
        }
    }

    [TestMethod]
    public void BinaryTrainerFeedsTheBinaryEvaluator()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(BinaryRows(80, seed: 3));
        var test = ml.Data.LoadFromEnumerable(BinaryRows(40, seed: 4));
        var options = FastOptions(_model);
        options.DecomposedRank = 2;
        var model = ml.BinaryClassification.Trainers.PromptTuning(options).Fit(train);
        var metrics = ml.BinaryClassification.Evaluate(model.Transform(test));
        Assert.IsTrue(metrics.Accuracy >= 0.9, $"accuracy {metrics.Accuracy:P1}");
    }

    [TestMethod]
    public void BadOptionsGiveErrorsThatNameTheOption()
    {
        var ml = new MLContext(seed: 1);
        void Rejects<TException>(Action<PromptTuningOptions> change, string name)
            where TException : ArgumentException
        {
            var options = FastOptions(_model);
            change(options);
            var error = Assert.ThrowsExactly<TException>(() => ml.MulticlassClassification.Trainers.PromptTuning(options));
            Assert.AreEqual(name, error.ParamName);
            StringAssert.Contains(error.Message, name);
        }

        Rejects<ArgumentOutOfRangeException>(o => o.VirtualTokenCount = 0, "VirtualTokenCount");
        Rejects<ArgumentOutOfRangeException>(o => o.VirtualTokenCount = -3, "VirtualTokenCount");
        Rejects<ArgumentOutOfRangeException>(o => o.DecomposedRank = -1, "DecomposedRank");
        Rejects<ArgumentOutOfRangeException>(o => o.DecomposedLearningRate = 0, "DecomposedLearningRate");
        Rejects<ArgumentOutOfRangeException>(o => o.DecomposedAlpha = -1, "DecomposedAlpha");
        Rejects<ArgumentOutOfRangeException>(o => o.ProjectionSpaces = 0, "ProjectionSpaces");
        Rejects<ArgumentException>(o => o.ProjectionSpaces = 3, "ProjectionSpaces"); // EPT without DePT
        Rejects<ArgumentException>(o => o.Init = PromptTuningInit.Text, "InitText");
        Rejects<ArgumentException>(o => (o.Init, o.InitText) = (PromptTuningInit.Text, "   "), "InitText");
        Rejects<ArgumentException>(o => o.InitText = "a text without Init = Text", "InitText");
        Rejects<ArgumentOutOfRangeException>(o => o.Init = (PromptTuningInit)7, "Init");
        Rejects<ArgumentOutOfRangeException>(o => o.Pooling = (Pooling)9, "Pooling");

        var tokenizer = LlamaTextTokenizer.FromModelFolder(_model);
        var empty = Assert.ThrowsExactly<ArgumentException>(() => PromptTuningSettingsJson.InitTokenIds(tokenizer, string.Empty));
        Assert.AreEqual("InitText", empty.ParamName);
        StringAssert.Contains(empty.Message, "tokenizes to no tokens");
    }
}
