using System.Globalization;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Sweep;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// What every trial of one cluster sweep shares: the sweep as data (settings, search space, tuner), where the data
/// and the base model are, the SHA-256 of each (checked by every silo before it trains), and the sweep's folder on
/// shared storage. <see cref="ClusterSweepOptions"/> fills in every property.
/// </summary>
/// <remarks>
/// Orleans' generated serializers leave out a field that holds its type's default value, so the types of this file
/// initialise nothing to another value: the receiving side would see the initializer instead of a false or a 0 sent.
/// </remarks>
[GenerateSerializer]
[Immutable]
public sealed class ClusterSweepSpec
{
    /// <summary>Gets the sweep's description as JSON (settings, search space, metric, budgets, tuner).</summary>
    [Id(0)]
    public string DescriptionJson { get; init; } = string.Empty;

    /// <summary>Gets the training rows: an ML.NET binary data file every silo can read.</summary>
    [Id(1)]
    public string TrainDataPath { get; init; } = string.Empty;

    /// <summary>Gets the SHA-256 (hex) of <see cref="TrainDataPath"/>'s bytes.</summary>
    [Id(2)]
    public string TrainDataSha256 { get; init; } = string.Empty;

    /// <summary>Gets the validation rows: an ML.NET binary data file every silo can read.</summary>
    [Id(3)]
    public string ValidationDataPath { get; init; } = string.Empty;

    /// <summary>Gets the SHA-256 (hex) of <see cref="ValidationDataPath"/>'s bytes.</summary>
    [Id(4)]
    public string ValidationDataSha256 { get; init; } = string.Empty;

    /// <summary>Gets the SHA-256 (hex) of the base model folder's config, weight and tokenizer files.</summary>
    [Id(5)]
    public string ModelSha256 { get; init; } = string.Empty;

    /// <summary>Gets the sweep's folder on shared storage: trial checkpoints, results and the winning model.</summary>
    [Id(6)]
    public string SweepFolder { get; init; } = string.Empty;

    /// <summary>Gets a value indicating whether trials write training checkpoints, so a trial re-run elsewhere resumes from the last one.</summary>
    [Id(7)]
    public bool TrialCheckpoints { get; init; }

    /// <summary>Gets the optimizer steps between a trial's checkpoints.</summary>
    [Id(8)]
    public int CheckpointEverySteps { get; init; }

    /// <summary>Gets how often the coordinator polls its running trials.</summary>
    [Id(9)]
    public TimeSpan PollInterval { get; init; }

    /// <summary>Gets the silos a trial may fail on (a dead silo, a missing file, a hash mismatch) before it is recorded as failed. At least 1. Default 2.</summary>
    [Id(10)]
    public int MaxSilosPerTrial { get; init; }

    /// <summary>Gets how long a running trial's silo may not answer while membership still lists it as active, before the attempt counts as lost.</summary>
    [Id(11)]
    public TimeSpan UnresponsiveAfter { get; init; }
}

/// <summary>One attempt of one trial, sent to the trial grain of a chosen silo.</summary>
[GenerateSerializer]
[Immutable]
public sealed class TrialAssignment
{
    /// <summary>Gets the sweep's id (the coordinator's key).</summary>
    [Id(0)]
    public string SweepId { get; init; } = string.Empty;

    /// <summary>Gets the trial number, from 1, as the sequential sweep numbers it.</summary>
    [Id(1)]
    public int TrialId { get; init; }

    /// <summary>Gets the attempt, from 1 (a re-run after a silo failed is 2).</summary>
    [Id(2)]
    public int Attempt { get; init; }

    /// <summary>Gets the tuner's proposal.</summary>
    [Id(3)]
    public ProposalRecord Proposal { get; init; } = new();

    /// <summary>Gets what every trial of the sweep shares.</summary>
    [Id(4)]
    public ClusterSweepSpec Spec { get; init; } = new();
}

/// <summary>A tuner proposal: configuration, rung, method and settings (values encoded with their type, e.g. <c>d:0.01</c>).</summary>
[GenerateSerializer]
[Immutable]
public sealed class ProposalRecord
{
    /// <summary>Gets the trial number.</summary>
    [Id(0)]
    public int TrialId { get; init; }

    /// <summary>Gets the configuration number (successive halving trains one configuration at several rungs).</summary>
    [Id(1)]
    public int ConfigurationId { get; init; }

    /// <summary>Gets the successive-halving rung (0 for random search).</summary>
    [Id(2)]
    public int Rung { get; init; }

    /// <summary>Gets the tuning method's name.</summary>
    [Id(3)]
    public string Method { get; init; } = string.Empty;

