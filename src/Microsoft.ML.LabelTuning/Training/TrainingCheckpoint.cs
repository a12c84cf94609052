using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>
/// The engine's part of a checkpoint's state (<c>training_state</c>): the optimizer step, the schedule's re-warmup,
/// the best evaluation so far, the run's fingerprint, and a task-specific section (<see cref="Task"/>) with what the
/// task needs to continue (its data position, hashes of its inputs).
/// </summary>
internal sealed record TrainingCheckpointState
{
    /// <summary>Gets the layout version of the checkpoint.</summary>
    [JsonPropertyName("format_version")]
    public int FormatVersion { get; init; } = TrainingCheckpoint.FormatVersion;

    /// <summary>Gets what kind of task wrote it (<c>classifier</c>, <c>causal-lm</c>).</summary>
    [JsonPropertyName("task_kind")]
    public string TaskKind { get; init; } = string.Empty;

    /// <summary>Gets the optimizer steps taken by the run.</summary>
    [JsonPropertyName("step")]
    public long Step { get; init; }

    /// <summary>Gets AdamW's own step count (its bias correction): the steps since its moments were last reset.</summary>
    [JsonPropertyName("optimizer_steps")]
    public long OptimizerSteps { get; init; }

    /// <summary>Gets the hash of everything that changes the run's arithmetic; a resume with another is refused.</summary>
    [JsonPropertyName("fingerprint")]
    public string Fingerprint { get; init; } = string.Empty;

    /// <summary>Gets the wall time spent training and evaluating, all processes together.</summary>
    [JsonPropertyName("train_seconds")]
    public double TrainSeconds { get; init; }

    /// <summary>Gets the lowest evaluation value so far (validation loss or perplexity), or null.</summary>
    [JsonPropertyName("best_value")]
    public double? BestValue { get; init; }

    /// <summary>Gets the step of <see cref="BestValue"/>.</summary>
    [JsonPropertyName("best_step")]
    public long BestStep { get; init; }

    /// <summary>Gets the evaluations since the last improvement (early stopping).</summary>
    [JsonPropertyName("evaluations_without_improvement")]
    public int EvaluationsWithoutImprovement { get; init; }

    /// <summary>Gets the step at which the AdamW moments were last reset (a start from weights without moments), or null.</summary>
    [JsonPropertyName("moments_reset_at_step")]
    public long? MomentsResetAtStep { get; init; }

    /// <summary>Gets the steps of linear learning-rate re-warmup after <see cref="MomentsResetAtStep"/>.</summary>
    [JsonPropertyName("resume_warmup_steps")]
    public int ResumeWarmupSteps { get; init; }

    /// <summary>Gets how random draws are seeded: re-seeded from the run's seed and the step, so no generator state is kept.</summary>
    [JsonPropertyName("rng")]
    public string Rng { get; init; } = "manual_seed(seed, step) before every step";

    /// <summary>Gets the task's own state (data position, hashes of its inputs, what its extra tensors are).</summary>
    [JsonPropertyName("task")]
    public JsonObject? Task { get; init; }

    /// <summary>Gets when the checkpoint was written (UTC, ISO 8601).</summary>
    [JsonPropertyName("saved_at")]
    public string SavedAt { get; init; } = string.Empty;
}

/// <summary>
/// The one checkpoint format of fine-tuning and pretraining (version 2): a single <c>checkpoint.safetensors</c> holding
/// every trained parameter (<c>param.*</c>), AdamW's moments (<c>optim.*</c>) and the task's extra tensors (such as the
/// early-stopping weights, <c>best.*</c>), with the state as JSON in its <c>training_state</c> metadata. That one file
/// is the commit point: it is written to a temporary file and renamed, so a kill at any moment leaves the previous
/// checkpoint or the new one, tensors and state together. <c>checkpoint.json</c> is a readable copy written
/// afterwards; resume trusts the metadata.
/// </summary>
internal static class TrainingCheckpoint
{
    /// <summary>The layout version written and read.</summary>
    public const int FormatVersion = 2;
    public const string TensorsFileName = "checkpoint.safetensors";
    public const string StateFileName = "checkpoint.json";
    public const string StateMetadataKey = "training_state";
    public const string ParameterPrefix = "param.";
    public const string OptimizerPrefix = "optim.";

