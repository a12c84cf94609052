using System.Text.Json;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Methods.PromptTuning;

/// <summary>Prompt tuning (with DePT and EPT) as the registry knows it: options, trainers, search space, PEFT's PROMPT_TUNING mapping.</summary>
internal static class PromptTuningMethod
{
    public static TuningMethodDescriptor Descriptor { get; } = new()
    {
        Method = TuningMethod.PromptTuning,
        OptionsType = typeof(PromptTuningOptions),
        Factory = new PromptTuningFactory(),
        Multiclass = (env, options) => new PromptTuningTrainer(env, (PromptTuningOptions)options),
        Binary = (env, options) => new PromptTuningBinaryTrainer(env, (PromptTuningOptions)options),
        SearchSpace =
        [
            .. SearchDimension.Shared,
            new SearchRange(nameof(PromptTuningOptions.VirtualTokenCount), 4, 64, 20, LogBase: true, IsInteger: true),
            new SearchChoice(nameof(PromptTuningOptions.DecomposedRank), [0, 4, 16]),
            new SearchRange(nameof(PromptTuningOptions.DecomposedLearningRate), 1e-4, 1e-2, 1e-3, LogBase: true),
        ],
        Peft = new PromptTuningPeftMapping(),
        DisplayName = options => options switch
        {
            PromptTuningOptions { ProjectionSpaces: > 1 } => "EPT",
            PromptTuningOptions { DecomposedRank: > 0 } => "DePT",
            _ => "Prompt tuning",
        },
    };
}

/// <summary>
/// PEFT's PROMPT_TUNING: <c>prompt_embeddings</c> [n, hidden] is the soft prompt in input-embedding space, prepended to the
/// token embeddings at positions 0..n-1 (the text at n..n+T-1), with the mask extended by ones; the head is
/// <c>base_model.score.weight</c>. PEFT pools at the last position of every row; we pool at the last real token,
/// which is the same on unpadded rows and right on padded ones (PEFT issue #764).
/// </summary>
internal sealed class PromptTuningPeftMapping : IPeftMapping
{
    public string PeftType => "PROMPT_TUNING";

    public (LlamaSequenceClassifier Classifier, JsonElement Settings) Import(LlamaModel model, PeftAdapterFiles adapter)
    {
        PeftFormat.RequireSingleSubmodule(adapter);
        var n = PeftFormat.RequireInt(adapter, "num_virtual_tokens");
        var tokenDim = adapter.Config["token_dim"]?.GetValue<int>() ?? model.Config.HiddenSize;
        if (tokenDim != model.Config.HiddenSize)
        {
            throw new InvalidDataException($"'{adapter.ConfigPath}' has token_dim {tokenDim} but the base model's hidden size is {model.Config.HiddenSize}.");
        }

        var (prompt, score) = PeftFormat.PromptLearningTensors(adapter, [n, model.Config.HiddenSize]);
        var settings = new PromptTuningSettings(n, PromptTuningInit.Random, null, 0, 8, 0, 1, Pooling.Last);
        var element = JsonSerializer.SerializeToElement(settings, SettingsJson.Options);
        var classifier = new PromptTuningFactory().Build(model, (int)score.shape[0], element, tokenLevel: false);
        return (PeftFormat.Filled(classifier, c =>
        {
            PeftFormat.CopyInto(((PromptTuningAdapter)c.Adapter).PromptEmbeddings, prompt);
            PeftFormat.CopyInto(c.Score.weight!, score);
        }), element);
    }

    public void Export(PeftExport export)
    {
        var adapter = (PromptTuningAdapter)export.Sequence.Adapter;
        var settings = adapter.Settings;
        if (settings.DecomposedRank > 0)
        {
            throw new NotSupportedException(
                $"PEFT export of DePT/EPT models (DecomposedRank {settings.DecomposedRank}) is not available; PEFT has no adapter type for a low-rank update of the input embeddings.");
        }

        PeftFormat.RequireLastPooling(settings.Pooling);
        var c = export.Sequence.Model.Config;
        var config = PeftFormat.PromptLearningConfig(export.BaseModelPath, PeftType, settings.VirtualTokenCount, c.HiddenSize, c.NumAttentionHeads, c.NumHiddenLayers);
        config["prompt_tuning_init"] = "RANDOM"; // the weights are loaded; PEFT skips init in inference mode anyway
        config["prompt_tuning_init_text"] = null;
        config["tokenizer_name_or_path"] = null;
        config["tokenizer_kwargs"] = null;
        PeftFormat.WritePromptLearning(export, config, adapter.PromptEmbeddings);
    }
}
