using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Compare;

/// <summary>
/// Full mode's progress, so that a run stopped before its end (a session that ends, Ctrl+C) continues where it stopped:
/// after each method the results so far go to <see cref="FileName"/> beside results.md, with a key of everything that
/// decides a result (the base model's SHA-256, the rows, sequence length, batch, seed, epochs and the tuned settings).
/// A later run with the same key keeps the methods that finished and runs the rest; one with another key starts
/// afresh. The file is deleted when results.md is written.
/// </summary>
internal static class PartialRun
{
    public const string FileName = "results.partial.json";

    public static string Key(CompareSettings settings, string modelPath, IReadOnlyList<TunedSetting> tuned)
    {
        var decisive = JsonSerializer.Serialize(new
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
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(decisive)));
    }

    /// <summary>
    /// The results a stopped run with this key measured (failed ones are run again) and the time it took, or none.
    /// </summary>
    public static (IReadOnlyList<DatasetRun> Runs, TimeSpan Elapsed) Read(string path, string key, Action<string> say)
    {
        if (!File.Exists(path))
        {
            return ([], TimeSpan.Zero);
        }

        string? found;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            found = document.RootElement.TryGetProperty("resume_key", out var k) && k.ValueKind == JsonValueKind.String ? k.GetString() : null;
        }
        catch (JsonException e)
        {
            say($"{path} is not a readable progress file ({e.Message}); starting afresh.");
            return ([], TimeSpan.Zero);
        }

        if (found != key)
        {
            say($"{path} holds a stopped run with other settings, tuned settings or base model; starting afresh.");
            return ([], TimeSpan.Zero);
        }

        var report = ResultsReport.FromJson(path);
        var runs = report.Runs.Select(r => r with { Results = r.Results.Where(m => m.Error is null).ToList() }).ToList();
        say($"continuing the run stopped at {report.Written:yyyy-MM-dd HH:mm} UTC: {runs.Sum(r => r.Results.Count)} results kept ({path})");
        return (runs, report.Elapsed);
    }
}
