using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.ML.LabelTuning.Sweep;
using Orleans.Runtime;
using Orleans.Storage;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// What the coordinator persists: the sweep, every proposal the tuner made (its rungs and promotions), every finished
/// trial (the leaderboard), the attempts running and the ones that failed. The tuner itself is rebuilt from these on
/// activation: it is a pure function of its seed and the results it was told.
/// </summary>
[GenerateSerializer]
internal sealed class SweepState
{
    [Id(0)]
    public ClusterSweepSpec? Spec { get; set; }

    [Id(1)]
    public DateTime StartedUtc { get; set; }

    [Id(2)]
    public List<ProposalRecord> Proposals { get; set; } = [];

    [Id(3)]
    public List<TrialRecord> Results { get; set; } = [];

    [Id(4)]
    public List<RunningTrial> Running { get; set; } = [];

    [Id(5)]
    public List<FailedAttempt> FailedAttempts { get; set; } = [];

    /// <summary>Trials whose attempt failed, waiting for another silo.</summary>
    [Id(6)]
    public List<int> Retry { get; set; } = [];

    [Id(7)]
    public bool Finished { get; set; }

    [Id(8)]
    public string? StopReason { get; set; }

    [Id(9)]
    public bool CancelRequested { get; set; }

    [Id(10)]
    public int? BestTrialId { get; set; }

    [Id(11)]
    public string? BestModelPath { get; set; }

    [Id(12)]
    public List<string> Events { get; set; } = [];

    [Id(13)]
    public DateTime? FinishedUtc { get; set; }

    /// <summary>No more proposals: the trial budget, the search, the time budget or a cancellation ended the sweep.</summary>
    [Id(14)]
    public bool Stopping { get; set; }

    [Id(15)]
    public string? Error { get; set; }

    [Id(16)]
    public List<TrialTiming> Timings { get; set; } = [];
}

