using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// Trains one trial attempt in this process: checks the base model's and the data's hashes, loads the data from shared
/// storage, trains and measures exactly as the local sweep does, saves the model and the result to the trial's folder.
/// One trial trains at a time per process, whatever the number of silos in it: torch's random generator and thread pool
/// are process-wide, and a trial's result must not depend on what else runs.
/// </summary>
internal static class TrialExecutor
{
    private static readonly SemaphoreSlim _slot = new(1, 1);
    private static readonly ConcurrentDictionary<string, (SweepDescription Description, LabelTuningSearchSpace Space)> _sweeps = new(StringComparer.Ordinal);

    /// <summary>Gets or sets a test seam: called before each attempt's checks with the assignment and the silo; what it throws faults the attempt.</summary>
    internal static Action<TrialAssignment, string>? FaultInjection { get; set; }

    internal static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        WriteIndented = true,
    };

    /// <summary>The folder of one trial on shared storage: its checkpoint, its attempts' models and results.</summary>
    public static string TrialFolder(ClusterSweepSpec spec, int trialId)
        => Path.Combine(spec.SweepFolder, "trials", string.Create(CultureInfo.InvariantCulture, $"trial-{trialId:D4}"));

    /// <summary>Where an attempt writes its result (JSON).</summary>
    public static string ResultPath(ClusterSweepSpec spec, int trialId, int attempt)
        => Path.Combine(TrialFolder(spec, trialId), string.Create(CultureInfo.InvariantCulture, $"result.attempt-{attempt}.json"));

    /// <summary>Runs the attempt; throws when this silo cannot (a missing file, a hash mismatch), returns a failed record when training threw.</summary>
    public static TrialRecord Run(TrialAssignment assignment, string silo, LabelTuningSiloOptions device, Action<TrainingProgress> onTraining, CancellationToken cancellationToken)
    {
        _slot.Wait(cancellationToken);
        try
        {
            var clock = Stopwatch.StartNew();
            var spec = assignment.Spec;
            var (description, space) = _sweeps.GetOrAdd(spec.DescriptionJson, json =>
            {
                var d = SweepDescription.FromJson(json, $"sweep '{assignment.SweepId}'");
                return (d, d.BuildSpace());
            });
            FaultInjection?.Invoke(assignment, silo);
            Check("base model folder", description.ModelPath, ContentHash.OfModelFolder(description.ModelPath), spec.ModelSha256, silo);
            Check("training data", spec.TrainDataPath, ContentHash.OfFile(spec.TrainDataPath), spec.TrainDataSha256, silo);
            Check("validation data", spec.ValidationDataPath, ContentHash.OfFile(spec.ValidationDataPath), spec.ValidationDataSha256, silo);
            var ml = new MLContext(seed: description.Seed) { GpuDeviceId = device.GpuDeviceId, FallbackToCpu = device.FallbackToCpu };
            var train = ml.Data.LoadFromBinary(spec.TrainDataPath);
            var validation = ml.Data.LoadFromBinary(spec.ValidationDataPath);
            var folder = TrialFolder(spec, assignment.TrialId);
            Directory.CreateDirectory(folder);
            Action<LabelTuningOptions>? configure = spec.TrialCheckpoints
                ? o =>
                {
                    o.CheckpointFolder = Path.Combine(folder, "checkpoint");
                    o.CheckpointEverySteps = spec.CheckpointEverySteps;
                }
                : null;
            var outcome = LabelTuningExperiment.RunDescribedTrial(
                ml, description, space, train, validation, assignment.Proposal.ToProposal(), assignment.TrialId, cancellationToken, onTraining, configure);
            string? modelPath = null;
            try
            {
                if (outcome.Model is not null)
                {
                    modelPath = Path.Combine(folder, string.Create(CultureInfo.InvariantCulture, $"model.attempt-{assignment.Attempt}.zip"));
                    var temporary = $"{modelPath}.{Guid.NewGuid():N}.tmp";
                    ml.Model.Save(outcome.Model, outcome.InputSchema, temporary);
                    File.Move(temporary, modelPath, overwrite: true);
                }
            }
            finally
            {
                LabelTuningExperiment.DisposeTrialModel(outcome.Model);
            }

            var record = TrialRecord.From(outcome.Result, silo, assignment.Attempt, modelPath, clock.Elapsed.TotalSeconds);
            WriteAtomically(ResultPath(spec, assignment.TrialId, assignment.Attempt), JsonSerializer.Serialize(record, Json));
            return record;
        }
        finally
        {
            _slot.Release();
        }
    }

    /// <summary>Reads the result an attempt wrote before its silo died, or null.</summary>
    public static TrialRecord? TryReadResult(ClusterSweepSpec spec, int trialId, int attempt)
    {
        var path = ResultPath(spec, trialId, attempt);
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<TrialRecord>(File.ReadAllText(path), Json) : null;
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    internal static void WriteAtomically(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }

    private static void Check(string what, string path, string found, string expected, string silo)
    {
        if (!string.Equals(found, expected, StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidDataException(
                $"Silo {silo} refuses the trial: its {what} '{path}' has SHA-256 {found}, but the sweep was started with {expected}. " +
                "Every silo must read the same files (a shared filesystem, or identical copies at the same path).");
        }
    }
}
