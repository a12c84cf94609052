using Orleans.Runtime;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// Cancels every trial of this silo when the silo stops, gracefully or not (a trial with checkpoints writes one first),
/// so a stopped silo's trial does not keep training in a process that stays up.
/// </summary>
internal sealed class SiloTrials : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();

    public CancellationToken Stopping => _stopping.Token;

    public void Participate(ISiloLifecycle lifecycle)
        => lifecycle.Subscribe(nameof(SiloTrials), ServiceLifecycleStage.Active, _ => Task.CompletedTask, _ =>
        {
            _stopping.Cancel();
            return Task.CompletedTask;
        });

    public void Dispose() => _stopping.Dispose();
}
