using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Compare;

/// <summary>
/// Progress of the long runs, so that one stopped before its end (a session that ends, Ctrl+C) continues where it
/// stopped. Full mode writes the results so far to <see cref="FileName"/> beside results.md after each method, and
/// <c>--curve</c> writes its points to <see cref="LearningCurve.PartialFileName"/> after each point, each with a key of
/// everything that decides a result (the base model's SHA-256, the rows, sequence length, batch, seed, epochs and the
/// tuned settings). A later run with the same key keeps what finished and runs the rest; one with another key starts
/// afresh. The file is deleted when the run's own output is written.
/// </summary>
internal static class PartialRun
{
    public const string FileName = "results.partial.json";

    /// <summary>The key of full mode's results.</summary>
    public static string Key(CompareSettings settings, string modelPath, IReadOnlyList<TunedSetting> tuned) => Hash(new
    {
        model = Tuning.ModelHash(modelPath),
        epochs = settings.Epochs,
        batch = settings.BatchSize,
        max_length = settings.MaxLength,
        seed = settings.Seed,
        train = settings.TrainSize,
        test = settings.TestSize,
        untuned = settings.Untuned,
        tuned = tuned.OrderBy(t => t.Dataset, StringComparer.Ordinal).ThenBy(t => t.Method, StringComparer.Ordinal)
            .Select(t => new { t.Dataset, t.Method, t.LearningRate, t.Epochs }),
    });

    /// <summary>The SHA-256 of what decides a run's results, serialized as JSON.</summary>
    public static string Hash(object decisive)
        => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(decisive))));

    /// <summary>
    /// Whether <paramref name="path"/> holds a stopped run with this key; when it exists but does not, says why the run
    /// starts afresh.
    /// </summary>
    public static bool Matches(string path, string key, Action<string> say)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            if (document.RootElement.TryGetProperty("resume_key", out var found) && found.ValueKind == JsonValueKind.String && found.GetString() == key)
            {
                return true;
            }

            say($"{path} holds a stopped run with other settings, tuned settings or base model; starting afresh.");
            return false;
        }
        catch (JsonException e)
        {
            say($"{path} is not a readable progress file ({e.Message}); starting afresh.");
            return false;
        }
    }

    /// <summary>
    /// The results a stopped run with this key measured (failed ones are run again) and the time it took, or none.
    /// </summary>
    public static (IReadOnlyList<DatasetRun> Runs, TimeSpan Elapsed) Read(string path, string key, Action<string> say)
    {
        if (!Matches(path, key, say))
        {
            return ([], TimeSpan.Zero);
        }

        var report = ResultsReport.FromJson(path);
        var runs = report.Runs.Select(r => r with { Results = r.Results.Where(m => m.Error is null).ToList() }).ToList();
        say($"continuing the run stopped at {report.Written:yyyy-MM-dd HH:mm} UTC: {runs.Sum(r => r.Results.Count)} results kept ({path})");
        return (runs, report.Elapsed);
    }
}