    /// <summary>Gets the settings, each value prefixed with its type.</summary>
    [Id(4)]
    public Dictionary<string, string> Parameters { get; init; } = [];

    internal static ProposalRecord From(int trialId, TrialProposal proposal) => new()
    {
        TrialId = trialId,
        ConfigurationId = proposal.ConfigurationId,
        Rung = proposal.Rung,
        Method = proposal.Method.ToString(),
        Parameters = SweepValues.EncodeAll(proposal.Parameters).ToDictionary(),
    };

    internal TrialProposal ToProposal() => new(ConfigurationId, new TuningMethod(Method), SweepValues.DecodeAll(Parameters), Rung);

    /// <summary>True when both describe the same trial (the replay check after a coordinator restart).</summary>
    internal bool SameAs(ProposalRecord other)
        => TrialId == other.TrialId && ConfigurationId == other.ConfigurationId && Rung == other.Rung && Method == other.Method
            && Parameters.Count == other.Parameters.Count && Parameters.All(p => other.Parameters.TryGetValue(p.Key, out var v) && v == p.Value);

    /// <inheritdoc/>
    public override string ToString()
        => $"#{TrialId} {Method} rung {Rung} {string.Join(' ', Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value[2..]}"))}";
}

/// <summary>A finished trial as it travels and is persisted: the local sweep's <see cref="TrialResult"/>, plus where it ran.</summary>
[GenerateSerializer]
[Immutable]
public sealed class TrialRecord
{
    /// <summary>Gets the trial number.</summary>
    [Id(0)]
    public int Id { get; init; }

    /// <summary>Gets the configuration number.</summary>
    [Id(1)]
    public int ConfigurationId { get; init; }

    /// <summary>Gets the rung.</summary>
    [Id(2)]
    public int Rung { get; init; }

    /// <summary>Gets the tuning method's name.</summary>
    [Id(3)]
    public string Method { get; init; } = string.Empty;

    /// <summary>Gets the readable method name.</summary>
    [Id(4)]
    public string MethodName { get; init; } = string.Empty;

    /// <summary>Gets the settings, each value prefixed with its type.</summary>
    [Id(5)]
    public Dictionary<string, string> Parameters { get; init; } = [];

    /// <summary>Gets "Completed" or "Failed".</summary>
    [Id(6)]
    public string Status { get; init; } = string.Empty;

    /// <summary>Gets the sweep's metric (NaN when failed; every constructor sets it).</summary>
    [Id(7)]
    public double Metric { get; init; }

    /// <summary>Gets every metric by name.</summary>
    [Id(8)]
    public Dictionary<string, double> Metrics { get; init; } = [];

    /// <summary>Gets the fitting time in ticks.</summary>
    [Id(9)]
    public long TrainingTicks { get; init; }

    /// <summary>Gets the trainable parameter count.</summary>
    [Id(10)]
    public long TrainableParameters { get; init; }

    /// <summary>Gets the silo process's peak working set during the trial.</summary>
    [Id(11)]
    public long PeakMemoryBytes { get; init; }

    /// <summary>Gets the rise of the working set during the trial.</summary>
    [Id(12)]
    public long MemoryIncreaseBytes { get; init; }

    /// <summary>Gets the error of a failed trial.</summary>
    [Id(13)]
    public string? Error { get; init; }

    /// <summary>Gets the silo that produced this result.</summary>
    [Id(14)]
    public string Silo { get; init; } = string.Empty;

    /// <summary>Gets the attempt that produced this result.</summary>
    [Id(15)]
    public int Attempt { get; init; }

    /// <summary>Gets the saved model (a zip on shared storage), or null.</summary>
    [Id(16)]
    public string? ModelPath { get; init; }

    /// <summary>Gets the wall-clock seconds the silo spent on the trial, from assignment to result (hash checks, data loading, training, evaluation, saving).</summary>
    [Id(17)]
    public double SiloSeconds { get; init; }

    internal static TrialRecord From(TrialResult t, string silo, int attempt, string? modelPath, double siloSeconds) => new()
    {
        Id = t.Id,
        ConfigurationId = t.ConfigurationId,
        Rung = t.Rung,
        Method = t.Method.ToString(),
        MethodName = t.MethodName,
        Parameters = SweepValues.EncodeAll(t.Parameters).ToDictionary(),
        Status = t.Status.ToString(),
        Metric = t.Metric,
        Metrics = t.Metrics.ToDictionary(m => m.Key.ToString(), m => m.Value),
        TrainingTicks = t.TrainingTime.Ticks,
        TrainableParameters = t.TrainableParameters,
        PeakMemoryBytes = t.PeakMemoryBytes,
        MemoryIncreaseBytes = t.MemoryIncreaseBytes,
        Error = t.Error,
        Silo = silo,
        Attempt = attempt,
        ModelPath = modelPath,
        SiloSeconds = siloSeconds,
    };

