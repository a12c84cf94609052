using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Compare;

/// <summary>
/// Progress of the long runs, so that one stopped before its end (a session that ends, Ctrl+C) continues where it
/// stopped. Full mode writes the results so far to <see cref="FileName"/> beside results.md after each method, and
/// <c>--curve</c> writes its points to <see cref="LearningCurve.PartialFileName"/> after each point, each with a key of
/// everything that decides a result (the base model's SHA-256, the rows, sequence length, batch, seed and epochs; the
/// curve's also the tuned settings). A later run with the same key keeps what finished and runs the rest; one with another key starts
/// afresh. In full mode each result also carries its own learning rate and epochs, and is kept only where the method
/// would run with the same ones now (a method tuned again runs again; the rest are kept). The file is deleted when the
/// run's own output is written. <c>--keep-unchanged</c> reads a finished run's results.json the same way.
/// </summary>
internal static class PartialRun
{
    public const string FileName = "results.partial.json";

    /// <summary>
    /// The key of full mode's results: what decides every result alike. Each method's learning rate and epochs are not
    /// in it; they are recorded with each result and checked by <see cref="SameBudget"/>.
    /// </summary>
    public static string Key(CompareSettings settings, string modelPath)
        => Hash(Decisive(settings, modelPath, new() { ["budgets"] = "per result" }));

    /// <summary>
    /// The key runs wrote before results carried their own budgets checked (the tuned settings were part of it): a file
    /// with this key, computed from the tuned settings the file itself lists, came from the same model and settings.
    /// </summary>
    public static string LegacyKey(CompareSettings settings, string modelPath, IReadOnlyList<TunedSetting> tuned)
    {
        var decisive = Decisive(settings, modelPath, []);
        decisive["tuned"] = tuned.OrderBy(t => t.Dataset, StringComparer.Ordinal).ThenBy(t => t.Method, StringComparer.Ordinal)
            .Select(t => new { t.Dataset, t.Method, t.LearningRate, t.Epochs });
        return Hash(decisive);
    }

    /// <summary>What decides every result of a run alike, after <paramref name="first"/>, in the order the keys serialize it.</summary>
    private static Dictionary<string, object?> Decisive(CompareSettings settings, string modelPath, Dictionary<string, object?> first)
    {
        first["model"] = Tuning.ModelHash(modelPath);
        first["epochs"] = settings.Epochs;
        first["batch"] = settings.BatchSize;
        first["max_length"] = settings.MaxLength;
        first["seed"] = settings.Seed;
        first["train"] = settings.TrainSize;
        first["test"] = settings.TestSize;
        first["untuned"] = settings.Untuned;
        return first;
    }

    /// <summary>The SHA-256 of what decides a run's results, serialized as JSON.</summary>
    public static string Hash(object decisive)
        => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(decisive))));

    /// <summary>
    /// Whether the result was measured with the learning rate and epochs the method runs with now: always for a method
    /// without them (the classical baseline), otherwise equal epochs and learning rates equal to 1e-9 relative.
    /// </summary>
    public static bool SameBudget(MethodResult result, (double LearningRate, int Epochs) budget)
        => double.IsNaN(budget.LearningRate)
            || (result.Epochs == budget.Epochs && double.IsFinite(result.LearningRate)
                && Math.Abs(result.LearningRate - budget.LearningRate) <= 1e-9 * Math.Abs(budget.LearningRate));

    /// <summary>
    /// Whether <paramref name="path"/> holds a run with this key (or, when <paramref name="legacyKey"/> is given, with the
    /// key it computes from the file's own tuned settings); when it exists but does not, says why the run starts afresh.
    /// </summary>
    /// <param name="path">The progress file, or a finished run's results.json.</param>
    /// <param name="key">This run's key (<see cref="Key"/>).</param>
    /// <param name="say">Where to say why a file is not used.</param>
    /// <param name="legacyKey">Computes the key of the earlier format from a file's tuned settings (<see cref="LegacyKey"/>).</param>
    /// <param name="unkeyedRun">This run's settings and base model path (relative as results.json writes it), to compare with a file that records no key.</param>
    public static bool Matches(string path, string key, Action<string> say, Func<IReadOnlyList<TunedSetting>, string>? legacyKey = null,
        (CompareSettings Settings, string Model)? unkeyedRun = null)
    {
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            var root = document.RootElement;
            if (root.TryGetProperty("resume_key", out var found) && found.ValueKind == JsonValueKind.String
                && (found.GetString() == key || (legacyKey is not null && found.GetString() == legacyKey(ResultsReport.FromJson(path).Tuned))))
            {
                return true;
            }

            if (unkeyedRun is { } unkeyed && (!root.TryGetProperty("resume_key", out found) || found.ValueKind == JsonValueKind.Null))
            {
                // A finished run written before results.json recorded its key: its recorded settings are compared instead
                // (the base model by its path only, as the file names no hash).
                var earlier = ResultsReport.FromJson(path);
                var same = !earlier.Settings.Quick && earlier.Settings.Epochs == unkeyed.Settings.Epochs && earlier.Settings.BatchSize == unkeyed.Settings.BatchSize
                    && earlier.Settings.MaxLength == unkeyed.Settings.MaxLength && earlier.Settings.Seed == unkeyed.Settings.Seed && earlier.Model == unkeyed.Model;
                say(same
                    ? $"{path} records no key; its mode, epochs, batch, sequence length, seed and base model path equal this run's"
                    : $"{path} records no key and other settings or another base model; starting afresh.");
                return same;
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
    public static (IReadOnlyList<DatasetRun> Runs, TimeSpan Elapsed) Read(string path, string key, Action<string> say,
        Func<IReadOnlyList<TunedSetting>, string>? legacyKey = null, (CompareSettings Settings, string Model)? unkeyedRun = null)
    {
        if (!Matches(path, key, say, legacyKey, unkeyedRun))
        {
            return ([], TimeSpan.Zero);
        }

        var report = ResultsReport.FromJson(path);
        var runs = report.Runs.Select(r => r with { Results = r.Results.Where(m => m.Error is null).ToList() }).ToList();
        say($"continuing the run written at {report.Written:yyyy-MM-dd HH:mm} UTC: {runs.Sum(r => r.Results.Count)} results can be kept where a method's learning rate and epochs are unchanged ({path})");
        return (runs, report.Elapsed);
    }
}
