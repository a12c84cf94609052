using System.Text.Json;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods.PromptTuning;

/// <summary>Builds prompt tuning, DePT and EPT: the frozen decoder, a <see cref="PromptTuningAdapter"/> and a head.</summary>
internal sealed class PromptTuningFactory : ITuningMethodFactory
{
    IClassifierModel ITuningMethodFactory.Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
        => Build(model, classCount, settings, tokenLevel);

    public LlamaSequenceClassifier Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
    {
        var parsed = settings.Deserialize<PromptTuningSettings>(SettingsJson.Options)
            ?? throw new InvalidDataException("Prompt-tuning settings are missing from the saved model.");
        if (parsed.VirtualTokenCount < 1 || parsed.DecomposedRank < 0 || parsed.ProjectionSpaces < 1
            || (parsed.DecomposedRank > 0 && parsed.MaxSequenceLength < 1))
        {
            throw new InvalidDataException(
                $"Prompt-tuning settings are invalid: VirtualTokenCount {parsed.VirtualTokenCount}, DecomposedRank {parsed.DecomposedRank}, " +
                $"ProjectionSpaces {parsed.ProjectionSpaces}, MaxSequenceLength {parsed.MaxSequenceLength}.");
        }

        var adapter = new PromptTuningAdapter(model, parsed);
        return new LlamaSequenceClassifier(model, classCount, adapter, parsed.Pooling, causal: true, tokenLevel);
    }
}
