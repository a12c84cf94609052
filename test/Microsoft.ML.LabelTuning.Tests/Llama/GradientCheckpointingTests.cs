using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

/// <summary>
/// Gradient checkpointing recomputes each decoder layer in the backward pass: the gradients must equal those of the
/// plain pass (dropout included, through the saved random state), for every way a method feeds the decoder: LoRA
/// inside the layers, soft prompts before them, prefixes beside them.
/// </summary>
[TestClass]
public sealed class GradientCheckpointingTests
{
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
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    public static IEnumerable<object[]> Methods()
    {
        yield return ["LoRA q,v, dropout 0.1, last-token pooling", TuningMethod.LabelSupervised,
            new LoraSettings(4, 8, 0.1, ["q_proj", "v_proj"], Pooling.Last, Unmasked: false)];
        yield return ["LoRA on every projection, mean pooling, bidirectional", TuningMethod.LabelSupervised,
            new LoraSettings(4, 8, 0.0, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], Pooling.Mean, Unmasked: true)];
        yield return ["prompt tuning with DePT", TuningMethod.PromptTuning,
            new PromptTuningSettings(6, PromptTuningInit.Random, null, 4, 8, 32, 1, Pooling.Last)];
        yield return ["prefix tuning through the projection MLP", TuningMethod.PrefixTuning,
            new PrefixTuningSettings(5, 16, Pooling.Mean)];
    }

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void GradientsWithCheckpointingEqualGradientsWithout(string name, TuningMethod method, object settings)
    {
        random.manual_seed(3);
        var decoder = ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32);
        using var classifier = TuningMethodRegistry.Get(method).Factory
            .Build(decoder, 3, JsonSerializer.SerializeToElement(settings, settings.GetType(), SettingsJson.Options), tokenLevel: false);
        var module = (nn.Module)classifier;
        classifier.FreezeBase();
        classifier.SetTraining(true);
        using (no_grad())
        {
            foreach (var (_, parameter) in classifier.TrainableParameters())
            {
                parameter.add_(randn_like(parameter) * 0.05); // LoRA's and DePT's zero-initialised B would leave A without a gradient
            }
        }

        var examples = new List<Example>
        {
            new([1, 17, 40, 99, 5, 230], 0),
            new([1, 8, 8, 301], 2),
            new([1, 55, 66, 77, 88, 99, 111, 122], 1),
        };

        var plain = Gradients(classifier, decoder, examples, checkpointing: false);
        var checkpointed = Gradients(classifier, decoder, examples, checkpointing: true);
        Assert.AreEqual(plain.Count, checkpointed.Count);
        foreach (var (key, expected) in plain)
        {
            var actual = checkpointed[key];
            var scale = Math.Max(1e-12, expected.Max(Math.Abs));
            Assert.IsTrue(scale > 1e-9, $"{name}: '{key}' gets no gradient, so the comparison would prove nothing");
            var worst = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
            Assert.IsTrue(worst <= 1e-5, $"{name}: gradient of '{key}' differs by {worst:E2} with checkpointing (largest entry {scale:E2})");
        }

        Assert.IsFalse(module.parameters().Any(p => !p.requires_grad && p.grad is not null), $"{name}: a frozen parameter got a gradient");
    }

    /// <summary>Checkpointing only changes what is kept: seeded training with it scores like seeded training without.</summary>
    [TestMethod]
    public void SeededTrainingWithCheckpointingScoresLikeTrainingWithout()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.Rows(24, seed: 1));
        var test = ml.Data.LoadFromEnumerable(ToyData.Rows(12, seed: 2));
        var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label");
        float[][] Run(GradientCheckpointing checkpointing)
        {
            var options = new LabelSupervisedLlamaOptions
            {
                ModelPath = _model,
                Epochs = 2,
                BatchSize = 8,
                LearningRate = 1e-2,
                LoraRank = 4,
                LoraAlpha = 8,
                LoraDropout = 0.1,
                MaxSequenceLength = 32,
                Seed = 5,
                GradientCheckpointing = checkpointing,
            };
            return mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train)
                .Transform(test).GetColumn<float[]>("Score").ToArray();
        }

        var off = Run(GradientCheckpointing.Off);
        var auto = Run(GradientCheckpointing.Auto); // a tiny model fits: Auto leaves it off, bit for bit
        var on = Run(GradientCheckpointing.On);
        for (var i = 0; i < off.Length; i++)
        {
            CollectionAssert.AreEqual(off[i], auto[i], $"row {i}: Auto on a run that fits must be the plain run");
            for (var k = 0; k < off[i].Length; k++)
            {
                Assert.AreEqual(off[i][k], on[i][k], 1e-5, $"row {i}, class {k}");
            }
        }
    }

    /// <summary>
    /// With checkpointing the estimate keeps 1 hidden vector per token and layer (its input) plus 1.45 times one layer's
    /// activations (the recomputed layer and its backward pass; both fitted on the TinyLlama shape); without it, every
    /// layer's activations and a per-layer term of 4.6 floats per hidden size squared.
    /// </summary>
    [TestMethod]
    public void TheEstimateCountsCheckpointing()
    {
        var config = TinyModels.Config(layers: 8);
        var plain = MemoryEstimate.For(config, 100_000, 1_000, 4, 16, 128);
        var checkpointed = MemoryEstimate.For(config, 100_000, 1_000, 4, 16, 128, checkpointing: true);
        var tokens = 16.0 * 128;
        var perToken = (6 * 64) + (4 * 32) + (4 * 128); // hidden 64, key/value width 2 × 16, MLP 128
        var perLayer = 4.6 * 64 * 64;
        var outside = tokens * ((64 * 4) + 1800.0);
        Assert.AreEqual((long)(((8 * ((tokens * perToken) + perLayer)) + outside) * 4), plain.ActivationBytes);
        Assert.AreEqual((long)(((8 * tokens * 1.0 * 64) + (1.45 * tokens * perToken) + outside) * 4), checkpointed.ActivationBytes);
        Assert.IsTrue(checkpointed.ActivationBytes * 2 < plain.ActivationBytes, $"{checkpointed} vs {plain}");
        StringAssert.Contains(checkpointed.ToString(), "layers checkpointed");
    }

    /// <summary>A run that fits nowhere is refused with its largest term named and every option that shrinks it.</summary>
    [TestMethod]
    public void AnImpossibleRunIsRefusedNamingTheLargestTermAndTheOptionsThatShrinkIt()
    {
        var estimate = MemoryEstimate.For(TinyModels.Config(), 150_000, 5_000, 4, 64, 4096);
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => MemoryBudget.Check(estimate, 1 << 20, MemoryCheck.Fail, channel: null));
        StringAssert.Contains(error.Message, $"the largest part is the attention masks ({MemoryEstimate.FormatBytes(estimate.AttentionBytes)})");
        foreach (var option in new[] { "GradientCheckpointing", "BatchSize", "GradientAccumulationSteps", "micro-batches", "MaxSequenceLength" })
        {
            StringAssert.Contains(error.Message, option);
        }

        var checkpointed = MemoryEstimate.For(TinyModels.Config(layers: 30), 150_000, 5_000, 4, 64, 64, checkpointing: true);
        var second = Assert.ThrowsExactly<InvalidOperationException>(() => MemoryBudget.Check(checkpointed, 1 << 20, MemoryCheck.Fail, channel: null));
        StringAssert.Contains(second.Message, "the largest part is the activations");
        Assert.IsFalse(second.Message.Contains("set GradientCheckpointing", StringComparison.Ordinal), "already checkpointed: not offered again");
    }

    private static Dictionary<string, float[]> Gradients(IClassifierModel classifier, LlamaModel decoder, List<Example> examples, bool checkpointing)
    {
        decoder.GradientCheckpointing = checkpointing;
        foreach (var (_, parameter) in classifier.TrainableParameters())
        {
            parameter.grad?.zero_();
        }

        random.manual_seed(11); // the same dropout masks for both passes
        using (var scope = NewDisposeScope())
        {
            var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), 0, CPU);
            classifier.Loss(batch, examples, null).backward();
        }

        return classifier.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.grad!.data<float>().ToArray());
    }
}
