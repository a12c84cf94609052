using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.Lora;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods.LabelSupervised;

/// <summary>LS-LLaMA as the registry knows it: options, trainers, search space, PEFT's LORA mapping.</summary>
internal static class LabelSupervisedMethod
{
    public static TuningMethodDescriptor Descriptor { get; } = new()
    {
        Method = TuningMethod.LabelSupervised,
        OptionsType = typeof(LabelSupervisedLlamaOptions),
        Factory = new LabelSupervisedFactory(),
        Multiclass = (env, options) => new LabelSupervisedLlamaTrainer(env, (LabelSupervisedLlamaOptions)options),
        Binary = (env, options) => new LabelSupervisedLlamaBinaryTrainer(env, (LabelSupervisedLlamaOptions)options),
        SearchSpace =
        [
            .. SearchDimension.Shared,
            new SearchRange(nameof(LabelSupervisedLlamaOptions.LoraRank), 2, 64, 12, LogBase: true, IsInteger: true),
            new SearchRange(nameof(LabelSupervisedLlamaOptions.LoraDropout), 0.0, 0.2, 0.1),
            new SearchChoice(nameof(LabelSupervisedLlamaOptions.LoraTargets), [LoraTargets.QueryValue, LoraTargets.AllLinear]),
        ],
        Peft = new LoraPeftMapping(),
        DisplayName = options => options is LabelSupervisedLlamaOptions { Unmasked: true } ? "LS-unLLaMA" : "LS-LLaMA",
    };
}

/// <summary>
/// PEFT's LORA with task type SEQ_CLS: keys <c>base_model.model.&lt;HF key&gt;</c> with the adapter name stripped, e.g.
/// <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c> and <c>base_model.model.score.weight</c>.
/// </summary>
internal sealed class LoraPeftMapping : IPeftMapping
{
    public string PeftType => "LORA";

    public (LlamaSequenceClassifier Classifier, JsonElement Settings) Import(LlamaModel model, PeftAdapterFiles adapter)
    {
        var (config, configPath, tensors, weightsPath) = (adapter.Config, adapter.ConfigPath, adapter.Tensors, adapter.WeightsPath);
        PeftFormat.Unsupported(adapter, "use_dora", v => v.GetValue<bool>());
        PeftFormat.Unsupported(adapter, "fan_in_fan_out", v => v.GetValue<bool>());
        PeftFormat.Unsupported(adapter, "layers_to_transform", v => v is not null);
        PeftFormat.Unsupported(adapter, "layer_replication", v => v is not null);
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
        return (PeftFormat.Filled(classifier, c => CopyAll(c, tensors, weightsPath)), element);
    }

    public void Export(PeftExport export)
    {
        var settings = export.Settings.Deserialize<LoraSettings>(SettingsJson.Options)!;
        var config = new JsonObject
        {
            ["peft_type"] = PeftType,
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
            ["base_model_name_or_path"] = export.BaseModelPath,
            ["revision"] = null,
        };
        using var scope = NewDisposeScope();
        var tensors = export.Classifier.TrainableParameters().ToDictionary(p => "base_model.model." + p.Name, p => p.Parameter.detach().cpu().contiguous());
        PeftFormat.Write(export.Folder, tensors, config);
    }

    private static void CopyAll(LlamaSequenceClassifier classifier, IReadOnlyDictionary<string, Tensor> tensors, string weightsPath)
    {
        var ours = classifier.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter);
        var seen = new HashSet<string>();
        using (no_grad())
        {
            foreach (var (key, value) in tensors)
            {
                var name = PeftFormat.StripPeftPrefix(key);
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
    }
}
