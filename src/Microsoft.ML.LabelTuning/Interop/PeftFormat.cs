using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Methods;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Interop;

/// <summary>
/// What every PEFT mapping shares: the two file names, reading keys with PEFT's prefixes, checking config values, and
/// writing the prompt-learning layout (<c>prompt_embeddings</c> plus <c>base_model.score.weight</c>).
/// </summary>
internal static class PeftFormat
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    /// <summary>Writes the weights and then the config, each atomically.</summary>
    public static void Write(string folder, IReadOnlyDictionary<string, Tensor> tensors, JsonObject config)
    {
        SafeTensors.WriteFile(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteText(Path.Combine(folder, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>The config of a prompt-learning SEQ_CLS adapter (PROMPT_TUNING, PREFIX_TUNING).</summary>
    public static JsonObject PromptLearningConfig(string baseModelPath, string peftType, int virtualTokens, int tokenDim, int heads, int layers)
        => new()
        {
            ["peft_type"] = peftType,
            ["task_type"] = "SEQ_CLS",
            ["num_virtual_tokens"] = virtualTokens,
            ["token_dim"] = tokenDim,
            ["num_attention_heads"] = heads,
            ["num_layers"] = layers,
            ["num_transformer_submodules"] = 1,
            ["inference_mode"] = true,
            ["base_model_name_or_path"] = baseModelPath,
            ["revision"] = null,
            ["auto_mapping"] = null,
        };

    /// <summary>Writes a prompt-learning adapter: the prompt table and the head, as float32.</summary>
    public static void WritePromptLearning(PeftExport export, JsonObject config, Tensor prompt)
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["prompt_embeddings"] = prompt.detach().to(ScalarType.Float32).cpu().contiguous(),
            ["base_model.score.weight"] = export.Sequence.Score.weight!.detach().to(ScalarType.Float32).cpu().contiguous(),
        };
        Write(export.Folder, tensors, config);
    }

    /// <summary>The prompt table and the head of a prompt-learning adapter; any other tensor, or a wrong shape, is an error.</summary>
    public static (Tensor Prompt, Tensor Score) PromptLearningTensors(PeftAdapterFiles adapter, long[] promptShape)
    {
        var tensors = adapter.Tensors;
        var extra = tensors.Keys.Where(k => k != "prompt_embeddings" && StripPeftPrefix(k) != "score.weight").ToList();
        if (extra.Count > 0)
        {
            throw new InvalidDataException(
                $"'{adapter.WeightsPath}' has tensor(s) a prompt-learning SEQ_CLS adapter does not hold: {string.Join(", ", extra)} (expected prompt_embeddings and base_model.score.weight).");
        }

        var prompt = tensors.TryGetValue("prompt_embeddings", out var p)
            ? p
            : throw new InvalidDataException($"'{adapter.WeightsPath}' has no 'prompt_embeddings' tensor.");
        if (!prompt.shape.SequenceEqual(promptShape))
        {
            throw new InvalidDataException(
                $"Tensor 'prompt_embeddings' in '{adapter.WeightsPath}' has shape [{string.Join(", ", prompt.shape)}] but the model and adapter_config imply [{string.Join(", ", promptShape)}].");
        }

        var scoreKey = tensors.Keys.FirstOrDefault(k => StripPeftPrefix(k) == "score.weight")
            ?? throw new InvalidDataException($"'{adapter.WeightsPath}' has no score.weight: a SEQ_CLS adapter saves its trained head.");
        return (prompt, tensors[scoreKey]);
    }

    /// <summary>Copies a PEFT tensor into a parameter of the same shape.</summary>
    public static void CopyInto(Tensor parameter, Tensor value)
    {
        if (!value.shape.SequenceEqual(parameter.shape))
        {
            throw new InvalidDataException($"A PEFT tensor of shape [{string.Join(", ", value.shape)}] does not fit the parameter of shape [{string.Join(", ", parameter.shape)}].");
        }

        using var noGrad = no_grad();
        parameter.copy_(value.to(parameter.dtype));
    }

    /// <summary>Runs <paramref name="fill"/> on a freshly built classifier; if it throws, the classifier (and the decoder it owns) is disposed.</summary>
    public static LlamaSequenceClassifier Filled(LlamaSequenceClassifier classifier, Action<LlamaSequenceClassifier> fill)
    {
        try
        {
            fill(classifier);
            classifier.eval();
            return classifier;
        }
        catch
        {
            classifier.Dispose();
            throw;
        }
    }

    public static void RequireLastPooling(Pooling pooling)
    {
        if (pooling != Pooling.Last)
        {
            throw new NotSupportedException($"PEFT export needs Pooling.Last (PEFT's sequence classifier pools the last token) but the model pools with {pooling}.");
        }
    }

    public static void RequireSingleSubmodule(PeftAdapterFiles adapter)
    {
        if (adapter.Config["num_transformer_submodules"]?.GetValue<int>() is { } count && count != 1)
        {
            throw new InvalidDataException($"'{adapter.ConfigPath}' has num_transformer_submodules {count}; a decoder-only SEQ_CLS adapter has 1.");
        }
    }

    public static int RequireInt(PeftAdapterFiles adapter, string key)
        => adapter.Config[key]?.GetValue<int>() is { } value && value > 0
            ? value
            : throw new InvalidDataException($"'{adapter.ConfigPath}' needs a positive integer '{key}'.");

    public static string StripPeftPrefix(string key)
    {
        foreach (var prefix in new[] { "base_model.model.", "base_model." })
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                return key[prefix.Length..];
            }
        }

        return key;
    }

    public static void Unsupported(PeftAdapterFiles adapter, string key, Func<JsonNode, bool> isSet)
    {
        if (adapter.Config[key] is { } value && isSet(value))
        {
            throw new NotSupportedException($"'{adapter.ConfigPath}' sets {key}, which this library does not support for import.");
        }
    }
}
