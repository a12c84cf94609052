using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// The trial attempts of this silo, by trial-grain key. An attempt belongs to the silo process, not to one grain
/// activation: when a silo elsewhere dies, the grain directory may activate a trial grain afresh on this same silo, and
/// that activation must still find the attempt training here. Every attempt is cancelled when the silo stops, gracefully
/// or not (a trial with checkpoints writes one first), so a stopped silo's trial does not keep training in a process that
/// stays up.
/// </summary>
internal sealed class SiloTrials(ILocalSiloDetails siloDetails, LabelTuningSiloOptions options, ILogger<SiloTrials> logger) : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, Attempt> _attempts = new(StringComparer.Ordinal);
    private readonly string _silo = siloDetails.SiloAddress.ToParsableString();

    public void Participate(ISiloLifecycle lifecycle)
        => lifecycle.Subscribe(nameof(SiloTrials), ServiceLifecycleStage.Active, _ => Task.CompletedTask, _ =>
        {
            _stopping.Cancel();
            return Task.CompletedTask;
        });

    /// <summary>Starts the attempt <paramref name="key"/> in the background, once; a second call only reports.</summary>
    public TrialAttemptReport Start(string key, TrialAssignment assignment)
    {
        var attempt = _attempts.GetOrAdd(key, _ => new Attempt(assignment, CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token)));
        if (attempt.Assignment.TrialId != assignment.TrialId || attempt.Assignment.Attempt != assignment.Attempt || attempt.Assignment.SweepId != assignment.SweepId)
        {
            throw new InvalidOperationException(
                $"Trial grain '{key}' already holds trial {attempt.Assignment.TrialId} attempt {attempt.Assignment.Attempt}; it was asked for trial {assignment.TrialId} attempt {assignment.Attempt}.");
        }

        if (Interlocked.Exchange(ref attempt.Launched, 1) == 0)
        {
            logger.LogInformation("silo {Silo}: trial {Trial} attempt {Attempt} of sweep {Sweep} starts: {Proposal}", _silo, assignment.TrialId, assignment.Attempt, assignment.SweepId, assignment.Proposal);
            _ = Task.Factory.StartNew(() => Execute(attempt), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        return attempt.Report(_silo);
    }

    /// <summary>How attempt <paramref name="key"/> stands; <see cref="TrialAttemptState.Idle"/> when this silo never ran it.</summary>
    public TrialAttemptReport Report(string key)
        => _attempts.TryGetValue(key, out var attempt) ? attempt.Report(_silo) : new TrialAttemptReport { State = TrialAttemptState.Idle, Silo = _silo };

    public void Cancel(string key)
    {
        if (_attempts.TryGetValue(key, out var attempt))
        {
            attempt.Cancel.Cancel();
        }
    }

    public void Dispose()
    {
        _stopping.Dispose();
        foreach (var attempt in _attempts.Values)
        {
            attempt.Cancel.Dispose();
        }
    }

    private void Execute(Attempt attempt)
    {
        var assignment = attempt.Assignment;
        var token = attempt.Cancel.Token;
        try
        {
            var record = TrialExecutor.Run(assignment, _silo, options, progress =>
            {
                lock (attempt)
                {
                    attempt.Step = progress.Step;
                    attempt.TotalSteps = progress.TotalSteps;
                }
            }, token);
            lock (attempt)
            {
                attempt.Result = record;
                attempt.State = TrialAttemptState.Finished;
            }

            logger.LogInformation("silo {Silo}: trial {Trial} attempt {Attempt} finished: {Result}", _silo, assignment.TrialId, assignment.Attempt, record);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            lock (attempt)
            {
                attempt.State = TrialAttemptState.Cancelled;
            }
        }
        catch (Exception e)
        {
            lock (attempt)
            {
                attempt.Error = $"{e.GetType().Name}: {e.Message}";
                attempt.State = TrialAttemptState.Faulted;
            }

            logger.LogWarning(e, "silo {Silo}: trial {Trial} attempt {Attempt} could not run here", _silo, assignment.TrialId, assignment.Attempt);
        }
    }

    private sealed class Attempt(TrialAssignment assignment, CancellationTokenSource cancel)
    {
        public int Launched;

        public TrialAssignment Assignment { get; } = assignment;

        public CancellationTokenSource Cancel { get; } = cancel;

        public TrialAttemptState State { get; set; } = TrialAttemptState.Running;

        public TrialRecord? Result { get; set; }

        public string? Error { get; set; }

        public long Step { get; set; }

        public long TotalSteps { get; set; }

        public TrialAttemptReport Report(string silo)
        {
            lock (this)
            {
                return new TrialAttemptReport
                {
                    State = State,
                    TrialId = Assignment.TrialId,
                    Attempt = Assignment.Attempt,
                    Silo = silo,
                    Result = Result,
                    Error = Error,
                    Step = Step,
                    TotalSteps = TotalSteps,
                };
            }
        }
    }
}
