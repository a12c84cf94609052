using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>Trains one attempt of one trial on the silo its key names; see <see cref="ITrialGrain"/>.</summary>
[TargetSiloPlacement]
internal sealed class TrialGrain(ILocalSiloDetails siloDetails, SiloTrials siloTrials, ILogger<TrialGrain> logger) : Grain, ITrialGrain
{
    private readonly object _gate = new();
    private readonly string _silo = siloDetails.SiloAddress.ToParsableString();
    private TrialAssignment? _assignment;
    private CancellationTokenSource? _cancel;
    private TrialAttemptState _state = TrialAttemptState.Idle;
    private TrialRecord? _result;
    private string? _error;
    private long _step;
    private long _totalSteps;

    public Task<TrialAttemptReport> StartAsync(TrialAssignment assignment)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        lock (_gate)
        {
            if (_assignment is not null)
            {
                if (_assignment.TrialId != assignment.TrialId || _assignment.Attempt != assignment.Attempt || _assignment.SweepId != assignment.SweepId)
                {
                    throw new InvalidOperationException(
                        $"Trial grain '{this.GetPrimaryKeyString()}' already holds trial {_assignment.TrialId} attempt {_assignment.Attempt}; it was asked for trial {assignment.TrialId} attempt {assignment.Attempt}.");
                }

                return Task.FromResult(Report());
            }

            _assignment = assignment;
            _cancel = CancellationTokenSource.CreateLinkedTokenSource(siloTrials.Stopping);
            _state = TrialAttemptState.Running;
        }

        // A trial trains for minutes to hours; the coordinator's polls keep the grain active, this keeps it so between them.
        DelayDeactivation(TimeSpan.FromDays(7));
        logger.LogInformation("silo {Silo}: trial {Trial} attempt {Attempt} of sweep {Sweep} starts: {Proposal}", _silo, assignment.TrialId, assignment.Attempt, assignment.SweepId, assignment.Proposal);
        var token = _cancel.Token;
        _ = Task.Factory.StartNew(() => Execute(assignment, token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        return Task.FromResult(Report());
    }

    public Task<TrialAttemptReport> GetStatusAsync()
    {
        lock (_gate)
        {
            return Task.FromResult(Report());
        }
    }

    public Task CancelAsync()
    {
        lock (_gate)
        {
            _cancel?.Cancel();
        }

        return Task.CompletedTask;
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // A silo shutting down cancels its trial (a checkpoint is written first); the coordinator re-runs it elsewhere.
        lock (_gate)
        {
            _cancel?.Cancel();
        }

        return base.OnDeactivateAsync(reason, cancellationToken);
    }

    private void Execute(TrialAssignment assignment, CancellationToken token)
    {
        try
        {
            var record = TrialExecutor.Run(assignment, _silo, progress =>
            {
                lock (_gate)
                {
                    _step = progress.Step;
                    _totalSteps = progress.TotalSteps;
                }
            }, token);
            lock (_gate)
            {
                _result = record;
                _state = TrialAttemptState.Finished;
            }

            logger.LogInformation("silo {Silo}: trial {Trial} attempt {Attempt} finished: {Result}", _silo, assignment.TrialId, assignment.Attempt, record);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            lock (_gate)
            {
                _state = TrialAttemptState.Cancelled;
            }
        }
        catch (Exception e)
        {
            lock (_gate)
            {
                _error = $"{e.GetType().Name}: {e.Message}";
                _state = TrialAttemptState.Faulted;
            }

            logger.LogWarning(e, "silo {Silo}: trial {Trial} attempt {Attempt} could not run here", _silo, assignment.TrialId, assignment.Attempt);
        }
    }

    private TrialAttemptReport Report() => new()
    {
        State = _state,
        TrialId = _assignment?.TrialId ?? 0,
        Attempt = _assignment?.Attempt ?? 0,
        Silo = _silo,
        Result = _result,
        Error = _error,
        Step = _step,
        TotalSteps = _totalSteps,
    };
}
