using System.Collections;
using System.Globalization;
using System.Text;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Reporting;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>Every trial of a sweep, best first, with exports to CSV, markdown and a PNG plot of the metric against training time.</summary>
public sealed class SweepLeaderboard : IReadOnlyList<TrialResult>
{
    private static readonly LabelTuningMetric[] _allMetrics = Enum.GetValues<LabelTuningMetric>();
    private readonly IReadOnlyList<TrialResult> _trials;

    internal SweepLeaderboard(IReadOnlyList<TrialResult> trials, LabelTuningMetric metric)
    {
        _trials = trials;
        Metric = metric;
    }

    /// <summary>Gets the metric the trials are ranked by.</summary>
    public LabelTuningMetric Metric { get; }

    /// <inheritdoc/>
    public int Count => _trials.Count;

    /// <inheritdoc/>
    public TrialResult this[int index] => _trials[index];

    /// <inheritdoc/>
    public IEnumerator<TrialResult> GetEnumerator() => _trials.GetEnumerator();

    /// <inheritdoc/>
    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The leaderboard as CSV (RFC 4180, invariant culture), one row per trial, best first.</summary>
    /// <returns>The CSV text.</returns>
    public string ToCsv()
    {
        var text = new StringBuilder();
        var header = new List<string> { "rank", "trial", "configuration", "rung", "method", "status", "metric" };
        header.AddRange(_allMetrics.Select(m => m.ToString()));
        header.AddRange(["epochs", "training_seconds", "trainable_parameters", "peak_memory_mb", "memory_increase_mb", "parameters", "error"]);
        text.Append(string.Join(',', header)).Append('\n');
        for (var i = 0; i < _trials.Count; i++)
        {
            var t = _trials[i];
            var row = new List<string>
            {
                Invariant(i + 1), Invariant(t.Id), Invariant(t.ConfigurationId), Invariant(t.Rung), Csv(t.MethodName), t.Status.ToString(), Number(t.Metric),
            };
            row.AddRange(_allMetrics.Select(m => t.Metrics.TryGetValue(m, out var v) ? Number(v) : string.Empty));
            row.AddRange([Invariant(t.Epochs), Number(t.TrainingTime.TotalSeconds), Invariant(t.TrainableParameters), Megabytes(t.PeakMemoryBytes),
                Megabytes(t.MemoryIncreaseBytes), Csv(t.ParametersText), Csv(t.Error ?? string.Empty)]);
            text.Append(string.Join(',', row)).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>The leaderboard as a GitHub markdown table, best first.</summary>
    /// <returns>The markdown text.</returns>
    public string ToMarkdown()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"| # | trial | method | {Metric} | epochs | training s | trainable | peak MB | settings |\n");
        text.Append("|---:|---:|---|---:|---:|---:|---:|---:|---|\n");
        for (var i = 0; i < _trials.Count; i++)
        {
            var t = _trials[i];
            var metric = t.Status == TrialStatus.Completed ? t.Metric.ToString("F4", CultureInfo.InvariantCulture) : $"failed: {t.Error}";
            text.Append(CultureInfo.InvariantCulture,
                $"| {i + 1} | {t.Id} | {Cell(t.MethodName)} | {Cell(metric)} | {t.Epochs} | {t.TrainingTime.TotalSeconds:F1} | {t.TrainableParameters:N0} | {t.PeakMemoryBytes / 1048576.0:F0} | {Cell(t.ParametersText)} |\n");
        }

        return text.ToString();
    }

    /// <summary>Writes <see cref="ToCsv"/> to <paramref name="path"/> atomically.</summary>
    /// <param name="path">The file.</param>
    public void SaveCsv(string path) => AtomicFile.WriteText(path, ToCsv());

    /// <summary>Writes <see cref="ToMarkdown"/> to <paramref name="path"/> atomically.</summary>
    /// <param name="path">The file.</param>
    public void SaveMarkdown(string path) => AtomicFile.WriteText(path, ToMarkdown());

    /// <summary>The metric against training time, one series per method (completed trials, in order of training time).</summary>
    /// <param name="title">The chart title; null gives "<c>metric</c> against training time".</param>
    /// <returns>The chart, ready to save or adjust.</returns>
    public LineChart ToChart(string? title = null)
    {
        var chart = new LineChart
        {
            Title = title ?? $"{Metric} against training time",
            XLabel = "training time (s)",
            YLabel = Metric.ToString(),
        };
        foreach (var method in _trials.Where(Plottable).GroupBy(t => t.MethodName).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var points = method.OrderBy(t => t.TrainingTime).ToList();
            chart.AddSeries(method.Key, points.Select(t => t.TrainingTime.TotalSeconds).ToArray(), points.Select(t => t.Metric).ToArray(), markers: true);
        }

        return chart;
    }

    /// <summary>Writes <see cref="ToChart"/> as a PNG to <paramref name="path"/>.</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="InvalidOperationException">No trial completed, so there is nothing to plot.</exception>
    public void SavePlot(string path)
    {
        if (!_trials.Any(Plottable))
        {
            throw new InvalidOperationException($"No trial completed with a finite {Metric}; there is nothing to plot to '{path}'.");
        }

        ToChart().Save(path);
    }

    private static bool Plottable(TrialResult t) => t.Status == TrialStatus.Completed && double.IsFinite(t.Metric);

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Number(double value) => double.IsFinite(value) ? value.ToString("G6", CultureInfo.InvariantCulture) : string.Empty;

    private static string Megabytes(long bytes) => (bytes / 1048576.0).ToString("F1", CultureInfo.InvariantCulture);

    private static string Csv(string value)
        => value.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + value.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : value;

    private static string Cell(string value) => value.Replace("|", "\\|", StringComparison.Ordinal).Replace('\n', ' ');
}
