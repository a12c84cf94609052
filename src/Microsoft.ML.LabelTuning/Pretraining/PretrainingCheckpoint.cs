using System.Globalization;
using System.Text.Json.Serialization;
using System.Text.Json;
using AdamW = Microsoft.ML.LabelTuning.Training.AdamW;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>The JSON half of a pretraining checkpoint; it names the tensor file it belongs to.</summary>
internal sealed record PretrainingState
{
    /// <summary>Gets the layout version of the checkpoint folder.</summary>
    [JsonPropertyName("format_version")]
    public int FormatVersion { get; init; } = PretrainingCheckpoint.FormatVersion;

    /// <summary>Gets the optimizer steps taken.</summary>
    [JsonPropertyName("step")]
    public long Step { get; init; }

    /// <summary>Gets AdamW's own step count (equal to <see cref="Step"/>; used for the bias correction).</summary>
    [JsonPropertyName("optimizer_steps")]
    public long OptimizerSteps { get; init; }

    /// <summary>Gets the training tokens seen.</summary>
    [JsonPropertyName("tokens")]
    public long Tokens { get; init; }

    /// <summary>Gets the data position: the pass over the corpus the next window comes from.</summary>
    [JsonPropertyName("epoch")]
    public int Epoch { get; init; }

    /// <summary>Gets the data position: the index, inside <see cref="Epoch"/>'s permutation, of the next window.</summary>
    [JsonPropertyName("window_in_epoch")]
    public long WindowInEpoch { get; init; }

    /// <summary>Gets the wall time spent training so far (all processes).</summary>
    [JsonPropertyName("train_seconds")]
    public double TrainSeconds { get; init; }

    /// <summary>Gets the lowest validation perplexity so far.</summary>
    [JsonPropertyName("best_val_ppl")]
    public double? BestValidationPerplexity { get; init; }

    /// <summary>Gets the step of <see cref="BestValidationPerplexity"/>.</summary>
    [JsonPropertyName("best_step")]
    public long BestStep { get; init; }

    /// <summary>Gets the hash of every option that changes the arithmetic; a resume with another is refused.</summary>
    [JsonPropertyName("fingerprint")]
    public string Fingerprint { get; init; } = string.Empty;

    /// <summary>Gets the tensor file (in the same folder) holding the weights and optimizer moments.</summary>
    [JsonPropertyName("tensors_file")]
    public string TensorsFile { get; init; } = string.Empty;

    /// <summary>
    /// Gets the step at which the AdamW moments were last reset (a start from a portable state, which keeps none),
    /// or null. The learning rate re-warms linearly over <see cref="ResumeWarmupSteps"/> from this step.
    /// </summary>
    [JsonPropertyName("moments_reset_at_step")]
    public long? MomentsResetAtStep { get; init; }

    /// <summary>Gets the steps of re-warmup after <see cref="MomentsResetAtStep"/>.</summary>
    [JsonPropertyName("resume_warmup_steps")]
    public int ResumeWarmupSteps { get; init; }

    /// <summary>Gets how random draws are seeded: re-seeded from the run seed and the step before every step.</summary>
    [JsonPropertyName("rng")]
    public string Rng { get; init; } = "manual_seed(seed, step) before every step";

    /// <summary>Gets when the checkpoint was written (UTC, ISO 8601).</summary>
    [JsonPropertyName("saved_at")]
    public string SavedAt { get; init; } = string.Empty;
}

/// <summary>
/// Pretraining checkpoints: <c>checkpoint.json</c> names a versioned <c>ckpt-{step}.safetensors</c> holding every
/// parameter (<c>param.*</c>, float32) and AdamW's moments (<c>optim.*</c>). The tensor file is written first, then
/// the JSON (both atomically), then older tensor files are deleted, so a crash at any moment leaves a consistent pair.
/// The best model so far lives in <c>best/</c> as a Hugging Face folder with <c>best.json</c>.
/// </summary>
internal static class PretrainingCheckpoint
{
    public const int FormatVersion = 1;
    public const string StateFileName = "checkpoint.json";
    public const string BestFolderName = "best";
    public const string BestInfoFileName = "best.json";
    public const string MetricsFileName = "metrics.jsonl";