    /// <summary>A failed record for a trial that no silo could finish.</summary>
    internal static TrialRecord Failed(ProposalRecord proposal, string error, int attempt) => new()
    {
        Id = proposal.TrialId,
        ConfigurationId = proposal.ConfigurationId,
        Rung = proposal.Rung,
        Method = proposal.Method,
        MethodName = LabelTuningExperiment.MethodName(new TuningMethod(proposal.Method), null),
        Parameters = proposal.Parameters,
        Status = nameof(TrialStatus.Failed),
        Metric = double.NaN,
        Error = error,
        Attempt = attempt,
    };

    internal TrialResult ToResult() => new()
    {
        Id = Id,
        ConfigurationId = ConfigurationId,
        Rung = Rung,
        Method = new TuningMethod(Method),
        MethodName = MethodName,
        Parameters = SweepValues.DecodeAll(Parameters),
        Status = Enum.Parse<TrialStatus>(Status),
        Metric = Metric,
        Metrics = Metrics.ToDictionary(m => Enum.Parse<LabelTuningMetric>(m.Key), m => m.Value),
        TrainingTime = TimeSpan.FromTicks(TrainingTicks),
        TrainableParameters = TrainableParameters,
        PeakMemoryBytes = PeakMemoryBytes,
        MemoryIncreaseBytes = MemoryIncreaseBytes,
        Error = Error,
    };

    /// <inheritdoc/>
    public override string ToString()
        => Status == nameof(TrialStatus.Completed)
            ? string.Create(CultureInfo.InvariantCulture, $"#{Id} {MethodName} on {Silo} (attempt {Attempt}): {Metric:F4}")
            : $"#{Id} {MethodName} failed: {Error}";
}

/// <summary>Where a trial grain's attempt stands.</summary>
public enum TrialAttemptState
{
    /// <summary>This activation holds no attempt: never started here, or its silo died and the grain was activated afresh.</summary>
    Idle,

    /// <summary>Waiting for the silo's trial slot, checking hashes, or training.</summary>
    Running,

    /// <summary>Trained and measured (a trial whose training threw is finished too, with a failed result, as in the local sweep).</summary>
    Finished,

    /// <summary>The silo could not run the trial (a missing file, a hash mismatch, a crash outside training); another silo should try.</summary>
    Faulted,

    /// <summary>Cancelled on request.</summary>
    Cancelled,
}

/// <summary>A trial grain's answer: its state, the result when finished, the error when faulted, and its training progress.</summary>
[GenerateSerializer]
[Immutable]
public sealed class TrialAttemptReport
{
    /// <summary>Gets the state.</summary>
    [Id(0)]
    public TrialAttemptState State { get; init; }

    /// <summary>Gets the trial number (0 when idle).</summary>
    [Id(1)]
    public int TrialId { get; init; }

    /// <summary>Gets the attempt (0 when idle).</summary>
    [Id(2)]
    public int Attempt { get; init; }

    /// <summary>Gets the silo the grain runs on.</summary>
    [Id(3)]
    public string Silo { get; init; } = string.Empty;

    /// <summary>Gets the result, when finished.</summary>
    [Id(4)]
    public TrialRecord? Result { get; init; }

    /// <summary>Gets the error, when faulted.</summary>
    [Id(5)]
    public string? Error { get; init; }

    /// <summary>Gets the optimizer steps done so far.</summary>
    [Id(6)]
    public long Step { get; init; }

    /// <summary>Gets the optimizer steps of the whole run (0 before training starts).</summary>
    [Id(7)]
    public long TotalSteps { get; init; }
}

/// <summary>An attempt that did not produce a result: where, and why.</summary>
[GenerateSerializer]
[Immutable]
public sealed class FailedAttempt
{
    /// <summary>Gets the trial number.</summary>
    [Id(0)]
    public int TrialId { get; init; }

    /// <summary>Gets the attempt.</summary>
    [Id(1)]
    public int Attempt { get; init; }

    /// <summary>Gets the silo.</summary>
    [Id(2)]
    public string Silo { get; init; } = string.Empty;

    /// <summary>Gets why the attempt ended without a result.</summary>
    [Id(3)]
    public string Error { get; init; } = string.Empty;

