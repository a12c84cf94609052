using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.IO;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>One line of the pretraining metrics file.</summary>
public sealed record PretrainingMetric
{
    /// <summary>Gets the optimizer step.</summary>
    [JsonPropertyName("step")]
    public long Step { get; init; }

    /// <summary>Gets the training tokens seen.</summary>
    [JsonPropertyName("tokens")]
    public long Tokens { get; init; }

    /// <summary>Gets the mean training loss (nats per token) since the previous line, or null when no step ran in between.</summary>
    [JsonPropertyName("loss")]
    public double? Loss { get; init; }

    /// <summary>Gets the learning rate of the step.</summary>
    [JsonPropertyName("lr")]
    public double LearningRate { get; init; }

    /// <summary>Gets the training throughput since the previous line.</summary>
    [JsonPropertyName("tokens_per_s")]
    public double? TokensPerSecond { get; init; }

    /// <summary>Gets the validation perplexity, on lines where validation ran.</summary>
    [JsonPropertyName("val_ppl")]
    public double? ValidationPerplexity { get; init; }

    /// <summary>Gets the run's training wall time in seconds.</summary>
    [JsonPropertyName("elapsed_s")]
    public double ElapsedSeconds { get; init; }
}

/// <summary>Appends and reads the JSON-lines metrics file of a pretraining run.</summary>
public static class PretrainingMetrics
{
    private static readonly JsonSerializerOptions _json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Reads every well-formed line of a metrics file (a torn last line from a crash is skipped).</summary>
    /// <param name="path">The metrics file.</param>
    /// <returns>The lines in file order; empty when the file does not exist.</returns>
    public static IReadOnlyList<PretrainingMetric> Read(string path)
    {
        var lines = new List<PretrainingMetric>();
        if (!File.Exists(path))
        {
            return lines;
        }

        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            try
            {
                if (JsonSerializer.Deserialize<PretrainingMetric>(line, _json) is { } metric)
                {
                    lines.Add(metric);
                }
            }
            catch (JsonException)
            {
                // A line torn by a crash; the checkpoint it belonged to was never committed.
            }
        }

        return lines;
    }

    internal static void Append(string path, PretrainingMetric metric)
    {
        var line = JsonSerializer.Serialize(metric, _json) + "\n";
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        stream.Write(Encoding.UTF8.GetBytes(line));
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Drops lines after <paramref name="step"/> (written after the checkpoint a run resumes from).</summary>
    internal static void TruncateAfter(string path, long step)
    {
        if (!File.Exists(path))
        {
            return;
        }

        var kept = Read(path).Where(m => m.Step <= step).ToList();
        var text = new StringBuilder();
        foreach (var metric in kept)
        {
            text.Append(JsonSerializer.Serialize(metric, _json)).Append('\n');
        }

        AtomicFile.WriteText(path, text.ToString());
    }
}
