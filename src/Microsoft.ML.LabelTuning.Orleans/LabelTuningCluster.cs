using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Hosting;
using Orleans.Runtime;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// Runs a <see cref="LabelTuningExperiment"/> on an Orleans cluster: the same experiment code, one more line.
/// </summary>
/// <example>
/// <code>
/// var result = await new LabelTuningExperiment(ml, settings)
///     .SetDataset(train, validation)
///     .SetMaxTrials(12)
///     .RunOnCluster(client, new ClusterSweepOptions { SharedFolder = "/mnt/shared/sweeps" })
///     .RunAsync();
/// </code>
/// </example>
public static class LabelTuningCluster
{
    /// <summary>The grain storage the sweep coordinator keeps its state in; every silo must register one by this name.</summary>
    public const string StorageName = "labeltuning";

    /// <summary>
    /// Makes <see cref="LabelTuningExperiment.RunAsync"/> run the sweep on the cluster <paramref name="client"/> is
    /// connected to: the sweep's coordinator grain proposes the trials with the same tuner and seed, the silos train them,
    /// and the result (leaderboard, best trial, best model) is what the local sweep returns for the same seed and trials.
    /// The training and validation data are written once to <see cref="ClusterSweepOptions.SharedFolder"/>.
    /// </summary>
    /// <param name="experiment">The experiment.</param>
    /// <param name="client">A connected Orleans cluster client.</param>
    /// <param name="options">Where the shared files go, and the fault-handling settings.</param>
    /// <returns>The experiment.</returns>
    public static LabelTuningExperiment RunOnCluster(this LabelTuningExperiment experiment, IClusterClient client, ClusterSweepOptions options)
    {
        ArgumentNullException.ThrowIfNull(experiment);
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return experiment.SetBackend(new ClusterSweepBackend(client, options));
    }

    /// <summary>Runs the sweep on the cluster with the default options and <paramref name="sharedFolder"/>.</summary>
    /// <param name="experiment">The experiment.</param>
    /// <param name="client">A connected Orleans cluster client.</param>
    /// <param name="sharedFolder">A folder every silo and this process can read and write at the same path.</param>
    /// <returns>The experiment.</returns>
    public static LabelTuningExperiment RunOnCluster(this LabelTuningExperiment experiment, IClusterClient client, string sharedFolder)
        => experiment.RunOnCluster(client, new ClusterSweepOptions { SharedFolder = sharedFolder });

    /// <summary>Makes the experiment run in this process again (the default).</summary>
    /// <param name="experiment">The experiment.</param>
    /// <returns>The experiment.</returns>
    public static LabelTuningExperiment RunLocally(this LabelTuningExperiment experiment)
    {
        ArgumentNullException.ThrowIfNull(experiment);
        return experiment.SetBackend(null);
    }

    /// <summary>
    /// Adds what a silo needs to train trials: the placement that puts each trial on the silo the coordinator chose, and
    /// the silo's trial runner. Register a grain storage named <see cref="StorageName"/> too (ADO.NET in production, memory
    /// for development).
    /// </summary>
    /// <param name="builder">The silo builder.</param>
    /// <param name="configure">Sets this silo's training device; default the CPU.</param>
    /// <returns>The builder.</returns>
    public static ISiloBuilder AddLabelTuning(this ISiloBuilder builder, Action<LabelTuningSiloOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var options = new LabelTuningSiloOptions();
        configure?.Invoke(options);
        options.Validate();
        builder.Services.AddSingleton(options);
        builder.AddPlacementDirector<TargetSiloPlacement, TargetSiloPlacementDirector>();
        builder.Services.AddSingleton<SiloTrials>();
        builder.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(services => services.GetRequiredService<SiloTrials>());
        return builder;
    }
}

/// <summary>How one silo trains its trials.</summary>
public sealed class LabelTuningSiloOptions
{
    /// <summary>
    /// Gets or sets the CUDA device this silo trains on (as <see cref="MLContext.GpuDeviceId"/>), or null for the CPU.
    /// Non-negative. Default null. A machine with several GPUs runs one silo per GPU.
    /// </summary>
    public int? GpuDeviceId { get; set; }

