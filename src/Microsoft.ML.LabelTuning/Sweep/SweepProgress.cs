using System.Globalization;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>A snapshot of a sweep, reported when a trial starts, after each of its training steps, and when it ends.</summary>
/// <param name="Trial">The current trial's number, from 1.</param>
/// <param name="MaxTrials">The trial budget, or null when only time bounds the sweep.</param>
/// <param name="MethodName">The current trial's method.</param>
/// <param name="Finished">The trial that just ended, on end-of-trial reports only.</param>
/// <param name="Best">The best trial so far, or null before one completes.</param>
/// <param name="Elapsed">Time since the sweep started (this run).</param>
/// <param name="Remaining">Time left: the time budget's remainder, or an estimate from the mean trial time when only trials bound the sweep.</param>
/// <param name="Training">The current trial's training progress, on step reports only.</param>
public sealed record SweepProgress(
    int Trial,
    int? MaxTrials,
    string MethodName,
    TrialResult? Finished,
    TrialResult? Best,
    TimeSpan Elapsed,
    TimeSpan? Remaining,
    TrainingProgress? Training = null)
{
    /// <summary>E.g. <c>trial 3 of 12 (DePT) · best 0.9123 (#2 LS-LLaMA) · 4.1 min left</c>.</summary>
    /// <returns>The one-line summary.</returns>
    public override string ToString()
    {
        var text = new System.Text.StringBuilder(string.Create(CultureInfo.InvariantCulture, $"trial {Trial}{(MaxTrials is { } n ? $" of {n}" : string.Empty)} ({MethodName})"));
        if (Finished is not null)
        {
            text.Append(Finished.Status == TrialStatus.Completed
                ? string.Create(CultureInfo.InvariantCulture, $" done: {Finished.Metric:F4}")
                : $" failed: {Finished.Error}");
        }

        if (Best is not null)
        {
            text.Append(string.Create(CultureInfo.InvariantCulture, $" · best {Best.Metric:F4} (#{Best.Id} {Best.MethodName})"));
        }

        if (Remaining is { } left)
        {
            text.Append(string.Create(CultureInfo.InvariantCulture, $" · {(left.TotalMinutes >= 1 ? $"{left.TotalMinutes:F1} min" : $"{left.TotalSeconds:F0} s")} left"));
        }

        return text.ToString();
    }
}

/// <summary>Samples the process working set every 50 ms to find a trial's peak.</summary>
internal sealed class PeakMemorySampler : IDisposable
{
    private readonly Timer _timer;
    private long _peak;

    public PeakMemorySampler()
    {
        Baseline = Environment.WorkingSet;
        _peak = Baseline;
        _timer = new Timer(_ => Sample(), null, 0, 50);
    }

    public long Baseline { get; }

    public long Peak
    {
        get
        {
            Sample();
            return Interlocked.Read(ref _peak);
        }
    }

    public void Dispose() => _timer.Dispose();

    private void Sample()
    {
        var now = Environment.WorkingSet;
        long seen;
        while (now > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, seen) != seen)
        {
        }
    }
}
