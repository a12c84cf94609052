using System.Text.Json;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods.PrefixTuning;

/// <summary>Prefix tuning as the registry knows it: options, trainers, search space, PEFT's PREFIX_TUNING mapping.</summary>
internal static class PrefixTuningMethod
{
    public static TuningMethodDescriptor Descriptor { get; } = new()
    {
        Method = TuningMethod.PrefixTuning,
        OptionsType = typeof(PrefixTuningOptions),
        Factory = new PrefixTuningFactory(),
        Multiclass = (env, options) => new PrefixTuningTrainer(env, (PrefixTuningOptions)options),
        Binary = (env, options) => new PrefixTuningBinaryTrainer(env, (PrefixTuningOptions)options),
        SearchSpace =
        [
            .. SearchDimension.Shared,
            new SearchRange(nameof(PrefixTuningOptions.VirtualTokenCount), 4, 64, 20, LogBase: true, IsInteger: true),
            new SearchChoice(nameof(PrefixTuningOptions.ProjectionHiddenSize), [0, 128]),
        ],
        Peft = new PrefixTuningPeftMapping(),
        DisplayName = _ => "Prefix tuning",
    };
}

/// <summary>
/// PEFT's PREFIX_TUNING: <c>prompt_embeddings</c> [n, layers·2·token_dim] viewed as [n, layers·2, heads, token_dim / heads],
/// layer l reading 2l as keys and 2l+1 as values, with heads = num_key_value_heads (GQA). Prefixes made with the
/// projection MLP arrive folded (PEFT saves the MLP's output), so prefix_projection needs nothing more.
/// </summary>
internal sealed class PrefixTuningPeftMapping : IPeftMapping
{
    public string PeftType => "PREFIX_TUNING";

    public (LlamaSequenceClassifier Classifier, JsonElement Settings) Import(LlamaModel model, PeftAdapterFiles adapter)
    {
        PeftFormat.RequireSingleSubmodule(adapter);
        var n = PeftFormat.RequireInt(adapter, "num_virtual_tokens");
        var layers = PeftFormat.RequireInt(adapter, "num_layers");
        var tokenDim = PeftFormat.RequireInt(adapter, "token_dim");
        var heads = PeftFormat.RequireInt(adapter, "num_attention_heads");
        var c = model.Config;
        if (layers != c.NumHiddenLayers)
        {
            throw new InvalidDataException($"'{adapter.ConfigPath}' has num_layers {layers} but the base model has {c.NumHiddenLayers} layers.");
        }

        if (heads != c.KeyValueHeadCount || tokenDim != c.KeyValueHeadCount * c.HeadDimension)
        {
            throw new InvalidDataException(
                $"'{adapter.ConfigPath}' has num_attention_heads {heads} and token_dim {tokenDim} but the base model's keys and values have " +
                $"{c.KeyValueHeadCount} heads of {c.HeadDimension} (token_dim {c.KeyValueHeadCount * c.HeadDimension}); prefixes must be sized by " +
                "num_key_value_heads × head_dim, as PEFT ≥ 0.12 derives for grouped-query attention.");
        }

        var (prefix, score) = PeftFormat.PromptLearningTensors(adapter, [n, layers * 2L * tokenDim]);
        var settings = new PrefixTuningSettings(n, 0, Pooling.Last);
        var element = JsonSerializer.SerializeToElement(settings, SettingsJson.Options);
        var classifier = new PrefixTuningFactory().Build(model, (int)score.shape[0], element, tokenLevel: false);
        return (PeftFormat.Filled(classifier, built =>
        {
            PeftFormat.CopyInto(((PrefixTuningAdapter)built.Adapter).TrainableParameters.Single().Parameter, prefix);
            PeftFormat.CopyInto(built.Score.weight!, score);
        }), element);
    }

    public void Export(PeftExport export)
    {
        var adapter = (PrefixTuningAdapter)export.Sequence.Adapter;
        var settings = export.Settings.Deserialize<PrefixTuningSettings>(SettingsJson.Options)!;
        PeftFormat.RequireLastPooling(settings.Pooling);
        var c = export.Sequence.Model.Config;
        var tokenDim = c.KeyValueHeadCount * c.HeadDimension;
        var config = PeftFormat.PromptLearningConfig(export.BaseModelPath, PeftType, adapter.VirtualTokenCount, tokenDim, c.KeyValueHeadCount, c.NumHiddenLayers);
        config["encoder_hidden_size"] = tokenDim;
        config["prefix_projection"] = false; // saved folded, as PEFT saves a projected prefix
        using var noGrad = no_grad();
        PeftFormat.WritePromptLearning(export, config, adapter.Table());
    }
}
