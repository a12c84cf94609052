using System.Diagnostics;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>One optimizer step as the engine saw it.</summary>
/// <param name="Step">Optimizer steps of the whole run after this one.</param>
/// <param name="TotalSteps">Optimizer steps planned.</param>
/// <param name="Loss">The step's mean loss.</param>
/// <param name="LearningRate">The rate it trained at.</param>
/// <param name="Tokens">Tokens the step processed.</param>
/// <param name="StepSeconds">The step's wall time.</param>
/// <param name="Elapsed">Time since this process started training.</param>
/// <param name="Remaining">The ETA: the time per step so far in this process times the steps left.</param>
internal sealed record StepReport(long Step, long TotalSteps, double Loss, double LearningRate, long Tokens, double StepSeconds, TimeSpan Elapsed, TimeSpan Remaining)
{
    /// <summary>Gets the step's throughput.</summary>
    public double TokensPerSecond => Tokens / Math.Max(1e-9, StepSeconds);
}

/// <summary>
/// The one progress and ETA reporter: the clock of this process, the time per step (the ETA), the run's training
/// seconds across resumes, and the interval sums a task reports every few steps.
/// </summary>
internal sealed class ProgressMeter
{
    private readonly Stopwatch _clock = new();
    private readonly long _startStep;
    private readonly long _totalSteps;

    public ProgressMeter(long startStep, long totalSteps, double trainSeconds)
    {
        _startStep = startStep;
        _totalSteps = totalSteps;
        TrainSeconds = trainSeconds;
    }

    /// <summary>Gets the time since training started in this process.</summary>
    public TimeSpan Elapsed => _clock.Elapsed;

    /// <summary>Gets the wall time of training and evaluation, all processes together.</summary>
    public double TrainSeconds { get; private set; }

    /// <summary>Gets the wall time of the optimizer steps of this process.</summary>
    public double StepSeconds { get; private set; }

    /// <summary>Gets the tokens of the steps of this process.</summary>
    public long Tokens { get; private set; }

    /// <summary>Gets the loss sum of the steps since the last <see cref="ResetInterval"/>.</summary>
    public double IntervalLoss { get; private set; }

    /// <summary>Gets the steps since the last <see cref="ResetInterval"/>.</summary>
    public int IntervalSteps { get; private set; }

    /// <summary>Gets the step seconds since the last <see cref="ResetInterval"/>.</summary>
    public double IntervalSeconds { get; private set; }

    /// <summary>Starts (or restarts) the clock of this process.</summary>
    public void Start() => _clock.Restart();

    /// <summary>Records a step and returns its report with the ETA.</summary>
    public StepReport Step(long step, double loss, double learningRate, long tokens, double seconds)
    {
        StepSeconds += seconds;
        TrainSeconds += seconds;
        Tokens += tokens;
        IntervalLoss += loss;
        IntervalSteps++;
        IntervalSeconds += seconds;
        var elapsed = _clock.Elapsed;
        return new StepReport(step, _totalSteps, loss, learningRate, tokens, seconds, elapsed, Remaining(elapsed, step));
    }

    /// <summary>Adds time that counts as training but is no step (an evaluation).</summary>
    public void AddSeconds(double seconds) => TrainSeconds += seconds;

    /// <summary>Clears the interval sums.</summary>
    public void ResetInterval()
    {
        IntervalLoss = 0;
        IntervalSteps = 0;
        IntervalSeconds = 0;
    }

    /// <summary>The ETA at <paramref name="step"/>: the time per step of this process times the steps left.</summary>
    public TimeSpan Remaining(TimeSpan elapsed, long step)
    {
        var stepsThisRun = step - _startStep;
        return TimeSpan.FromTicks(stepsThisRun == 0 ? 0 : elapsed.Ticks / stepsThisRun * (_totalSteps - step));
    }

    /// <summary>The ETA from an expected time per step (before the first step is measured).</summary>
    public TimeSpan Expected(TimeSpan perStep, long fromStep)
        => TimeSpan.FromTicks((long)(perStep.Ticks * (double)(_totalSteps - fromStep)));

    /// <summary>Formats a duration for a log line (s, min or h).</summary>
    public static string Format(TimeSpan time)
        => time.TotalHours >= 1 ? $"{time.TotalHours:F1} h" : time.TotalMinutes >= 1 ? $"{time.TotalMinutes:F1} min" : $"{time.TotalSeconds:F1} s";
}
