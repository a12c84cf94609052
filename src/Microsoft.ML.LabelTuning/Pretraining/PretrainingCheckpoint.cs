using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>
/// The JSON half of a format-1 pretraining checkpoint (<c>checkpoint.json</c> naming <c>ckpt-{step}.safetensors</c>),
/// read once to migrate it to the training engine's format (<see cref="PretrainingCheckpoint.MigrateFormat1"/>).
/// </summary>
internal sealed record Format1PretrainingState
{
    /// <summary>Gets the layout version of the checkpoint folder.</summary>
    [JsonPropertyName("format_version")]
    public int FormatVersion { get; init; }

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
/// What a pretraining run folder holds besides the engine's checkpoint (<see cref="TrainingCheckpoint"/>): the best
/// model so far in <c>best/</c> as a Hugging Face folder with <c>best.json</c>, and the metrics file; and the one-time
/// migration of a format-1 checkpoint (<c>checkpoint.json</c> + <c>ckpt-{step}.safetensors</c>, written before
/// pretraining ran on the training engine) to the engine's format.
/// </summary>
internal static class PretrainingCheckpoint
{
    public const string BestFolderName = "best";
    public const string BestInfoFileName = "best.json";
    public const string MetricsFileName = "metrics.jsonl";

    private const string Format1TensorPattern = "ckpt-*.safetensors";
    private static readonly JsonSerializerOptions _json = new() { WriteIndented = true };

    /// <summary>
    /// Converts a format-1 checkpoint in <paramref name="folder"/> to the engine's format once, with the same tensors
    /// (weights and AdamW moments keep their keys) and the same position, and says so through <paramref name="log"/>;
    /// the format-1 tensor file is deleted after the new checkpoint is committed. Does nothing when the folder holds no
    /// format-1 checkpoint. A <c>checkpoint.json</c> that is neither is refused, never ignored.
    /// </summary>
    public static void MigrateFormat1(string folder, Action<string> log)
    {
        var committed = Path.Combine(folder, TrainingCheckpoint.TensorsFileName);
        var legacyFiles = Directory.Exists(folder) ? Directory.GetFiles(folder, Format1TensorPattern) : [];
        if (File.Exists(committed))
        {
            // A migration killed after its commit: the format-1 tensors are superseded.
            foreach (var old in legacyFiles)
            {
                File.Delete(old);
            }

            return;
        }

        var statePath = Path.Combine(folder, TrainingCheckpoint.StateFileName);
        if (!File.Exists(statePath))
        {
            return;
        }

        Format1PretrainingState? state;
        try
        {
            state = JsonSerializer.Deserialize<Format1PretrainingState>(File.ReadAllText(statePath));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Pretraining checkpoint state '{statePath}' is not valid JSON: {e.Message}", e);
        }

        if (state is null || state.FormatVersion != 1 || string.IsNullOrEmpty(state.TensorsFile))
        {
            throw new InvalidDataException(
                $"'{statePath}' is not a format-1 pretraining checkpoint and '{TrainingCheckpoint.TensorsFileName}' is missing beside it; " +
                "the checkpoint is incomplete. Restore the tensor file, or move the folder away to start a new run; the run is not restarted silently.");
        }

        var tensorsPath = Path.Combine(folder, state.TensorsFile);
        if (!File.Exists(tensorsPath))
        {
            throw new InvalidDataException($"Pretraining checkpoint '{statePath}' names '{state.TensorsFile}' but that file does not exist.");
        }

        using (var scope = NewDisposeScope())
        {
            var (tensors, metadata) = SafeTensors.ReadFile(tensorsPath);
            var step = state.Step.ToString(CultureInfo.InvariantCulture);
            if (!metadata.TryGetValue("step", out var savedStep) || savedStep != step)
            {
                throw new InvalidDataException($"Checkpoint tensors '{tensorsPath}' are for step {savedStep ?? "?"} but '{statePath}' says step {step}; the checkpoint is inconsistent.");
            }

            TrainingCheckpoint.Write(folder, tensors, new TrainingCheckpointState
            {
                TaskKind = "causal-lm",
                Step = state.Step,
                OptimizerSteps = state.OptimizerSteps,
                Fingerprint = state.Fingerprint,
                TrainSeconds = state.TrainSeconds,
                BestValue = state.BestValidationPerplexity,
                BestStep = state.BestStep,
                MomentsResetAtStep = state.MomentsResetAtStep,
                ResumeWarmupSteps = state.ResumeWarmupSteps,
                Task = new PretrainingPosition(state.Tokens, state.Epoch, state.WindowInEpoch).ToJson(inputs: null),
            });
        }

        foreach (var old in legacyFiles)
        {
            File.Delete(old);
        }

        log($"Migrated the pretraining checkpoint in '{folder}' from format 1 ('{state.TensorsFile}' named by {TrainingCheckpoint.StateFileName}) " +
            $"to format {TrainingCheckpoint.FormatVersion} ('{TrainingCheckpoint.TensorsFileName}') at step {state.Step}, with its weights and AdamW moments; " +
            "the run continues from it.");
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
