using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>
/// How one tuning method moves to and from Hugging Face PEFT (task type SEQ_CLS): which <c>peft_type</c> it is, how an
/// adapter folder becomes its classifier, and how its trained classifier becomes an adapter folder.
/// </summary>
internal interface IPeftMapping
{
    /// <summary>Gets PEFT's <c>peft_type</c> for this method, e.g. LORA.</summary>
    string PeftType { get; }

    /// <summary>
    /// Builds the classifier <paramref name="adapter"/> describes on <paramref name="model"/> and copies its tensors in.
    /// A mapping that fails after building its classifier disposes it before the error leaves.
    /// </summary>
    (LlamaSequenceClassifier Classifier, JsonElement Settings) Import(LlamaModel model, PeftAdapterFiles adapter);

    /// <summary>Writes <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> for a trained classifier.</summary>
    void Export(PeftExport export);
}

/// <summary>An adapter folder PEFT wrote: its parsed config and its tensors, with their paths for error messages.</summary>
internal sealed record PeftAdapterFiles(JsonNode Config, string ConfigPath, IReadOnlyDictionary<string, Tensor> Tensors, string WeightsPath);

/// <summary>What an export writes from: the trained classifier, the method's saved settings, the base model's path and the output folder.</summary>
internal sealed record PeftExport(IClassifierModel Classifier, JsonElement Settings, string BaseModelPath, string Folder)
{
    /// <summary>Gets the classifier as a decoder with a single head, which every PEFT SEQ_CLS adapter is.</summary>
    public LlamaSequenceClassifier Sequence => Classifier as LlamaSequenceClassifier
        ?? throw new NotSupportedException($"{Classifier.GetType().Name} is not a decoder with a single head; PEFT has no equivalent adapter type.");
}
