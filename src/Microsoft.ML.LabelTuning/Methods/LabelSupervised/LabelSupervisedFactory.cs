using System.Text.Json;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods.LabelSupervised;

/// <summary>Builds LS-LLaMA: LoRA injected into the decoder, no input adapter, a head on the pooled state.</summary>
internal sealed class LabelSupervisedFactory : ITuningMethodFactory
{
    public IClassifierModel Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel)
    {
        var lora = settings.Deserialize<LoraSettings>(SettingsJson.Options)
            ?? throw new InvalidDataException("LS-LLaMA settings are missing from the saved model.");
        LoraInjector.Apply(model, lora.Rank, lora.Alpha, lora.Dropout, lora.TargetModules, lora.UseRsLora);
        return new LlamaSequenceClassifier(model, classCount, adapter: null, lora.Pooling, causal: !lora.Unmasked, tokenLevel);
    }
}
