using System.Text.Json;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Methods.PrefixTuning;

/// <summary>Builds prefix tuning: the frozen decoder, a <see cref="PrefixTuningAdapter"/> and a head.</summary>
internal sealed class PrefixTuningFactory : ITuningMethodFactory
{
    IClassifierModel ITuningMethodFactory.Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
        => Build(model, classCount, settings, tokenLevel);

    public LlamaSequenceClassifier Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
    {
        var parsed = settings.Deserialize<PrefixTuningSettings>(SettingsJson.Options)
            ?? throw new InvalidDataException("Prefix-tuning settings are missing from the saved model.");
        if (parsed.VirtualTokenCount < 1 || parsed.ProjectionHiddenSize < 0)
        {
            throw new InvalidDataException(
                $"Prefix-tuning settings are invalid: VirtualTokenCount {parsed.VirtualTokenCount}, ProjectionHiddenSize {parsed.ProjectionHiddenSize}.");
        }

        return new LlamaSequenceClassifier(model, classCount, new PrefixTuningAdapter(model, parsed), parsed.Pooling, causal: true, tokenLevel);
    }

    /// <summary>
    /// Folds a trained projection MLP into plain prefixes and records that in the settings, so the saved model holds
    /// what PEFT saves and reloads to exactly the same scores. Runtimes without an MLP come back unchanged.
    /// </summary>
    public static ClassifierRuntime Fold(ClassifierRuntime runtime)
    {
        if (runtime.Sequence.Adapter is not PrefixTuningAdapter adapter || !adapter.Fold())
        {
            return runtime;
        }

        var settings = runtime.Description.Settings.Deserialize<PrefixTuningSettings>(SettingsJson.Options)!;
        var folded = JsonSerializer.SerializeToElement(settings with { ProjectionHiddenSize = 0 }, SettingsJson.Options);
        return new ClassifierRuntime(runtime.Classifier, runtime.Encoder, runtime.Device, runtime.Description with { Settings = folded })
        {
            KeyValues = runtime.KeyValues,
            LastTraining = runtime.LastTraining,
        };
    }
}
