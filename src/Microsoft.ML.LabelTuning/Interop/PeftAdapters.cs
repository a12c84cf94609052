using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Interop;

/// <summary>
/// Moves adapters between this library and Hugging Face PEFT, in PEFT's own layout: <c>adapter_config.json</c> and
/// <c>adapter_model.safetensors</c> with PEFT's key names (task type SEQ_CLS; the trained head is saved as
/// <c>score.weight</c> and replaces the base model's). LORA, PROMPT_TUNING and PREFIX_TUNING are supported both ways.
/// </summary>
public static class PeftAdapters
{
    private const string ConfigFile = "adapter_config.json";
    private const string WeightsFile = "adapter_model.safetensors";

    /// <summary>
    /// Imports a PEFT SEQ_CLS adapter onto a base model folder and returns a multiclass transformer that scores
    /// <paramref name="textColumnName"/>. The tokenizer is read from <paramref name="baseModelPath"/>.
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="adapterPath">The folder PEFT's save_pretrained wrote.</param>
    /// <param name="baseModelPath">The base model folder (config.json, safetensors, tokenizer).</param>
    /// <param name="classNames">Names of the classes in head order; default "0", "1", ….</param>
    /// <param name="textColumnName">The text column to score.</param>
    /// <param name="maxSequenceLength">Tokens per input.</param>
    public static LabelTuningMulticlassTransformer Import(
        MLContext mlContext,
        string adapterPath,
        string baseModelPath,
        IReadOnlyList<string>? classNames = null,
        string textColumnName = "Text",
        int maxSequenceLength = 512)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        IHostEnvironment env = mlContext;
        var internalEnv = env as IHostEnvironmentInternal;
        var device = DeviceSelection.Select(internalEnv?.GpuDeviceId, internalEnv?.FallbackToCpu ?? false);
        var tokenizer = LlamaTextTokenizer.FromModelFolder(baseModelPath);
        var (classifier, method, settings) = LoadClassifier(adapterPath, baseModelPath, device);
        if (classNames is not null && classNames.Count != classifier.ClassCount)
        {
            throw new ArgumentException($"classNames has {classNames.Count} names but the adapter's head scores {classifier.ClassCount} classes.", nameof(classNames));
        }

        var names = classNames?.ToArray() ?? Enumerable.Range(0, classifier.ClassCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var description = new ClassifierDescription(method, settings, names, textColumnName, null, maxSequenceLength, Truncation.Head, 8,
            TokenLevel: false, Path.GetFullPath(baseModelPath), BaseModelReference.Fingerprint(baseModelPath), BaseModelEmbedded: false, [],
            "float32", DefaultColumnNames.Score, DefaultColumnNames.PredictedLabel, ClassNamesAreKeyValues: classNames is not null);
        var keyValues = classNames is null ? (Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>>?)null
            : new Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>>(names.Length, names.Select(n => n.AsMemory()).ToArray());
        var runtime = new ClassifierRuntime(classifier, new TextEncoder(tokenizer, maxSequenceLength, Truncation.Head), device, description) { KeyValues = keyValues };
        return new LabelTuningMulticlassTransformer(env, runtime);
    }

