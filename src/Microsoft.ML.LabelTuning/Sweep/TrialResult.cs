using System.Globalization;
using Microsoft.ML.LabelTuning.Methods;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>The metric a sweep optimizes, measured on the validation data.</summary>
public enum LabelTuningMetric
{
    /// <summary>Mean of the per-class accuracies (recalls); robust to class imbalance. Higher is better.</summary>
    MacroAccuracy,

    /// <summary>Fraction of rows classified correctly. Higher is better.</summary>
    MicroAccuracy,

    /// <summary>Mean cross-entropy of the predicted probabilities. Lower is better.</summary>
    LogLoss,

    /// <summary>F1: of the positive class for binary labels, the mean of the per-class F1 scores (macro-F1) otherwise. Higher is better.</summary>
    F1,
}

/// <summary>How a trial ended.</summary>
public enum TrialStatus
{
    /// <summary>Trained and evaluated.</summary>
    Completed,

    /// <summary>Threw (for example out of memory, a diverging loss, or invalid settings); <see cref="TrialResult.Error"/> says why.</summary>
    Failed,
}

/// <summary>Why a sweep stopped.</summary>
public enum SweepStopReason
{
    /// <summary>Every trial the tuner proposed ran.</summary>
    SearchFinished,

    /// <summary><see cref="LabelTuningExperiment.SetMaxTrials"/> trials ran.</summary>
    MaxTrials,

    /// <summary>The training time budget ran out; the trial running then was cancelled and not recorded.</summary>
    TimeBudget,

    /// <summary>The caller cancelled; the trial running then was cancelled and not recorded.</summary>
    Cancelled,
}

/// <summary>One trial of a sweep: a method and its settings, trained for some epochs and measured.</summary>
public sealed class TrialResult
{
    /// <summary>Gets the trial number, from 1, in the order trials ran.</summary>
    public int Id { get; init; }

    /// <summary>Gets the configuration number: successive halving trains one configuration at several epoch budgets.</summary>
    public int ConfigurationId { get; init; }

    /// <summary>Gets the successive-halving rung (0 for random search).</summary>
    public int Rung { get; init; }

    /// <summary>Gets the tuning method.</summary>
    public TuningMethod Method { get; init; }

    /// <summary>Gets the method's readable name (DePT and EPT are prompt tuning with a decomposed rank; LS-unLLaMA is LS-LLaMA unmasked).</summary>
    public string MethodName { get; init; } = string.Empty;

    /// <summary>Gets the options values the sweep set, by property name (numbers, booleans, enum names as strings). Epochs is always present.</summary>
    public IReadOnlyDictionary<string, object> Parameters { get; init; } = new Dictionary<string, object>();

    /// <summary>Gets the epochs trained.</summary>
    public int Epochs => Parameters.TryGetValue("Epochs", out var e) ? Convert.ToInt32(e, CultureInfo.InvariantCulture) : 0;

    /// <summary>Gets how the trial ended.</summary>
    public TrialStatus Status { get; init; }

    /// <summary>Gets the value of the sweep's metric on the validation data (NaN when the trial failed).</summary>
    public double Metric { get; init; } = double.NaN;

    /// <summary>Gets every metric on the validation data (empty when the trial failed).</summary>
    public IReadOnlyDictionary<LabelTuningMetric, double> Metrics { get; init; } = new Dictionary<LabelTuningMetric, double>();

    /// <summary>Gets the wall-clock time of fitting (model loading and training; evaluation excluded).</summary>
    public TimeSpan TrainingTime { get; init; }

    /// <summary>Gets the trainable parameter count (adapter and head), as the trained transformer reports it.</summary>
    public long TrainableParameters { get; init; }

    /// <summary>Gets the process's peak working set during the trial, in bytes (sampled every 50 ms).</summary>
    public long PeakMemoryBytes { get; init; }

    /// <summary>Gets how far the working set rose above its level at the trial's start, in bytes (the trial's own peak footprint).</summary>
    public long MemoryIncreaseBytes { get; init; }

    /// <summary>Gets the exception type and message of a failed trial.</summary>
    public string? Error { get; init; }

    /// <summary>Gets a value indicating whether the result was read from the checkpoint folder rather than trained in this run.</summary>
    public bool FromCheckpoint { get; init; }

    /// <summary>Gets the fitted model; set on the best trial of a sweep's result only.</summary>
    public ITransformer? Model { get; internal set; }

    /// <summary>Gets the settings as one line, e.g. <c>Epochs=3 LearningRate=0.0001 LoraRank=12</c>.</summary>
    public string ParametersText => string.Join(' ', Parameters.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={Format(p.Value)}"));

    /// <inheritdoc/>
    public override string ToString()
        => Status == TrialStatus.Completed
            ? string.Create(CultureInfo.InvariantCulture, $"#{Id} {MethodName} {ParametersText}: {Metric:F4} in {TrainingTime.TotalSeconds:F1} s")
            : $"#{Id} {MethodName} {ParametersText}: failed ({Error})";

    internal static string Format(object value) => value switch
    {
        double d => d.ToString("G4", CultureInfo.InvariantCulture),
        float f => f.ToString("G4", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? string.Empty,
    };

    /// <summary>True when <paramref name="metric"/> is better when lower.</summary>
    internal static bool LowerIsBetter(LabelTuningMetric metric) => metric == LabelTuningMetric.LogLoss;

    /// <summary>
    /// Orders trials best first: completed by metric, ties by log-loss (accuracies tie often on small validation sets),
    /// then by shorter training; failed trials last, by id.
    /// </summary>
    internal static IOrderedEnumerable<TrialResult> Rank(IEnumerable<TrialResult> trials, LabelTuningMetric metric)
        => trials
            .OrderBy(t => t.Status == TrialStatus.Completed && double.IsFinite(t.Metric) ? 0 : 1)
            .ThenBy(t => double.IsFinite(t.Metric) ? (LowerIsBetter(metric) ? t.Metric : -t.Metric) : 0)
            .ThenBy(t => t.Metrics.TryGetValue(LabelTuningMetric.LogLoss, out var logLoss) && !double.IsNaN(logLoss) ? logLoss : double.PositiveInfinity)
            .ThenBy(t => t.TrainingTime)
            .ThenBy(t => t.Id);
}
