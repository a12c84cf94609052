namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// Trains one attempt of one trial on one silo. Its key is <c>{silo}|{sweep}|{trial}|{attempt}</c> and
/// <see cref="TargetSiloPlacement"/> activates it on that silo; training runs in the background, so
/// <see cref="StartAsync"/> returns at once and the coordinator polls <see cref="GetStatusAsync"/>.
/// </summary>
public interface ITrialGrain : IGrainWithStringKey
{
    /// <summary>Starts the attempt (a second call with the same assignment only reports).</summary>
    /// <param name="assignment">The trial, its attempt and the sweep's shared settings.</param>
    /// <returns>The attempt's state.</returns>
    Task<TrialAttemptReport> StartAsync(TrialAssignment assignment);

    /// <summary>Reports the attempt's state; <see cref="TrialAttemptState.Idle"/> from a fresh activation (its silo died).</summary>
    /// <returns>The attempt's state.</returns>
    Task<TrialAttemptReport> GetStatusAsync();

    /// <summary>Cancels the attempt at its next training step (with checkpoints on, one is written first).</summary>
    /// <returns>A task.</returns>
    Task CancelAsync();
}

/// <summary>
/// Runs one sweep: proposes trials with the sweep's tuner, assigns each to a free silo, re-runs a trial whose silo
/// died, and keeps the proposals, the attempts and the leaderboard in grain persistence (storage
/// <see cref="LabelTuningCluster.StorageName"/>), so a coordinator activated afresh resumes the same sweep.
/// </summary>
public interface ISweepCoordinatorGrain : IGrainWithStringKey
{
    /// <summary>Starts the sweep, or resumes it when this key already holds the same sweep.</summary>
    /// <param name="spec">The sweep.</param>
    /// <returns>The sweep's state.</returns>
    Task<SweepSnapshot> StartAsync(ClusterSweepSpec spec);

    /// <summary>Reports the sweep's state.</summary>
    /// <returns>The sweep's state.</returns>
    Task<SweepSnapshot> GetSnapshotAsync();

    /// <summary>Stops the sweep: running trials are cancelled and not recorded, as in the local sweep.</summary>
    /// <returns>A task.</returns>
    Task CancelAsync();
}