    private static readonly JsonSerializerOptions _json = new() { WriteIndented = true };

    public static void Write(string folder, IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW optimizer, PretrainingState state)
    {
        Directory.CreateDirectory(folder);
        var tensorsFile = $"ckpt-{state.Step.ToString("D9", CultureInfo.InvariantCulture)}.safetensors";
        using (var scope = NewDisposeScope())
        {
            var tensors = new Dictionary<string, Tensor>();
            foreach (var (name, parameter) in parameters)
            {
                tensors[$"param.{name}"] = parameter.detach().cpu();
            }

            foreach (var (name, value) in optimizer.StateDict())
            {
                tensors[$"optim.{name}"] = value.cpu();
            }

            var metadata = new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["step"] = state.Step.ToString(CultureInfo.InvariantCulture),
                ["fingerprint"] = state.Fingerprint,
            };
            SafeTensorsWriter.Write(Path.Combine(folder, tensorsFile), tensors, metadata);
        }

        var saved = state with { TensorsFile = tensorsFile, SavedAt = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture) };
        AtomicFile.WriteText(Path.Combine(folder, StateFileName), JsonSerializer.Serialize(saved, _json));
        foreach (var old in Directory.EnumerateFiles(folder, "ckpt-*.safetensors"))
        {
            if (!string.Equals(Path.GetFileName(old), tensorsFile, StringComparison.Ordinal))
            {
                File.Delete(old);
            }
        }
    }

    /// <summary>Reads <c>checkpoint.json</c>, or returns null when the folder holds no checkpoint.</summary>
    public static PretrainingState? ReadState(string folder)
    {
        var path = Path.Combine(folder, StateFileName);
        if (!File.Exists(path))
        {
            return null;
        }

        PretrainingState? state;
        try
        {
            state = JsonSerializer.Deserialize<PretrainingState>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Pretraining checkpoint state '{path}' is not valid JSON: {e.Message}", e);
        }

        if (state is null || state.FormatVersion != FormatVersion)
        {
            throw new InvalidDataException(
                $"Pretraining checkpoint state '{path}' has format version {state?.FormatVersion.ToString(CultureInfo.InvariantCulture) ?? "null"} but this library reads version {FormatVersion}.");
        }

        return state;
    }

    /// <summary>Loads the weights and optimizer moments a state names; every parameter must be present with its shape.</summary>
    public static void Load(string folder, PretrainingState state, IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW optimizer)
    {
        var path = Path.Combine(folder, state.TensorsFile);
        if (!File.Exists(path))
        {
            throw new InvalidDataException($"Pretraining checkpoint '{Path.Combine(folder, StateFileName)}' names '{state.TensorsFile}' but that file does not exist.");
        }

        using var scope = NewDisposeScope();
        var (tensors, metadata) = SafeTensors.ReadFile(path);
        var step = state.Step.ToString(CultureInfo.InvariantCulture);
        if (!metadata.TryGetValue("step", out var savedStep) || savedStep != step)
        {
            throw new InvalidDataException($"Checkpoint tensors '{path}' are for step {savedStep ?? "?"} but '{StateFileName}' says step {step}; the checkpoint is inconsistent.");
        }

        CopyParameters(tensors, "param.", parameters, path);

        var moments = tensors.Where(kv => kv.Key.StartsWith("optim.", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key["optim.".Length..], kv => kv.Value);
        if (state.OptimizerSteps > 0)
        {
            foreach (var (name, _) in parameters)
            {
                if (!moments.ContainsKey($"{name}.exp_avg") || !moments.ContainsKey($"{name}.exp_avg_sq"))
                {
                    throw new InvalidDataException($"Checkpoint tensors '{path}' lack the AdamW moments of '{name}'.");
                }
            }
        }

        optimizer.LoadStateDict(moments, state.OptimizerSteps);
    }

    /// <summary>
    /// Copies <c>{keyPrefix}{name}</c> from <paramref name="tensors"/> into each parameter (casting to its dtype), after
    /// checking that every one is present with the parameter's shape.
    /// </summary>
    public static void CopyParameters(
        IReadOnlyDictionary<string, Tensor> tensors, string keyPrefix, IReadOnlyList<(string Name, Parameter Parameter)> parameters, string path)
    {
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
        {
            var key = keyPrefix + name;
            if (!tensors.TryGetValue(key, out var value))
            {
                throw new InvalidDataException($"Checkpoint tensors '{path}' have no tensor '{key}'.");
            }

            if (!value.shape.SequenceEqual(parameter.shape))
            {
                throw new InvalidDataException(
                    $"Tensor '{key}' has shape [{string.Join(", ", value.shape)}] in '{path}' but the model holds [{string.Join(", ", parameter.shape)}].");
            }

            parameter.copy_(value);
        }
    }

    /// <summary>Writes the model to <c>best/</c> (float32 Hugging Face folder) and then <c>best.json</c>.</summary>
    public static void WriteBest(string folder, LlamaForCausalLM model, LlamaConfig config, BestModelInfo info)
    {
        var best = Path.Combine(folder, BestFolderName);
        Directory.CreateDirectory(best);
        using (var scope = NewDisposeScope())
        {
            var metadata = new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["step"] = info.Step.ToString(CultureInfo.InvariantCulture),
            };
            SafeTensorsWriter.Write(Path.Combine(best, HfModelFolder.SafeTensorsFileName), model.state_dict(), metadata);
        }

        AtomicFile.WriteText(Path.Combine(best, HfModelFolder.ConfigFileName),
            (config with { TorchDtype = "float32", Architectures = ["LlamaForCausalLM"] }).ToJson());
        AtomicFile.WriteText(Path.Combine(best, BestInfoFileName), JsonSerializer.Serialize(info, _json));
    }

    /// <summary>Reads <c>best/best.json</c>, or null when no best model was written yet.</summary>
    public static BestModelInfo? ReadBest(string folder)
    {
        var path = Path.Combine(folder, BestFolderName, BestInfoFileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<BestModelInfo>(File.ReadAllText(path))
                ?? throw new InvalidDataException($"'{path}' holds null instead of the best model's description.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON: {e.Message}", e);
        }
    }
}

