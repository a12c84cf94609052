using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.ML.LabelTuning.Tests.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Tests.Methods;

/// <summary>
/// A method added from outside the library, as docs/architecture.md's "How to add a method" walks through: options, a
/// factory, a trainer and a descriptor, then one registration. With no change to library code the sweep trains it, a
/// saved model reloads to the same scores, and PEFT interop refuses it by name.
/// </summary>
[TestClass]
public sealed class MethodRegistrationTests
{
    /// <summary>Step 1, the name: a method is identified by its name, which saved models record.</summary>
    private static readonly TuningMethod _linearProbe = new("LinearProbe");

    /// <summary>Step 5, the descriptor: everything the library asks about the method.</summary>
    private static TuningMethodDescriptor Descriptor => new()
    {
        Method = _linearProbe,
        OptionsType = typeof(LinearProbeOptions),
        Factory = new LinearProbeFactory(),
        Multiclass = (env, options) => new LinearProbeTrainer(env, (LinearProbeOptions)options),
        SearchSpace = [.. SearchDimension.Shared, new SearchChoice(nameof(LinearProbeOptions.Pooling), [Pooling.Mean, Pooling.Last])],
        DisplayName = options => options is LinearProbeOptions { Pooling: Pooling.Last } ? "Linear probe (last)" : "Linear probe",
    };

    [TestMethod]
    public void AMethodRegisteredFromOutsideIsSweptSavedReloadedAndRefusedByPeft()
    {
        var model = TinyModels.CreateFolder(seed: 47);
        var folder = Directory.CreateTempSubdirectory("lt-registration-").FullName;
        TuningMethodRegistry.Register(Descriptor); // step 6, the registration
        try
        {
            Assert.ThrowsExactly<InvalidOperationException>(() => TuningMethodRegistry.Register(Descriptor), "a duplicate registration is an error");
            CollectionAssert.Contains(TuningMethodRegistry.Registered.ToArray(), _linearProbe);

            // The sweep finds the method's options, defaults, search space, trainer and name through the registry alone.
            var ml = new MLContext(seed: 1);
            var train = ml.Data.LoadFromEnumerable(PromptLearningTestKit.Rows(96, seed: 1));
            var validation = ml.Data.LoadFromEnumerable(PromptLearningTestKit.Rows(40, seed: 2));
            var space = LabelTuningSearchSpace.For(_linearProbe);
            Assert.AreEqual(0.1, ((RangeParameter)space[_linearProbe]["LearningRate"]!).Init, 1e-12, "the range is centred on the options' own default");
            space.Fix("Epochs", 12);
            var result = new LabelTuningExperiment(ml, new LabelTuningExperimentSettings { ModelPath = model, MaxSequenceLength = 32, BatchSize = 16, Seed = 3 })
                .SetDataset(train, validation).SetSearchSpace(space).SetMaxTrials(2).SetCheckpointFolder(folder)
                .Run(CancellationToken.None);
            Assert.AreEqual(_linearProbe, result.BestTrial.Method);
            Assert.AreEqual(TrialStatus.Completed, result.BestTrial.Status);
            StringAssert.StartsWith(result.BestTrial.MethodName, "Linear probe");
            Assert.IsTrue(result.BestTrial.Metric > 0.5, $"the probe learns the separable toy task (macro accuracy {result.BestTrial.Metric:P1}; chance is 33%)");
            Assert.AreEqual(3L * 64, result.BestTrial.TrainableParameters, "only the head trains: 3 classes × hidden 64");

            // Saved and reloaded: the model records the method's name and its settings, and the registry rebuilds it.
            var path = Path.Combine(folder, "probe.zip");
            ml.Model.Save(result.Model, train.Schema, path);
            var reloaded = ml.Model.Load(path, out _);
            var before = result.Model.Transform(validation).GetColumn<float[]>("Score").ToArray();
            var after = reloaded.Transform(validation).GetColumn<float[]>("Score").ToArray();
            for (var i = 0; i < before.Length; i++)
            {
                CollectionAssert.AreEqual(before[i], after[i], $"row {i} scores the same after reloading");
            }

            // PEFT interop asks the descriptor for a mapping; this method has none, so export is refused by name.
            var transformer = ((TransformerChain<ITransformer>)reloaded).OfType<LabelTuningTransformerBase>().Single();
            var refusal = Assert.ThrowsExactly<NotSupportedException>(() => transformer.ExportPeftAdapter(Path.Combine(folder, "peft")));
            StringAssert.Contains(refusal.Message, "LinearProbe");
            foreach (var part in new[] { reloaded, result.Model }.SelectMany(m => (TransformerChain<ITransformer>)m).OfType<IDisposable>())
            {
                part.Dispose();
            }
        }
        finally
        {
            Assert.IsTrue(TuningMethodRegistry.Unregister(_linearProbe));
            Directory.Delete(folder, recursive: true);
            Directory.Delete(model, recursive: true);
        }

        var unknown = Assert.ThrowsExactly<InvalidOperationException>(() => TuningMethodRegistry.Get(_linearProbe));
        StringAssert.Contains(unknown.Message, "LinearProbe");
    }

    /// <summary>Step 2, the options: the defaults are written here and nowhere else.</summary>
    public sealed class LinearProbeOptions : LabelTuningOptions
    {
        public LinearProbeOptions()
        {
            LearningRate = 0.1;
        }

        /// <summary>Pooling of the final hidden states. Default Mean.</summary>
        public Pooling Pooling { get; set; } = Pooling.Mean;
    }

    /// <summary>What a saved probe needs to rebuild itself.</summary>
    internal sealed record LinearProbeSettings(Pooling Pooling);

    /// <summary>Step 3, the factory: the frozen decoder and a head, built from the saved settings.</summary>
    internal sealed class LinearProbeFactory : ITuningMethodFactory
    {
        public IClassifierModel Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
        {
            var parsed = settings.Deserialize<LinearProbeSettings>(SettingsJson.Options)
                ?? throw new InvalidDataException("Linear-probe settings are missing from the saved model.");
            return new LlamaSequenceClassifier(model, classCount, adapter: null, parsed.Pooling, causal: true, tokenLevel);
        }
    }

    /// <summary>Step 4, the trainer: which method it is and which settings it saves.</summary>
    public sealed class LinearProbeTrainer : MulticlassLabelTuningTrainer
    {
        private readonly LinearProbeOptions _options;

        internal LinearProbeTrainer(IHostEnvironment env, LinearProbeOptions options)
            : base(env, options)
        {
            _options = options;
        }

        private protected override (TuningMethod Method, JsonElement Settings) Describe()
            => (_linearProbe, JsonSerializer.SerializeToElement(new LinearProbeSettings(_options.Pooling), SettingsJson.Options));
    }
}