/// <summary>Runs one sweep across the cluster's silos; see <see cref="ISweepCoordinatorGrain"/>.</summary>
internal sealed class SweepCoordinatorGrain(
    [PersistentState("sweep", LabelTuningCluster.StorageName)] IPersistentState<SweepState> state,
    IClusterMembershipService membership,
    ILocalSiloDetails siloDetails,
    ILogger<SweepCoordinatorGrain> logger) : Grain, ISweepCoordinatorGrain
{
    private const int MaxEvents = 500;

    /// <summary>Assignments of one trial that may fail to reach a silo before the trial is given up (each tick retries one).</summary>
    private const int MaxUnstartedAttempts = 100;
    private SweepDescription? _description;
    private ISweepTuner? _tuner;
    private IGrainTimer? _timer;

    private SweepState S => state.State;

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        await base.OnActivateAsync(cancellationToken);
        if (S.Spec is not null && !S.Finished)
        {
            Event($"coordinator activated on silo {siloDetails.SiloAddress}: resuming with {S.Results.Count} finished and {S.Running.Count} running trial(s)");
            StartTimer();
        }
    }

    public async Task<SweepSnapshot> StartAsync(ClusterSweepSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (S.Spec is null)
        {
            S.Spec = spec;
            S.StartedUtc = DateTime.UtcNow;
            Event($"sweep {this.GetPrimaryKeyString()} starts on coordinator silo {siloDetails.SiloAddress}");
            try
            {
                await state.WriteStateAsync();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Nothing starts unless it is persisted; the storage's own exception may not travel to the client.
                S.Spec = null;
                S.Events.Clear();
                throw new InvalidOperationException(
                    $"The coordinator of sweep '{this.GetPrimaryKeyString()}' could not save the sweep to grain storage '{LabelTuningCluster.StorageName}': {e.GetType().Name}: {e.Message}");
            }

            StartTimer();
        }
        else if (Difference(S.Spec, spec) is { } difference)
        {
            throw new InvalidOperationException(
                $"Sweep '{this.GetPrimaryKeyString()}' already holds another sweep ({difference}); give this one another ClusterSweepOptions.SweepId.");
        }
        else if (!S.Finished)
        {
            StartTimer();
        }

        return Snapshot();
    }

    public Task<SweepSnapshot> GetSnapshotAsync()
    {
        if (S.Spec is not null && !S.Finished)
        {
            StartTimer();
        }

        return Task.FromResult(Snapshot());
    }

    public async Task CancelAsync()
    {
        if (S.Spec is not null && !S.Finished && !S.CancelRequested)
        {
            S.CancelRequested = true;
            Event("cancellation requested");
            await state.WriteStateAsync();
        }
    }

    private void StartTimer()
    {
        _timer ??= this.RegisterGrainTimer(TickAsync, new GrainTimerCreationOptions(TimeSpan.Zero, S.Spec!.PollInterval) { Interleave = false, KeepAlive = true });
    }

    private async Task TickAsync(CancellationToken cancellationToken)
    {
        if (S.Spec is null || S.Finished)
        {
            _timer?.Dispose();
            _timer = null;
            return;
        }

        try
        {
            EnsureTuner();
        }
        catch (Exception e) when (e is InvalidDataException or InvalidOperationException or ArgumentException)
        {
            S.Error = $"The coordinator cannot rebuild the sweep's tuner: {e.Message}";
            S.Finished = true;
            S.FinishedUtc = DateTime.UtcNow;
            Event(S.Error);
            await state.WriteStateAsync();
            return;
        }

        var changed = false;
        var active = ActiveSilos();
        changed |= await PollAsync(active);
        changed |= await StopIfDueAsync();
        changed |= await DispatchAsync(active);
        if (S.Stopping && S.Running.Count == 0 && S.Retry.Count == 0)
        {
            Finish();
            changed = true;
        }

        if (changed)
        {
            try
            {
                await state.WriteStateAsync();
            }
            catch (InconsistentStateException e)
            {
                // Another activation of this coordinator wrote first (possible for a moment while a dead silo's part of the
                // grain directory is rebuilt). This one stands down; the next call activates the coordinator from storage.
                // A trial both assigned is trained twice at worst, and recorded once.
                logger.LogWarning("sweep {Sweep}: another coordinator activation saved the sweep first; this one deactivates ({Error})", this.GetPrimaryKeyString(), e.Message);
                _timer?.Dispose();
                _timer = null;
                _tuner = null;
                DeactivateOnIdle();
            }
        }
    }

    /// <summary>Asks each running trial how it stands; records results, and retries attempts whose silo failed.</summary>
    private async Task<bool> PollAsync(Dictionary<string, SiloAddress> active)
    {
        var changed = false;
        foreach (var running in S.Running.ToList())
        {
            TrialAttemptReport report;
            try
            {
                report = await GrainFactory.GetGrain<ITrialGrain>(running.GrainKey).GetStatusAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                if (!active.ContainsKey(running.Silo))
                {
                    Lost(running, $"silo {running.Silo} left the cluster");
                    changed = true;
                }
                else if (DateTime.UtcNow - running.LastAnswerUtc > S.Spec!.UnresponsiveAfter)
                {
                    Lost(running, $"silo {running.Silo} did not answer for {S.Spec.UnresponsiveAfter.TotalSeconds:F0} s ({e.GetType().Name}: {e.Message})");
                    changed = true;
                }

                continue;
            }

            running.LastAnswerUtc = DateTime.UtcNow;
            switch (report.State)
            {
                case TrialAttemptState.Running:
                    running.Step = report.Step;
                    running.TotalSteps = report.TotalSteps;
                    break;
                case TrialAttemptState.Finished when report.Result is not null:
                    S.Running.Remove(running);
                    Record(report.Result);
                    changed = true;
                    break;
                case TrialAttemptState.Faulted:
                    AttemptFailed(running, report.Error ?? "the silo could not run the trial");
                    changed = true;
                    break;
                case TrialAttemptState.Cancelled:
                    AttemptFailed(running, $"the trial was cancelled on silo {running.Silo} (the silo is shutting down)");
                    changed = true;
                    break;
                default:
                    Lost(running, $"the trial's activation on silo {running.Silo} is gone (the silo died or restarted)");
                    changed = true;
                    break;
            }
        }

        return changed;
    }

    private async Task<bool> StopIfDueAsync()
    {
        if (S.Stopping)
        {
            return false;
        }

        string? reason = null;
        if (S.CancelRequested)
        {
            reason = nameof(SweepStopReason.Cancelled);
        }
        else if (_description!.TimeBudgetSeconds is { } seconds && DateTime.UtcNow - S.StartedUtc > TimeSpan.FromSeconds(seconds))
        {
            reason = nameof(SweepStopReason.TimeBudget);
        }

        if (reason is null)
        {
            return false;
        }

        // As in the local sweep, the trials running when the time runs out (or the caller cancels) are not recorded.
        S.Stopping = true;
        S.StopReason = reason;
        foreach (var running in S.Running)
        {
            try
            {
                await GrainFactory.GetGrain<ITrialGrain>(running.GrainKey).CancelAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.LogWarning("cancelling trial {Trial} on silo {Silo} failed: {Error}", running.TrialId, running.Silo, e.Message);
            }
        }

        Event($"{reason}: {S.Running.Count} running trial(s) cancelled and not recorded");
        S.Running.Clear();
        S.Retry.Clear();
        return true;
    }

    /// <summary>Gives each free silo a trial: re-runs first (never on a silo the trial failed on), then new proposals.</summary>
    private async Task<bool> DispatchAsync(Dictionary<string, SiloAddress> active)
    {
        var changed = false;
        var busy = S.Running.Select(r => r.Silo).ToHashSet(StringComparer.Ordinal);
        var free = active.Keys.Where(k => !busy.Contains(k)).Order(StringComparer.Ordinal).ToList();
        foreach (var trialId in S.Retry.ToList())
        {
            var failedOn = FailedSilos(trialId);
            if (active.Count > 0 && active.Keys.All(failedOn.Contains))
            {
                GiveUp(trialId, $"every silo in the cluster failed it ({failedOn.Count})");
                changed = true;
                continue;
            }

            // Another silo than the last unreachable one where there is a choice.
            var unreachable = S.FailedAttempts.LastOrDefault(f => f.TrialId == trialId && f.NeverStarted)?.Silo;
            var silo = free.Where(k => !failedOn.Contains(k)).OrderBy(k => k == unreachable ? 1 : 0).FirstOrDefault();
            if (silo is null)
            {
                continue;
            }

            free.Remove(silo);
            S.Retry.Remove(trialId);
            await AssignAsync(S.Proposals[trialId - 1], S.FailedAttempts.Count(f => f.TrialId == trialId) + 1, active[silo]);
            changed = true;
        }

        var max = _description!.MaxTrials;
        while (!S.Stopping && free.Count > 0)
        {
            var nextId = S.Proposals.Count + 1;
            if (max is { } limit && nextId > limit)
            {
                S.Stopping = true;
                S.StopReason = nameof(SweepStopReason.MaxTrials);
                changed = true;
                break;
            }

            // Successive halving's next rung needs the whole current rung's results, as in the sequential sweep.
            if (!SweepDescription.CanProposeAhead(_tuner!) && (S.Running.Count > 0 || S.Retry.Count > 0))
            {
                break;
            }

            var proposal = _tuner!.Propose(max is { } m ? m - nextId + 1 : int.MaxValue);
            if (proposal is null)
            {
                S.Stopping = true;
                S.StopReason = nameof(SweepStopReason.SearchFinished);
                changed = true;
                break;
            }

            var record = ProposalRecord.From(nextId, proposal);
            S.Proposals.Add(record);
            var silo = free[0];
            free.RemoveAt(0);
            await AssignAsync(record, 1, active[silo]);
            changed = true;
        }

        return changed;
    }

    private async Task AssignAsync(ProposalRecord proposal, int attempt, SiloAddress silo)
    {
        var sweepId = this.GetPrimaryKeyString();
        var key = TargetSiloPlacementDirector.Key(silo, sweepId, proposal.TrialId, attempt);
        var running = new RunningTrial
        {
            TrialId = proposal.TrialId,
            Attempt = attempt,
            Silo = silo.ToParsableString(),
            GrainKey = key,
            StartedUtc = DateTime.UtcNow,
            LastAnswerUtc = DateTime.UtcNow,
        };
        S.Running.Add(running);
        S.Timings.Add(new TrialTiming { TrialId = proposal.TrialId, Attempt = attempt, Silo = running.Silo, AssignedUtc = running.StartedUtc });
        try
        {
            await GrainFactory.GetGrain<ITrialGrain>(key)
                .StartAsync(new TrialAssignment { SweepId = sweepId, TrialId = proposal.TrialId, Attempt = attempt, Proposal = proposal, Spec = S.Spec! })
                .WaitAsync(TimeSpan.FromSeconds(30));
            Event($"trial {proposal} attempt {attempt} assigned to silo {running.Silo}");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            AttemptFailed(running, $"assigning it to silo {running.Silo} failed: {e.GetType().Name}: {e.Message.Split('\n')[0]}", started: false);
        }
    }

    /// <summary>An attempt whose silo is gone: its result may have reached shared storage before; otherwise it failed.</summary>
    private void Lost(RunningTrial running, string reason)
    {
        S.Running.Remove(running);
        if (TrialExecutor.TryReadResult(S.Spec!, running.TrialId, running.Attempt) is { } saved)
        {
            Event($"trial {running.TrialId} attempt {running.Attempt}: {reason}, but its result was already on shared storage; it is kept");
            Record(saved);
            return;
        }

        AttemptFailed(running, reason);
    }

    private void AttemptFailed(RunningTrial running, string error, bool started = true)
    {
        S.Running.Remove(running);
        S.FailedAttempts.Add(new FailedAttempt { TrialId = running.TrialId, Attempt = running.Attempt, Silo = running.Silo, Error = error, NeverStarted = !started });
        var silos = FailedSilos(running.TrialId).Count;
        if (silos >= S.Spec!.MaxSilosPerTrial)
        {
            GiveUp(running.TrialId, $"it failed on {silos} silos");
        }
        else if (S.FailedAttempts.Count(f => f.TrialId == running.TrialId && f.NeverStarted) >= MaxUnstartedAttempts)
        {
            GiveUp(running.TrialId, $"{MaxUnstartedAttempts} assignments did not reach a silo");
        }
        else if (S.StopReason is not (nameof(SweepStopReason.Cancelled) or nameof(SweepStopReason.TimeBudget)))
        {
            S.Retry.Add(running.TrialId);
            Event($"trial {running.TrialId} attempt {running.Attempt} on silo {running.Silo} failed ({error}); it runs again on another silo");
        }
    }

    /// <summary>The silos that accepted the trial and failed it (unreachable assignments do not count).</summary>
    private HashSet<string> FailedSilos(int trialId)
        => S.FailedAttempts.Where(f => f.TrialId == trialId && !f.NeverStarted).Select(f => f.Silo).ToHashSet(StringComparer.Ordinal);

    private void GiveUp(int trialId, string why)
    {
        S.Retry.Remove(trialId);
        var failed = S.FailedAttempts.Where(f => f.TrialId == trialId).ToList();
        var errors = (failed.Any(f => !f.NeverStarted) ? failed.Where(f => !f.NeverStarted) : failed.TakeLast(3)).Select(f => $"attempt {f.Attempt} on {f.Silo}: {f.Error}");
        var attempts = S.FailedAttempts.Count(f => f.TrialId == trialId);
        Record(TrialRecord.Failed(S.Proposals[trialId - 1], $"Trial {trialId} is recorded as failed because {why}: {string.Join("; ", errors)}", attempts));
    }

    /// <summary>Adds a finished trial to the leaderboard once (a second result for the same trial is dropped) and tells the tuner.</summary>
    private void Record(TrialRecord record)
    {
        if (S.Results.Any(r => r.Id == record.Id))
        {
            Event($"a second result for trial {record.Id} (attempt {record.Attempt} on {record.Silo}) is ignored: trial {record.Id} is already recorded");
            if (record.ModelPath is not null && S.Results.First(r => r.Id == record.Id).ModelPath != record.ModelPath)
            {
                TryDelete(record.ModelPath);
            }

            return;
        }

        S.Retry.Remove(record.Id);
        if (S.Timings.FirstOrDefault(t => t.TrialId == record.Id && t.Attempt == record.Attempt) is { } timing)
        {
            timing.RecordedUtc = DateTime.UtcNow;
        }

        S.Results.Add(record);
        S.Results.Sort((a, b) => a.Id.CompareTo(b.Id));
        var result = record.ToResult();
        _tuner!.Update(result);
        Event($"trial {record}");
        if (result.Status == TrialStatus.Completed && double.IsFinite(result.Metric) && record.ModelPath is not null)
        {
            var best = S.BestTrialId is { } id ? S.Results.First(r => r.Id == id) : null;
            if (best is null || TrialResult.Rank([result, best.ToResult()], _description!.Metric).First() == result)
            {
                if (best?.ModelPath is not null)
                {
                    TryDelete(best.ModelPath);
                }

                S.BestTrialId = record.Id;
                return;
            }
        }

        if (record.ModelPath is not null)
        {
            TryDelete(record.ModelPath);
        }
    }

    private void Finish()
    {
        S.Finished = true;
        S.FinishedUtc = DateTime.UtcNow;
        try
        {
            if (S.BestTrialId is { } best && S.Results.First(r => r.Id == best).ModelPath is { } trained && File.Exists(trained))
            {
                // The winning model, where a local sweep's checkpoint folder keeps it.
                var kept = Path.Combine(S.Spec!.SweepFolder, string.Create(CultureInfo.InvariantCulture, $"trial-{best:D4}.zip"));
                var temporary = $"{kept}.{Guid.NewGuid():N}.tmp";
                File.Copy(trained, temporary, overwrite: true);
                File.Move(temporary, kept, overwrite: true);
                S.BestModelPath = kept;
            }

            var log = new TrialLog(S.Spec!.SweepFolder);
            if (!File.Exists(Path.Combine(S.Spec.SweepFolder, TrialLog.FileName)))
            {
                foreach (var result in S.Results)
                {
                    log.Append(result.ToResult());
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The leaderboard stands; the client reports the missing model with the shared folder's path.
            Event($"the winning model or trials.jsonl could not be written to '{S.Spec!.SweepFolder}': {e.Message}");
        }

        Event($"sweep finished ({S.StopReason}): {S.Results.Count} trial(s), {S.FailedAttempts.Count} failed attempt(s); best {(S.BestTrialId is { } b ? $"#{b}" : "none")}");
        _timer?.Dispose();
        _timer = null;
    }

    /// <summary>Rebuilds the tuner by replaying the persisted proposals and results, and checks it proposes the same trials.</summary>
    private void EnsureTuner()
    {
        if (_tuner is not null)
        {
            return;
        }

        _description = SweepDescription.FromJson(S.Spec!.DescriptionJson, $"sweep '{this.GetPrimaryKeyString()}'");
        var tuner = _description.CreateTuner(_description.BuildSpace());
        var told = new HashSet<int>();
        foreach (var proposal in S.Proposals.OrderBy(p => p.TrialId))
        {
            foreach (var result in S.Results.Where(r => r.Id < proposal.TrialId && !told.Contains(r.Id)).OrderBy(r => r.Id))
            {
                tuner.Update(result.ToResult());
                told.Add(result.Id);
            }

            var again = tuner.Propose(_description.MaxTrials is { } max ? max - proposal.TrialId + 1 : int.MaxValue);
            if (again is null || !ProposalRecord.From(proposal.TrialId, again).SameAs(proposal))
            {
                throw new InvalidOperationException(
                    $"replaying the tuner gave {(again is null ? "no proposal" : ProposalRecord.From(proposal.TrialId, again).ToString())} for trial {proposal.TrialId}, but {proposal} was recorded.");
            }
        }

        foreach (var result in S.Results.Where(r => !told.Contains(r.Id)).OrderBy(r => r.Id))
        {
            tuner.Update(result.ToResult());
        }

        _tuner = tuner;
    }

    private Dictionary<string, SiloAddress> ActiveSilos()
        => membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active)
            .ToDictionary(m => m.SiloAddress.ToParsableString(), m => m.SiloAddress, StringComparer.Ordinal);

    private void Event(string text)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"{DateTime.UtcNow:HH:mm:ss.fff} {text}");
        logger.LogInformation("sweep {Sweep}: {Event}", this.GetPrimaryKeyString(), text);
        S.Events.Add(line);
        if (S.Events.Count > MaxEvents)
        {
            S.Events.RemoveRange(0, S.Events.Count - MaxEvents);
        }
    }

    private SweepSnapshot Snapshot() => new()
    {
        SweepId = this.GetPrimaryKeyString(),
        Finished = S.Finished,
        StopReason = S.StopReason,
        Results = [.. S.Results],
        Running = [.. S.Running.Select(r => new RunningTrial
        {
            TrialId = r.TrialId, Attempt = r.Attempt, Silo = r.Silo, GrainKey = r.GrainKey, StartedUtc = r.StartedUtc, LastAnswerUtc = r.LastAnswerUtc, Step = r.Step, TotalSteps = r.TotalSteps,
        })],
        FailedAttempts = [.. S.FailedAttempts],
        BestTrialId = S.BestTrialId,
        BestModelPath = S.BestModelPath,
        Proposals = [.. S.Proposals],
        Events = [.. S.Events],
        StartedUtc = S.StartedUtc,
        FinishedUtc = S.FinishedUtc,
        Error = S.Error,
        Timings = [.. S.Timings.Select(t => new TrialTiming { TrialId = t.TrialId, Attempt = t.Attempt, Silo = t.Silo, AssignedUtc = t.AssignedUtc, RecordedUtc = t.RecordedUtc })],
    };

    /// <summary>What makes <paramref name="other"/> another sweep than <paramref name="held"/>, or null when it is the same.</summary>
    private static string? Difference(ClusterSweepSpec held, ClusterSweepSpec other)
        => held.DescriptionJson != other.DescriptionJson ? "other settings, search space, budgets or seed"
            : held.TrainDataSha256 != other.TrainDataSha256 ? $"other training data: SHA-256 {other.TrainDataSha256}, the sweep's is {held.TrainDataSha256}"
            : held.ValidationDataSha256 != other.ValidationDataSha256 ? $"other validation data: SHA-256 {other.ValidationDataSha256}, the sweep's is {held.ValidationDataSha256}"
            : held.ModelSha256 != other.ModelSha256 ? $"another base model: SHA-256 {other.ModelSha256}, the sweep's is {held.ModelSha256}"
            : null;

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