/// <summary>What <c>best/best.json</c> records about the best model of a pretraining run.</summary>
public sealed record BestModelInfo
{
    /// <summary>Gets the optimizer step the weights are from.</summary>
    [JsonPropertyName("step")]
    public long Step { get; init; }

    /// <summary>Gets the training tokens seen at that step.</summary>
    [JsonPropertyName("tokens")]
    public long Tokens { get; init; }

    /// <summary>Gets the validation perplexity of the weights.</summary>
    [JsonPropertyName("val_ppl")]
    public double ValidationPerplexity { get; init; }

    /// <summary>Gets the validation tokens that perplexity was measured on.</summary>
    [JsonPropertyName("val_tokens")]
    public long ValidationTokens { get; init; }

    /// <summary>Gets the training wall time up to that step, in seconds.</summary>
    [JsonPropertyName("train_seconds")]
    public double TrainSeconds { get; init; }

    /// <summary>Gets the mean training loss of the last logged interval before that step.</summary>
    [JsonPropertyName("train_loss")]
    public double TrainLoss { get; init; }

    /// <summary>Gets the torch intra-op threads the run used.</summary>
    [JsonPropertyName("threads")]
    public int Threads { get; init; }

    /// <summary>Gets when the weights were written (UTC, ISO 8601).</summary>
    [JsonPropertyName("saved_at")]
    public string SavedAt { get; init; } = string.Empty;
}
