using System.Runtime.InteropServices;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Classifiers over the same base share one copy of its frozen weights: a trained model and its reload cost one base
/// plus their adapters, score as unshared models do, and release the base with the last of them.
/// </summary>
[TestClass]
public sealed class SharedBaseModelTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 43);
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
    public void ATrainedModelAndItsReloadCostOneBasePlusTheirAdaptersAndScoreAsUnsharedModelsDo()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.Rows(24, seed: 1));
        var test = ToyData.Rows(9, seed: 2);
        var options = new LabelSupervisedLlamaOptions
        {
            ModelPath = _model,
            Epochs = 2,
            BatchSize = 8,
            LearningRate = 1e-2,
            LoraRank = 4,
            LoraAlpha = 8,
            MaxSequenceLength = 32,
            Seed = 5,
        };
        var zip = Path.Combine(Path.GetTempPath(), $"lt-shared-{Guid.NewGuid():N}.zip");
        try
        {
            var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train);
            var trained = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(mapLabel.Transform(train));
            ml.Model.Save(trained, mapLabel.Transform(train).Schema, zip);
            var reloaded = (LabelTuningMulticlassTransformer)ml.Model.Load(zip, out _);
            Assert.AreEqual(2, SharedBaseModels.UsersOf(_model, CPU, ScalarType.Float32), "the trained model and its reload use one base");

            var first = (LlamaSequenceClassifier)trained.Runtime.Classifier;
            var second = (LlamaSequenceClassifier)reloaded.Runtime.Classifier;
            Assert.IsTrue(first.Model.SharesBaseWeights && second.Model.SharesBaseWeights);
            Assert.AreNotSame(first.Model, second.Model, "each classifier has its own module tree");
            var firstBase = first.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in second.Model.named_parameters())
            {
                if (!name.Contains("lora_", StringComparison.Ordinal))
                {
                    Assert.AreEqual(Storage(firstBase[name]), Storage(parameter), $"'{name}' is one storage");
                }
            }

            // Bytes of distinct storages over both classifiers: one base, plus each one's LoRA factors and head.
            using var unshared = ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32);
            var baseBytes = unshared.parameters().Sum(p => p.numel() * p.ElementSize);
            var adapterBytes = first.TrainableParameters().Sum(p => p.Parameter.numel() * p.Parameter.ElementSize);
            var storages = new Dictionary<IntPtr, long>();
            foreach (var module in new[] { first, second })
            {
                foreach (var p in module.parameters())
                {
                    storages[Storage(p)] = p.numel() * p.ElementSize;
                }
            }

            Assert.AreEqual(baseBytes + (2 * adapterBytes), storages.Values.Sum(), "one base plus two adapters");

            // Scores: the reload equals the trained model, and both equal an unshared copy that scores through merged weights.
            var inputs = test.Select(r => new TextInput(r.Text, null)).ToList();
            var expected = trained.Runtime.Score(inputs);
            var again = reloaded.Runtime.Score(inputs);
            var description = trained.Runtime.Description;
            var copy = TuningMethodRegistry.Get(description.Method).Factory.Build(
                ClassifierFactory.LoadDecoder(_model, CPU, ScalarType.Float32), description.ClassNames.Length, description.Settings, tokenLevel: false);
            using var unsharedRuntime = new ClassifierRuntime(copy, trained.Runtime.Encoder, CPU, description);
            var ours = first.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter);
            using (no_grad())
            {
                foreach (var (name, parameter) in copy.TrainableParameters())
                {
                    parameter.copy_(ours[name]);
                }
            }

            Assert.IsTrue(((LlamaSequenceClassifier)copy).modules().OfType<LoraLinear>().All(l => l.MergeForScoring), "the unshared copy merges");
            Assert.IsTrue(first.modules().OfType<LoraLinear>().All(l => !l.MergeForScoring), "the shared one computes W x + s·B·A x");
            var merged = unsharedRuntime.Score(inputs);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], again[i], $"row {i}: the reload scores as the trained model");
                for (var k = 0; k < expected[i].Length; k++)
                {
                    Assert.AreEqual(merged[i][k], expected[i][k], 1e-5, $"row {i}, class {k}: shared and unshared scores");
                }
            }

            // Releasing one leaves the other intact; releasing both releases the base.
            trained.Dispose();
            Assert.AreEqual(1, SharedBaseModels.UsersOf(_model, CPU, ScalarType.Float32));
            var afterDispose = reloaded.Runtime.Score(inputs);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], afterDispose[i], $"row {i} after the other model was disposed");
            }

            reloaded.Dispose();
            Assert.AreEqual(0, SharedBaseModels.UsersOf(_model, CPU, ScalarType.Float32), "the last user released the base");
        }
        finally
        {
            File.Delete(zip);
        }
    }

    /// <summary>
    /// RSS as a second signal, in a fresh process (in this one, memory freed by earlier tests is reused and hides
    /// growth): a second decoder over a loaded base adds a small fraction of what the first one did.
    /// </summary>
    [TestMethod]
    public void ASecondDecoderOverALoadedBaseAddsAlmostNoResidentMemory()
    {
        var folder = TinyModels.CreateFolder(seed: 44, TinyModels.Config(hidden: 512, layers: 4, heads: 8, kvHeads: 2, intermediate: 1376, vocab: 4000));
        try
        {
            var words = TestHostProcess.Run("shared-base-rss", folder).Trim().Split(' ');
            long Value(string key) => long.Parse(words[Array.IndexOf(words, key) + 1], System.Globalization.CultureInfo.InvariantCulture);
            var (baseBytes, first, second) = (Value("base_bytes"), Value("first_rss"), Value("second_rss"));
            var line = $"base {baseBytes / 1e6:F1} MB; first decoder +{first / 1e6:F1} MB RSS, second +{second / 1e6:F1} MB";
            Console.WriteLine(line);
            Assert.IsTrue(first > baseBytes / 2, line);
            Assert.IsTrue(second < baseBytes / 10, line);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Renting and disposing decoders over a shared base, the base's load and release included, leaves no live tensor behind.</summary>
    [TestMethod]
    public void RentingAndDisposingLeavesNoLiveTensors()
    {
        SharedBaseModels.Rent(_model, CPU, ScalarType.Float32).Dispose(); // warm-up: lazily created caches
        var baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        using (var hold = SharedBaseModels.Hold(_model, CPU, ScalarType.Float32))
        {
            var held = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            SharedBaseModels.Rent(_model, CPU, ScalarType.Float32).Dispose();
            Assert.AreEqual(held, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "a decoder over a held base leaves nothing behind");
        }

        for (var i = 0; i < 3; i++)
        {
            using var first = SharedBaseModels.Rent(_model, CPU, ScalarType.Float32);
            using var second = SharedBaseModels.Rent(_model, CPU, ScalarType.Float32);
        }

        Assert.AreEqual(0, SharedBaseModels.UsersOf(_model, CPU, ScalarType.Float32));
        Assert.AreEqual(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "live tensors after three rounds of two decoders");
    }

    /// <summary>LoRA on one decoder over a shared base leaves the other's projections and weights alone.</summary>
    [TestMethod]
    public void WrappingOneDecoderInLoraLeavesTheOtherAlone()
    {
        using var plain = SharedBaseModels.Rent(_model, CPU, ScalarType.Float32);
        using var wrapped = SharedBaseModels.Rent(_model, CPU, ScalarType.Float32);
        var before = plain.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        LoraInjector.Apply(wrapped, 4, 8, 0, ["q_proj", "v_proj"], useRsLora: false);
        Assert.IsTrue(plain.Layers[0].SelfAttention.Projections.All(p => p.Module is TorchSharp.Modules.Linear), "the other decoder keeps plain projections");
        Assert.AreEqual(2, wrapped.Layers[0].SelfAttention.Projections.Count(p => p.Module is LoraLinear));
        foreach (var (name, value) in plain.state_dict())
        {
            Assert.IsTrue(value.equal(before[name]).all().item<bool>(), $"'{name}' unchanged");
            before[name].Dispose();
        }
    }

    /// <summary>The address of a tensor's storage: equal for tensors that share memory.</summary>
    private static IntPtr Storage(Tensor tensor) => THSStorage_data_ptr(tensor.Handle);

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSStorage_data_ptr(IntPtr tensor);
}