    private static readonly JsonSerializerOptions _json = new() { WriteIndented = true };

    /// <summary>Writes <paramref name="tensors"/> (CPU copies, already prefixed) and the state, atomically.</summary>
    public static void Write(string folder, IReadOnlyDictionary<string, Tensor> tensors, TrainingCheckpointState state)
    {
        Directory.CreateDirectory(folder);
        var saved = state with { FormatVersion = FormatVersion, SavedAt = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture) };
        var json = JsonSerializer.Serialize(saved, _json);
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["step"] = saved.Step.ToString(CultureInfo.InvariantCulture),
            ["fingerprint"] = saved.Fingerprint,
            [StateMetadataKey] = json,
        };
        SafeTensors.WriteFile(Path.Combine(folder, TensorsFileName), tensors, metadata);
        AtomicFile.WriteText(Path.Combine(folder, StateFileName), json);
    }

    /// <summary>
    /// Reads the state committed in <c>checkpoint.safetensors</c> (not the readable copy), or null when the folder
    /// holds none. A checkpoint of another layout version is refused with what to do; it is never ignored.
    /// </summary>
    public static TrainingCheckpointState? ReadState(string folder)
    {
        var path = Path.Combine(folder, TensorsFileName);
        if (!File.Exists(path))
        {
            return null;
        }

        using var reader = SafeTensorsReader.Open(path);
        return ParseState(reader.Metadata, path);
    }

    /// <summary>Reads the state and every tensor of the checkpoint (in the caller's dispose scope), or null when there is none.</summary>
    public static (TrainingCheckpointState State, Dictionary<string, Tensor> Tensors)? Read(string folder)
    {
        var path = Path.Combine(folder, TensorsFileName);
        if (!File.Exists(path))
        {
            return null;
        }

        var (tensors, metadata) = SafeTensors.ReadFile(path);
        try
        {
            return (ParseState(metadata, path), tensors);
        }
        catch
        {
            foreach (var tensor in tensors.Values)
            {
                tensor.Dispose();
            }

            throw;
        }
    }

    /// <summary>Removes temporary files a kill during a save left behind (the folder belongs to the run).</summary>
    public static void DeleteTemporaryFiles(string folder)
    {
        if (Directory.Exists(folder))
        {
            AtomicFile.DeleteTemporaryFiles(folder, TensorsFileName, StateFileName);
        }
    }

    private static TrainingCheckpointState ParseState(IReadOnlyDictionary<string, string> metadata, string path)
    {
        if (!metadata.TryGetValue(StateMetadataKey, out var json))
        {
            throw new InvalidDataException(
                $"Checkpoint '{path}' has no '{StateMetadataKey}' metadata: it was written by an early version of the library that this one does not read. " +
                "Resume it with the version that wrote it, or move the folder away to start a new run.");
        }

        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The training state in the '{StateMetadataKey}' metadata of '{path}' is not valid JSON: {e.Message}", e);
        }

        var version = node?["format_version"]?.GetValue<int>();
        if (version != FormatVersion)
        {
            var named = version is null ? "no format version (an unversioned checkpoint of an earlier library)" : $"format version {version}";
            throw new InvalidDataException(
                $"Checkpoint '{path}' has {named} but this library reads version {FormatVersion}. Resume it with the version that wrote it, " +
                "or move the folder away to start a new run; it is not restarted silently.");
        }

        return node.Deserialize<TrainingCheckpointState>()
            ?? throw new InvalidDataException($"The training state in '{path}' is empty.");
    }
}
