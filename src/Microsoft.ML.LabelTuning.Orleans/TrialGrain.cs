namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// Trains one attempt of one trial on the silo its key names; see <see cref="ITrialGrain"/>. The attempt itself lives in
/// the silo's <see cref="SiloTrials"/>, so a fresh activation of this grain on the same silo still reports it.
/// </summary>
[TargetSiloPlacement]
internal sealed class TrialGrain(SiloTrials siloTrials) : Grain, ITrialGrain
{
    public Task<TrialAttemptReport> StartAsync(TrialAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);

        // A trial trains for minutes to hours; the coordinator's polls keep the grain active, this keeps it so between them.
        DelayDeactivation(TimeSpan.FromDays(7));
        return Task.FromResult(siloTrials.Start(this.GetPrimaryKeyString(), assignment));
    }

    public Task<TrialAttemptReport> GetStatusAsync() => Task.FromResult(siloTrials.Report(this.GetPrimaryKeyString()));

    public Task CancelAsync()
    {
        siloTrials.Cancel(this.GetPrimaryKeyString());
        return Task.CompletedTask;
    }
}