    /// <summary>
    /// Gets a value indicating whether the assignment never reached the silo (for example while the cluster is still
    /// declaring another silo dead); such an attempt does not count as the silo failing the trial.
    /// </summary>
    [Id(4)]
    public bool NeverStarted { get; init; }
}

/// <summary>A trial being trained: which attempt, on which silo, since when, and how far.</summary>
[GenerateSerializer]
public sealed class RunningTrial
{
    /// <summary>Gets or sets the trial number.</summary>
    [Id(0)]
    public int TrialId { get; set; }

    /// <summary>Gets or sets the attempt.</summary>
    [Id(1)]
    public int Attempt { get; set; }

    /// <summary>Gets or sets the silo.</summary>
    [Id(2)]
    public string Silo { get; set; } = string.Empty;

    /// <summary>Gets or sets the trial grain's key.</summary>
    [Id(3)]
    public string GrainKey { get; set; } = string.Empty;

    /// <summary>Gets or sets when the attempt was assigned.</summary>
    [Id(4)]
    public DateTime StartedUtc { get; set; }

    /// <summary>Gets or sets when the silo last answered.</summary>
    [Id(5)]
    public DateTime LastAnswerUtc { get; set; }

    /// <summary>Gets or sets the optimizer steps done.</summary>
    [Id(6)]
    public long Step { get; set; }

    /// <summary>Gets or sets the optimizer steps of the whole run.</summary>
    [Id(7)]
    public long TotalSteps { get; set; }
}

/// <summary>The sweep as the coordinator reports it: the leaderboard so far, what runs where, and how it ended.</summary>
[GenerateSerializer]
[Immutable]
public sealed class SweepSnapshot
{
    /// <summary>Gets the sweep's id.</summary>
    [Id(0)]
    public string SweepId { get; init; } = string.Empty;

    /// <summary>Gets a value indicating whether the sweep has ended.</summary>
    [Id(1)]
    public bool Finished { get; init; }

    /// <summary>Gets why the sweep stopped (a <see cref="SweepStopReason"/> name), once finished.</summary>
    [Id(2)]
    public string? StopReason { get; init; }

    /// <summary>Gets every finished trial, in trial order.</summary>
    [Id(3)]
    public List<TrialRecord> Results { get; init; } = [];

    /// <summary>Gets the trials being trained.</summary>
    [Id(4)]
    public List<RunningTrial> Running { get; init; } = [];

    /// <summary>Gets the attempts that produced no result.</summary>
    [Id(5)]
    public List<FailedAttempt> FailedAttempts { get; init; } = [];

    /// <summary>Gets the best trial's number, once one completed.</summary>
    [Id(6)]
    public int? BestTrialId { get; init; }

    /// <summary>Gets the winning model the coordinator kept (a zip on shared storage), once finished.</summary>
    [Id(7)]
    public string? BestModelPath { get; init; }

    /// <summary>Gets the proposals made so far (the tuner's rungs and promotions), in trial order.</summary>
    [Id(8)]
    public List<ProposalRecord> Proposals { get; init; } = [];

    /// <summary>Gets the coordinator's log of notable events (dispatches, lost silos, re-runs, restarts).</summary>
    [Id(9)]
    public List<string> Events { get; init; } = [];

    /// <summary>Gets when the sweep started.</summary>
    [Id(10)]
    public DateTime StartedUtc { get; init; }

    /// <summary>Gets when the sweep finished.</summary>
    [Id(11)]
    public DateTime? FinishedUtc { get; init; }

    /// <summary>Gets when each attempt was assigned and when its result reached the coordinator (scheduling overhead = that span minus the silo's own time).</summary>
    [Id(13)]
    public List<TrialTiming> Timings { get; init; } = [];

    /// <summary>Gets the error that stopped the coordinator itself (for example a sweep description it cannot read), or null.</summary>
    [Id(12)]
    public string? Error { get; init; }
}

/// <summary>When an attempt was assigned and when the coordinator recorded its result.</summary>
[GenerateSerializer]
public sealed class TrialTiming
{
    /// <summary>Gets or sets the trial number.</summary>
    [Id(0)]
    public int TrialId { get; set; }

    /// <summary>Gets or sets the attempt.</summary>
    [Id(1)]
    public int Attempt { get; set; }

    /// <summary>Gets or sets the silo.</summary>
    [Id(2)]
    public string Silo { get; set; } = string.Empty;

    /// <summary>Gets or sets when the coordinator assigned the attempt.</summary>
    [Id(3)]
    public DateTime AssignedUtc { get; set; }

    /// <summary>Gets or sets when the coordinator recorded the attempt's result (null while running or when it produced none).</summary>
    [Id(4)]
    public DateTime? RecordedUtc { get; set; }
}