    /// <summary>Gets or sets a value indicating whether a silo whose GPU is not available trains on the CPU instead of failing its trials. Default false.</summary>
    public bool FallbackToCpu { get; set; }

    internal void Validate()
    {
        if (GpuDeviceId is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(GpuDeviceId), GpuDeviceId, $"GpuDeviceId must be non-negative but is {GpuDeviceId}.");
        }
    }
}

/// <summary>How a sweep runs on a cluster.</summary>
public sealed class ClusterSweepOptions
{
    /// <summary>
    /// Gets or sets a folder that this process and every silo read and write at the same path (a shared filesystem):
    /// the data files, and per sweep the trials' checkpoints, results and the winning model. Required.
    /// </summary>
    public string SharedFolder { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets the sweep's id (the coordinator grain's key). Null derives it from the sweep's settings, data and base
    /// model, so running the same experiment again resumes (or returns) the same sweep. Default null.
    /// </summary>
    public string? SweepId { get; set; }

    /// <summary>Gets or sets how often the coordinator polls running trials and this process polls the coordinator. 10 ms to 1 min. Default 1 s.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Gets or sets a value indicating whether trials write training checkpoints to shared storage, so a trial re-run on another silo resumes from the last one. Default true.</summary>
    public bool TrialCheckpoints { get; set; } = true;

    /// <summary>Gets or sets the optimizer steps between a trial's checkpoints. Positive. Default 200.</summary>
    public int CheckpointEverySteps { get; set; } = 200;

    /// <summary>Gets or sets how many silos may fail a trial (die under it, miss a file, hold another checkpoint) before it is recorded as failed. At least 1. Default 2.</summary>
    public int MaxSilosPerTrial { get; set; } = 2;

    /// <summary>Gets or sets how long a silo that membership still lists as active may leave a poll unanswered before its trial runs elsewhere. At least 1 s. Default 2 min.</summary>
    public TimeSpan UnresponsiveAfter { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Gets or sets how long this process keeps retrying when the coordinator does not answer (its silo died and it reactivates elsewhere). At least 1 s. Default 5 min.</summary>
    public TimeSpan CoordinatorTimeout { get; set; } = TimeSpan.FromMinutes(5);

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(SharedFolder))
        {
            throw new ArgumentException("ClusterSweepOptions.SharedFolder must name a folder every silo can read and write at the same path.", nameof(SharedFolder));
        }

        if (SweepId is not null && (SweepId.Length == 0 || SweepId.Contains('|', StringComparison.Ordinal)))
        {
            throw new ArgumentException($"ClusterSweepOptions.SweepId must be non-empty and without '|' but is '{SweepId}'.", nameof(SweepId));
        }

        if (PollInterval < TimeSpan.FromMilliseconds(10) || PollInterval > TimeSpan.FromMinutes(1))
        {
            throw new ArgumentOutOfRangeException(nameof(PollInterval), PollInterval, $"PollInterval must be between 10 ms and 1 min but is {PollInterval}.");
        }

        if (CheckpointEverySteps <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(CheckpointEverySteps), CheckpointEverySteps, $"CheckpointEverySteps must be positive but is {CheckpointEverySteps}.");
        }

        if (MaxSilosPerTrial < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxSilosPerTrial), MaxSilosPerTrial, $"MaxSilosPerTrial must be at least 1 but is {MaxSilosPerTrial}.");
        }

        if (UnresponsiveAfter < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(UnresponsiveAfter), UnresponsiveAfter, $"UnresponsiveAfter must be at least 1 s but is {UnresponsiveAfter}.");
        }

        if (CoordinatorTimeout < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(CoordinatorTimeout), CoordinatorTimeout, $"CoordinatorTimeout must be at least 1 s but is {CoordinatorTimeout}.");
        }
    }
}