    /// <summary>Exports a trained model's adapter and head in PEFT's layout, so Python's PeftModel.from_pretrained loads it.</summary>
    /// <param name="transformer">A trained label-tuning transformer.</param>
    /// <param name="folder">The output folder (created; files are written atomically).</param>
    public static void ExportPeftAdapter(this LabelTuningTransformerBase transformer, string folder)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        var runtime = transformer.Runtime;
        var description = runtime.Description;
        Directory.CreateDirectory(folder);
        switch (description.Method)
        {
            case TuningMethod.LabelSupervised:
                ExportLora(runtime, folder);
                break;
            case TuningMethod.PromptTuning:
                ExportPromptTuning(runtime, folder);
                break;
            case TuningMethod.PrefixTuning:
                ExportPrefixTuning(runtime, folder);
                break;
            default:
                throw new NotSupportedException($"PEFT export of {description.Method} models is not available; PEFT has no equivalent adapter type.");
        }
    }

    /// <summary>Reads a PEFT adapter and builds the classifier it describes on the base model (no tokenizer needed).</summary>
    internal static (LlamaSequenceClassifier Classifier, TuningMethod Method, JsonElement Settings) LoadClassifier(string adapterPath, string baseModelPath, Device device)
    {
        var configPath = Path.Combine(adapterPath, ConfigFile);
        var weightsPath = Path.Combine(adapterPath, WeightsFile);
        if (!File.Exists(configPath))
        {
            throw new FileNotFoundException($"'{adapterPath}' has no {ConfigFile}; it is not a PEFT adapter folder.", configPath);
        }

        if (!File.Exists(weightsPath))
        {
            var pickled = Path.Combine(adapterPath, "adapter_model.bin");
            throw File.Exists(pickled)
                ? new InvalidDataException($"'{pickled}' is a pickle file, which can execute code when loaded and is refused. Re-save the adapter with safe_serialization=True.")
                : new FileNotFoundException($"'{adapterPath}' has no {WeightsFile}.", weightsPath);
        }

        JsonNode config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(configPath), documentOptions: new JsonDocumentOptions { MaxDepth = 64 })
                ?? throw new InvalidDataException($"{configPath} is empty.");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{configPath}' is not valid JSON: {ex.Message}", ex);
        }

        var peftType = config["peft_type"]?.GetValue<string>() ?? throw new InvalidDataException($"'{configPath}' has no peft_type.");
        var taskType = config["task_type"]?.GetValue<string>();
        if (taskType is not null && taskType != "SEQ_CLS")
        {
            throw new InvalidDataException($"'{configPath}' has task_type {taskType}; only SEQ_CLS adapters (sequence classification) can be imported.");
        }

        if (peftType is not ("LORA" or "PROMPT_TUNING" or "PREFIX_TUNING"))
        {
            throw new NotSupportedException($"PEFT type {peftType} in '{configPath}' is not supported for import (LORA, PROMPT_TUNING and PREFIX_TUNING are).");
        }

        var (tensors, _) = SafeTensors.ReadFile(weightsPath);
        try
        {
            var model = ClassifierFactory.LoadDecoder(baseModelPath, device, ScalarType.Float32);
            try
            {
                return peftType switch
                {
                    "LORA" => ImportLora(model, config, configPath, tensors, weightsPath),
                    "PROMPT_TUNING" => ImportPromptTuning(model, config, configPath, tensors, weightsPath),
                    _ => ImportPrefixTuning(model, config, configPath, tensors, weightsPath),
                };
            }
            catch
            {
                model.Dispose(); // disposing twice is harmless, so an import that disposed its classifier is fine too
                throw;
            }
        }
        finally
        {
            foreach (var tensor in tensors.Values)
            {
                tensor.Dispose(); // copied into the parameters, or refused
            }
        }
    }

    private static (LlamaSequenceClassifier, TuningMethod, JsonElement) ImportLora(
        LlamaModel model, JsonNode config, string configPath, Dictionary<string, Tensor> tensors, string weightsPath)
    {
        Unsupported(config, configPath, "use_dora", v => v.GetValue<bool>());
        Unsupported(config, configPath, "fan_in_fan_out", v => v.GetValue<bool>());
        Unsupported(config, configPath, "layers_to_transform", v => v is not null);
        Unsupported(config, configPath, "layer_replication", v => v is not null);
        if (config["bias"]?.GetValue<string>() is { } bias && bias != "none")
        {
            throw new NotSupportedException($"'{configPath}' has bias '{bias}'; only bias 'none' LoRA adapters are supported.");
        }

        var rank = config["r"]?.GetValue<int>() ?? 8;
        var alpha = config["lora_alpha"]?.GetValue<double>() ?? 8;
        var rsLora = config["use_rslora"]?.GetValue<bool>() ?? false;
        var targets = config["target_modules"] switch
        {
            JsonArray array => LoraTargetNames.FromNames(array.Select(n => n!.GetValue<string>()), configPath),
            JsonValue value when value.GetValue<string>() == "all-linear" => LoraTargets.AllLinear,
            JsonValue value => LoraTargetNames.FromNames(LoraTargetNames.ToNames(LoraTargets.AllLinear).Where(n => System.Text.RegularExpressions.Regex.IsMatch(n, value.GetValue<string>())), configPath),
            _ => throw new InvalidDataException($"'{configPath}' has no target_modules."),
        };
        if (config["rank_pattern"] is JsonObject { Count: > 0 } || config["alpha_pattern"] is JsonObject { Count: > 0 })
        {
            throw new NotSupportedException($"'{configPath}' uses rank_pattern/alpha_pattern (per-layer ranks), which is not supported.");
        }

        var scoreKey = tensors.Keys.FirstOrDefault(k => k.EndsWith("score.weight", StringComparison.Ordinal))
            ?? throw new InvalidDataException($"'{weightsPath}' has no score.weight: a SEQ_CLS adapter saves its trained head.");
        var classCount = (int)tensors[scoreKey].shape[0];
        var settings = new LoraSettings(rank, alpha, 0, LoraTargetNames.ToNames(targets).ToArray(), Pooling.Last, Unmasked: false, rsLora);
        var element = JsonSerializer.SerializeToElement(settings, SettingsJson.Options);
        var classifier = (LlamaSequenceClassifier)new LabelSupervisedFactory().Build(model, classCount, element, tokenLevel: false);

        // PEFT keys: base_model.model.<HF key>, with the adapter name stripped; e.g.
        // base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight and base_model.model.score.weight.
        var ours = classifier.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter);
        var seen = new HashSet<string>();
        using (no_grad())
        {
            foreach (var (key, value) in tensors)
            {
                var name = StripPeftPrefix(key);
                if (!ours.TryGetValue(name, out var parameter))
                {
                    throw new InvalidDataException($"Tensor '{key}' in '{weightsPath}' does not match any LoRA or head parameter of this model (looked for '{name}').");
                }

                if (!value.shape.SequenceEqual(parameter.shape))
                {
                    throw new InvalidDataException(
                        $"Tensor '{key}' in '{weightsPath}' has shape [{string.Join(", ", value.shape)}] but the model and adapter_config imply [{string.Join(", ", parameter.shape)}].");
                }

                parameter.copy_(value.to(parameter.dtype));
                seen.Add(name);
            }
        }

        var missing = ours.Keys.Where(k => !seen.Contains(k)).ToList();
        if (missing.Count > 0)
        {
            throw new InvalidDataException($"'{weightsPath}' lacks {missing.Count} tensor(s) the adapter_config implies, e.g. '{missing[0]}'.");
        }

        classifier.eval();
        return (classifier, TuningMethod.LabelSupervised, element);
    }

    private static void ExportLora(ClassifierRuntime runtime, string folder)
    {
        var settings = runtime.Description.Settings.Deserialize<LoraSettings>(SettingsJson.Options)!;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "SEQ_CLS",
            ["r"] = settings.Rank,
            ["lora_alpha"] = settings.Alpha,
            ["lora_dropout"] = settings.Dropout,
            ["target_modules"] = new JsonArray(settings.TargetModules.Select(t => (JsonNode)t!).ToArray()),
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["use_rslora"] = settings.UseRsLora,
            ["use_dora"] = false,
            ["modules_to_save"] = null,
            ["init_lora_weights"] = true,
            ["inference_mode"] = true,
            ["base_model_name_or_path"] = runtime.Description.BaseModelPath,
            ["revision"] = null,
        };
        using var scope = NewDisposeScope();
        var tensors = runtime.Classifier.TrainableParameters().ToDictionary(p => "base_model.model." + p.Name, p => p.Parameter.detach().cpu().contiguous());
        SafeTensors.WriteFile(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteText(Path.Combine(folder, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>
    /// PROMPT_TUNING: <c>prompt_embeddings</c> [n, hidden] is the soft prompt in input-embedding space, prepended to the
    /// token embeddings at positions 0..n-1 (the text at n..n+T-1), with the mask extended by ones; the head is
    /// <c>base_model.score.weight</c>. PEFT pools at the last position of every row; we pool at the last real token,
    /// which is the same on unpadded rows and right on padded ones (PEFT issue #764).
    /// </summary>
    private static (LlamaSequenceClassifier, TuningMethod, JsonElement) ImportPromptTuning(
        LlamaModel model, JsonNode config, string configPath, Dictionary<string, Tensor> tensors, string weightsPath)
    {
        RequireSingleSubmodule(config, configPath);
        var n = RequireInt(config, "num_virtual_tokens", configPath);
        var tokenDim = config["token_dim"]?.GetValue<int>() ?? model.Config.HiddenSize;
        if (tokenDim != model.Config.HiddenSize)
        {
            throw new InvalidDataException($"'{configPath}' has token_dim {tokenDim} but the base model's hidden size is {model.Config.HiddenSize}.");
        }

        var (prompt, score) = PromptLearningTensors(tensors, weightsPath, [n, model.Config.HiddenSize]);
        var settings = new PromptTuningSettings(n, PromptTuningInit.Random, null, 0, 8, 0, 1, Pooling.Last);
        var element = JsonSerializer.SerializeToElement(settings, SettingsJson.Options);
        var classifier = new PromptTuningFactory().Build(model, (int)score.shape[0], element, tokenLevel: false);
        var adapter = (PromptTuningAdapter)classifier.Adapter;
        CopyInto(adapter.PromptEmbeddings, prompt);
        CopyInto(classifier.Score.weight!, score);
        classifier.eval();
        return (classifier, TuningMethod.PromptTuning, element);
    }

    /// <summary>
    /// PREFIX_TUNING: <c>prompt_embeddings</c> [n, layers·2·token_dim] viewed as [n, layers·2, heads, token_dim / heads],
    /// layer l reading 2l as keys and 2l+1 as values, with heads = num_key_value_heads (GQA). Prefixes made with the
    /// projection MLP arrive folded (PEFT saves the MLP's output), so prefix_projection needs nothing more.
    /// </summary>
    private static (LlamaSequenceClassifier, TuningMethod, JsonElement) ImportPrefixTuning(
        LlamaModel model, JsonNode config, string configPath, Dictionary<string, Tensor> tensors, string weightsPath)
    {
        RequireSingleSubmodule(config, configPath);
        var n = RequireInt(config, "num_virtual_tokens", configPath);
        var layers = RequireInt(config, "num_layers", configPath);
        var tokenDim = RequireInt(config, "token_dim", configPath);
        var heads = RequireInt(config, "num_attention_heads", configPath);
        var c = model.Config;
        if (layers != c.NumHiddenLayers)
        {
            throw new InvalidDataException($"'{configPath}' has num_layers {layers} but the base model has {c.NumHiddenLayers} layers.");
        }

        if (heads != c.KeyValueHeadCount || tokenDim != c.KeyValueHeadCount * c.HeadDimension)
        {
            throw new InvalidDataException(
                $"'{configPath}' has num_attention_heads {heads} and token_dim {tokenDim} but the base model's keys and values have " +
                $"{c.KeyValueHeadCount} heads of {c.HeadDimension} (token_dim {c.KeyValueHeadCount * c.HeadDimension}); prefixes must be sized by " +
                "num_key_value_heads × head_dim, as PEFT ≥ 0.12 derives for grouped-query attention.");
        }

        var (prefix, score) = PromptLearningTensors(tensors, weightsPath, [n, layers * 2L * tokenDim]);
        var settings = new PrefixTuningSettings(n, 0, Pooling.Last);
        var element = JsonSerializer.SerializeToElement(settings, SettingsJson.Options);
        var classifier = new PrefixTuningFactory().Build(model, (int)score.shape[0], element, tokenLevel: false);
        var adapter = (PrefixTuningAdapter)classifier.Adapter;
        CopyInto(adapter.TrainableParameters.Single().Parameter, prefix);
        CopyInto(classifier.Score.weight!, score);
        classifier.eval();
        return (classifier, TuningMethod.PrefixTuning, element);
    }

    private static (Tensor Prompt, Tensor Score) PromptLearningTensors(Dictionary<string, Tensor> tensors, string weightsPath, long[] promptShape)
    {
        var extra = tensors.Keys.Where(k => k != "prompt_embeddings" && StripPeftPrefix(k) != "score.weight").ToList();
        if (extra.Count > 0)
        {
            throw new InvalidDataException(
                $"'{weightsPath}' has tensor(s) a prompt-learning SEQ_CLS adapter does not hold: {string.Join(", ", extra)} (expected prompt_embeddings and base_model.score.weight).");
        }

        var prompt = tensors.TryGetValue("prompt_embeddings", out var p)
            ? p
            : throw new InvalidDataException($"'{weightsPath}' has no 'prompt_embeddings' tensor.");
        if (!prompt.shape.SequenceEqual(promptShape))
        {
            throw new InvalidDataException(
                $"Tensor 'prompt_embeddings' in '{weightsPath}' has shape [{string.Join(", ", prompt.shape)}] but the model and adapter_config imply [{string.Join(", ", promptShape)}].");
        }

        var scoreKey = tensors.Keys.FirstOrDefault(k => StripPeftPrefix(k) == "score.weight")
            ?? throw new InvalidDataException($"'{weightsPath}' has no score.weight: a SEQ_CLS adapter saves its trained head.");
        return (prompt, tensors[scoreKey]);
    }

    private static void CopyInto(Tensor parameter, Tensor value)
    {
        if (!value.shape.SequenceEqual(parameter.shape))
        {
            throw new InvalidDataException($"A PEFT tensor of shape [{string.Join(", ", value.shape)}] does not fit the parameter of shape [{string.Join(", ", parameter.shape)}].");
        }

        using var noGrad = no_grad();
        parameter.copy_(value.to(parameter.dtype));
    }

    private static void ExportPromptTuning(ClassifierRuntime runtime, string folder)
    {
        var adapter = (PromptTuningAdapter)runtime.Sequence.Adapter;
        var settings = adapter.Settings;
        if (settings.DecomposedRank > 0)
        {
            throw new NotSupportedException(
                $"PEFT export of DePT/EPT models (DecomposedRank {settings.DecomposedRank}) is not available; PEFT has no adapter type for a low-rank update of the input embeddings.");
        }

        RequireLastPooling(settings.Pooling);
        var c = runtime.Sequence.Model.Config;
        var config = PromptLearningConfig(runtime, "PROMPT_TUNING", settings.VirtualTokenCount, c.HiddenSize, c.NumAttentionHeads, c.NumHiddenLayers);
        config["prompt_tuning_init"] = "RANDOM"; // the weights are loaded; PEFT skips init in inference mode anyway
        config["prompt_tuning_init_text"] = null;
        config["tokenizer_name_or_path"] = null;
        config["tokenizer_kwargs"] = null;
        WritePromptLearning(runtime, folder, config, adapter.PromptEmbeddings);
    }

    private static void ExportPrefixTuning(ClassifierRuntime runtime, string folder)
    {
        var adapter = (PrefixTuningAdapter)runtime.Sequence.Adapter;
        var settings = runtime.Description.Settings.Deserialize<PrefixTuningSettings>(SettingsJson.Options)!;
        RequireLastPooling(settings.Pooling);
        var c = runtime.Sequence.Model.Config;
        var tokenDim = c.KeyValueHeadCount * c.HeadDimension;
        var config = PromptLearningConfig(runtime, "PREFIX_TUNING", adapter.VirtualTokenCount, tokenDim, c.KeyValueHeadCount, c.NumHiddenLayers);
        config["encoder_hidden_size"] = tokenDim;
        config["prefix_projection"] = false; // saved folded, as PEFT saves a projected prefix
        using var noGrad = no_grad();
        WritePromptLearning(runtime, folder, config, adapter.Table());
    }

    private static JsonObject PromptLearningConfig(ClassifierRuntime runtime, string peftType, int virtualTokens, int tokenDim, int heads, int layers)
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
            ["base_model_name_or_path"] = runtime.Description.BaseModelPath,
            ["revision"] = null,
            ["auto_mapping"] = null,
        };

    private static void WritePromptLearning(ClassifierRuntime runtime, string folder, JsonObject config, Tensor prompt)
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["prompt_embeddings"] = prompt.detach().to(ScalarType.Float32).cpu().contiguous(),
            ["base_model.score.weight"] = runtime.Sequence.Score.weight!.detach().to(ScalarType.Float32).cpu().contiguous(),
        };
        SafeTensors.WriteFile(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteText(Path.Combine(folder, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void RequireLastPooling(Pooling pooling)
    {
        if (pooling != Pooling.Last)
        {
            throw new NotSupportedException($"PEFT export needs Pooling.Last (PEFT's sequence classifier pools the last token) but the model pools with {pooling}.");
        }
    }

    private static void RequireSingleSubmodule(JsonNode config, string configPath)
    {
        if (config["num_transformer_submodules"]?.GetValue<int>() is { } count && count != 1)
        {
            throw new InvalidDataException($"'{configPath}' has num_transformer_submodules {count}; a decoder-only SEQ_CLS adapter has 1.");
        }
    }

    private static int RequireInt(JsonNode config, string key, string configPath)
        => config[key]?.GetValue<int>() is { } value && value > 0
            ? value
            : throw new InvalidDataException($"'{configPath}' needs a positive integer '{key}'.");

    private static string StripPeftPrefix(string key)
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

    private static void Unsupported(JsonNode config, string path, string key, Func<JsonNode, bool> isSet)
    {
        if (config[key] is { } value && isSet(value))
        {
            throw new NotSupportedException($"'{path}' sets {key}, which this library does not support for import.");
        }
    }
}
