using System.Globalization;
using System.Text;
using System.Text.Json;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.LabelTuning.Reporting;
using Spectre.Console;

namespace Compare;

/// <summary>One fit of the learning curve: a method trained on <see cref="Rows"/> rows drawn with <see cref="Seed"/>.</summary>
internal sealed record CurvePoint(string Dataset, string Method, int Rows, int Seed, double Accuracy, int TestRows, double LearningRate, int Epochs, double TrainSeconds, string? Error);

/// <summary>The learning curve: its points, the settings it ran with, and how it reads as Markdown and as a chart.</summary>
internal sealed class CurveReport(IReadOnlyList<CurvePoint> points, int maxLength, int batch, int minSteps, string machine, DateTime written, double minutes)
{
    public IReadOnlyList<CurvePoint> Points => points;

    /// <summary>The mean accuracy over seeds and its standard error: the spread of the seeds' means and the test rows' binomial error, combined.</summary>
    public static (double Mean, double StandardError, int Seeds) Summarize(IReadOnlyList<CurvePoint> seeds)
    {
        var ok = seeds.Where(p => p.Error is null && double.IsFinite(p.Accuracy)).ToList();
        if (ok.Count == 0)
        {
            return (double.NaN, double.NaN, 0);
        }

        var mean = ok.Average(p => p.Accuracy);
        // Binomial variance of each seed's accuracy over its test rows, averaged over the seeds' mean.
        var binomial = ok.Sum(p => p.Accuracy * (1 - p.Accuracy) / p.TestRows) / (ok.Count * ok.Count);
        // Between-seed variance of the mean (the row draw and the training seed), when there are several seeds.
        var between = ok.Count > 1 ? ok.Sum(p => (p.Accuracy - mean) * (p.Accuracy - mean)) / (ok.Count - 1) / ok.Count : 0;
        return (mean, Math.Sqrt(Math.Max(binomial, between)), ok.Count);
    }

    public void WriteMarkdown(StringBuilder md)
    {
        md.AppendLine("## Learning curve: accuracy against training rows");
        md.AppendLine();
        md.AppendLine($"Written by `dotnet run --project samples/Compare -c Release -- --curve` on {written:yyyy-MM-dd HH:mm} UTC ({minutes:F0} min; {machine}).");
        md.AppendLine($"Each point trains on a balanced draw of that many rows of train.tsv (the same rows for every method at each size and seed; the draws are nested,");
        md.AppendLine($"so a larger set holds the smaller ones of its seed) and scores the same test rows; inputs cut to {maxLength} tokens, batch {batch}. Learning rate and");
        md.AppendLine($"epochs are the ones chosen on validation rows for the full training set (`docs/tuned-settings.json`), with at least {minSteps} optimizer steps per fit so that");
        md.AppendLine("the smallest sets are not under-trained. Accuracy is the mean over the seeds ± its standard error (the larger of the seeds' spread and the test rows' binomial error).");
        md.AppendLine();
        md.AppendLine("![Test accuracy against training rows](results-learning-curve.png)");
        md.AppendLine();
        foreach (var dataset in points.Select(p => p.Dataset).Distinct())
        {
            var methods = points.Where(p => p.Dataset == dataset).Select(p => p.Method).Distinct().ToList();
            var sizes = points.Where(p => p.Dataset == dataset).Select(p => p.Rows).Distinct().Order().ToList();
            md.AppendLine($"**{dataset}** ({points.First(p => p.Dataset == dataset).TestRows} test rows)");
            md.AppendLine();
            md.AppendLine($"| training rows | seeds | {string.Join(" | ", methods)} | best LLM − SDCA |");
            md.AppendLine($"|---:|---:|{string.Concat(methods.Select(_ => "---:|"))}---:|");
            var gaps = new List<(int Size, double Diff, double Se)>();
            foreach (var size in sizes)
            {
                var cells = methods.Select(m => Summarize(points.Where(p => p.Dataset == dataset && p.Method == m && p.Rows == size).ToList())).ToList();
                var seeds = cells.Max(c => c.Seeds);
                var sdcaIndex = methods.IndexOf("ML.NET SDCA");
                var gap = "—";
                if (sdcaIndex >= 0)
                {
                    var best = cells.Where((_, i) => i != sdcaIndex).Select((c, i) => c).OrderByDescending(c => c.Mean).FirstOrDefault();
                    var sdca = cells[sdcaIndex];
                    if (double.IsFinite(best.Mean) && double.IsFinite(sdca.Mean))
                    {
                        var se = Math.Sqrt((best.StandardError * best.StandardError) + (sdca.StandardError * sdca.StandardError));
                        var diff = best.Mean - sdca.Mean;
                        gaps.Add((size, diff, se));
                        gap = string.Create(CultureInfo.InvariantCulture, $"{100 * diff:+0.0;-0.0} ± {100 * se:F1}{(diff > 2 * se ? " (> 2 SE)" : string.Empty)}");
                    }
                }

                md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {size} | {seeds} | {string.Join(" | ", cells.Select(c => double.IsFinite(c.Mean) ? $"{100 * c.Mean:F1} ± {100 * c.StandardError:F1}" : "failed"))} | {gap} |"));
            }

            md.AppendLine();
            if (gaps.Count > 0)
            {
                static string Sizes(IEnumerable<(int Size, double Diff, double Se)> rows) => string.Join(", ", rows.Select(r => r.Size));
                var ahead = gaps.Where(g => g.Diff > 2 * g.Se).ToList();
                var behind = gaps.Where(g => g.Diff < 0).ToList();
                var within = gaps.Where(g => g.Diff >= 0 && g.Diff <= 2 * g.Se).ToList();
                var parts = new List<string>();
                if (ahead.Count > 0)
                {
                    parts.Add($"the best LLM method leads SDCA by more than two standard errors at {Sizes(ahead)} rows");
                }

                if (within.Count > 0)
                {
                    parts.Add($"leads within two standard errors at {Sizes(within)}");
                }

                if (behind.Count > 0)
                {
                    parts.Add($"SDCA is ahead at {Sizes(behind)}");
                }

                md.AppendLine($"Crossover on {dataset}: {string.Join("; ", parts)}.");
                md.AppendLine();
            }
        }
    }

    public void WriteChart(string path)
    {
        var chart = new LineChart
        {
            Title = "Test accuracy against training rows (mean over seeds)",
            XLabel = "training rows (log scale)",
            LogX = true,
            YLabel = "accuracy",
            YMin = 0.4,
            YMax = 1.0,
            Width = 1100,
            LegendLowerRight = true, // accuracy rises with rows: the lower right stays empty
        };
        foreach (var series in points.GroupBy(p => (p.Dataset, p.Method)))
        {
            var sizes = series.Select(p => p.Rows).Distinct().Order().ToList();
            chart.AddSeries($"{series.Key.Dataset}: {series.Key.Method}", sizes.Select(s => (double)s).ToList(),
                sizes.Select(s => Summarize(series.Where(p => p.Rows == s).ToList()).Mean).ToList(), markers: true);
        }

        chart.Save(path);
    }

    /// <summary>Gets the key of a curve in progress (see <see cref="LearningCurve"/>); null in a finished one.</summary>
    public string? ResumeKey { get; init; }

    /// <summary>Gets the minutes the curve took (for a continued one, its stopped parts included).</summary>
    public double Minutes => minutes;

    public void WriteJson(string path)
    {
        var json = JsonSerializer.Serialize(new
        {
            resume_key = ResumeKey,
            written_utc = written,
            machine,
            minutes,
            max_length = maxLength,
            batch,
            min_steps = minSteps,
            points = points.Select(p => new
            {
                dataset = p.Dataset,
                method = p.Method,
                rows = p.Rows,
                seed = p.Seed,
                accuracy = double.IsFinite(p.Accuracy) ? p.Accuracy : (double?)null,
                test_rows = p.TestRows,
                learning_rate = double.IsFinite(p.LearningRate) ? p.LearningRate : (double?)null,
                epochs = p.Epochs,
                train_seconds = double.IsFinite(p.TrainSeconds) ? p.TrainSeconds : (double?)null,
                error = p.Error,
            }),
        }, new JsonSerializerOptions { WriteIndented = true });
        var temp = path + ".tmp";
        File.WriteAllText(temp, json);
        File.Move(temp, path, overwrite: true);
    }

    public static CurveReport Read(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var root = document.RootElement;
        var points = root.GetProperty("points").EnumerateArray().Select(p => new CurvePoint(
            p.GetProperty("dataset").GetString()!,
            p.GetProperty("method").GetString()!,
            p.GetProperty("rows").GetInt32(),
            p.GetProperty("seed").GetInt32(),
            Number(p, "accuracy"),
            p.GetProperty("test_rows").GetInt32(),
            Number(p, "learning_rate"),
            p.GetProperty("epochs").GetInt32(),
            Number(p, "train_seconds"),
            p.GetProperty("error").GetString())).ToList();
        return new CurveReport(points, root.GetProperty("max_length").GetInt32(), root.GetProperty("batch").GetInt32(), root.GetProperty("min_steps").GetInt32(),
            root.GetProperty("machine").GetString()!, root.GetProperty("written_utc").GetDateTime(), root.GetProperty("minutes").GetDouble());

        static double Number(JsonElement e, string name) => e.GetProperty(name).ValueKind == JsonValueKind.Number ? e.GetProperty(name).GetDouble() : double.NaN;
    }
}

/// <summary>Runs the learning curve (<c>--curve</c>) and adds it to docs/results.md.</summary>
internal static class LearningCurve
{
    public static CurveReport? TryRead(string path) => File.Exists(path) ? CurveReport.Read(path) : null;

    public static int Run(CompareSettings settings, string? root, string modelPath, string dataRoot, string outPath, string tunedPath, IReadOnlyList<Dataset> datasets)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tuned = !settings.Untuned && File.Exists(tunedPath) ? Tuning.Load(tunedPath, modelPath) : [];
        if (tuned.Count == 0)
        {
            AnsiConsole.MarkupLine("[yellow]No tuned settings: every method runs at its default learning rate and --epochs. Run --tune first for settings chosen on validation rows.[/]");
        }

        // A stopped curve continues: every point is written to the progress file as soon as it is measured, under a
        // key of what decides a point (base model, test rows, tokens, batch, minimum steps, seed, tuned settings).
        var partialPath = Path.Combine(outPath, PartialFileName);
        var key = Key(settings, modelPath, tuned);
        var (stopped, stoppedMinutes) = ReadStopped(partialPath, key);
        var points = new List<CurvePoint>();
        foreach (var dataset in datasets)
        {
            var train = TextData.Load(Path.Combine(dataRoot, dataset.Folder, "train.tsv"));
            var test = TextData.Balanced(TextData.Load(Path.Combine(dataRoot, dataset.Folder, "test.tsv")), settings.TestSize);
            var methods = CurveMethods(settings, dataset, tuned);
            AnsiConsole.Write(new Rule(Markup.Escape($"{dataset.Name}: {string.Join(", ", methods.Select(m => m.Name))}; {test.Count} test rows")).LeftJustified());
            foreach (var size in settings.CurveSizes)
            {
                var seeds = size <= 128 ? settings.CurveSeeds : 1;
                for (var seed = 0; seed < seeds; seed++)
                {
                    var rows = Draw(train, size, seed);
                    var ml = new MLContext(seed: settings.Seed + seed);
                    var plan = new RunPlan(ml, modelPath, rows, test, dataset, settings);
                    foreach (var method in methods)
                    {
                        if (stopped.FirstOrDefault(p => p.Dataset == dataset.Name && p.Method == method.Name && p.Rows == rows.Count && p.Seed == seed && p.TestRows == test.Count) is { } kept)
                        {
                            points.Add(kept);
                            AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                                $"  {rows.Count} rows, seed {seed}, {method.Name}: {kept.Accuracy:P1} (measured by the stopped run; kept)")));
                            continue;
                        }

                        var setting = tuned.FirstOrDefault(t => t.Dataset == dataset.Name && t.Method == method.Id);
                        var (lr, epochs) = Methods.Budget(method, plan, setting);
                        var stepsPerEpoch = (rows.Count + settings.BatchSize - 1) / settings.BatchSize;
                        epochs = Math.Max(epochs, (settings.CurveMinSteps + stepsPerEpoch - 1) / stepsPerEpoch);
                        var budget = method.Tuning is null ? null : new TunedSetting(dataset.Name, method.Id, lr, epochs, double.NaN, double.NaN, rows.Count, 0, 0, 0);
                        var result = method.Run(plan, budget);
                        points.Add(new CurvePoint(dataset.Name, method.Name, rows.Count, seed, result.Accuracy, test.Count, result.LearningRate, result.Epochs, result.TrainSeconds, result.Error));
                        AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                            $"  {rows.Count} rows, seed {seed}, {method.Name}: {(result.Error is null ? $"{result.Accuracy:P1} ({(method.Tuning is null ? "" : $"lr {result.LearningRate:G3}, {result.Epochs} epochs, ")}{result.TrainSeconds:F0} s)" : result.Error)}")));
                        new CurveReport(points, settings.MaxLength, settings.BatchSize, settings.CurveMinSteps, MachineInfo.Describe(), DateTime.UtcNow, stoppedMinutes + clock.Elapsed.TotalMinutes) { ResumeKey = key }
                            .WriteJson(partialPath);
                    }
                }
            }
        }

        var report = new CurveReport(points, settings.MaxLength, settings.BatchSize, settings.CurveMinSteps, MachineInfo.Describe(), DateTime.UtcNow, stoppedMinutes + clock.Elapsed.TotalMinutes);
        report.WriteJson(Path.Combine(outPath, "learning-curve.json"));
        File.Delete(partialPath);
        report.WriteChart(Path.Combine(outPath, "results-learning-curve.png"));
        AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(RepoPaths.Relative(root, Path.Combine(outPath, "learning-curve.json")))}[/] and results-learning-curve.png.");
        var results = Path.Combine(outPath, "results.json");
        if (File.Exists(results))
        {
            var earlier = ResultsReport.FromJson(results);
            earlier.WriteMarkdown(Path.Combine(outPath, "results.md"), "results.png");
            AnsiConsole.MarkupLine("Added the learning curve to results.md.");
        }

        return points.Any(p => p.Error is not null) ? 1 : 0;
    }

    /// <summary>The file a curve in progress writes each point to, beside learning-curve.json; deleted when the curve is done.</summary>
    public const string PartialFileName = "learning-curve.partial.json";

    private static string Key(CompareSettings settings, string modelPath, IReadOnlyList<TunedSetting> tuned) => PartialRun.Hash(new
    {
        model = Tuning.ModelHash(modelPath),
        test = settings.TestSize,
        max_length = settings.MaxLength,
        batch = settings.BatchSize,
        min_steps = settings.CurveMinSteps,
        seed = settings.Seed,
        untuned = settings.Untuned,
        epochs = settings.Epochs,
        tuned = tuned.OrderBy(t => t.Dataset, StringComparer.Ordinal).ThenBy(t => t.Method, StringComparer.Ordinal)
            .Select(t => new { t.Dataset, t.Method, t.LearningRate, t.Epochs, t.ValidationAccuracy }),
    });

    private static (IReadOnlyList<CurvePoint> Points, double Minutes) ReadStopped(string path, string key)
    {
        if (!PartialRun.Matches(path, key, message => AnsiConsole.MarkupLine(Markup.Escape(message))))
        {
            return ([], 0);
        }

        var stopped = CurveReport.Read(path);
        var points = stopped.Points.Where(p => p.Error is null).ToList();
        AnsiConsole.MarkupLine(Markup.Escape($"continuing the curve stopped with {points.Count} points measured ({path})"));
        return (points, stopped.Minutes);
    }

    /// <summary>A balanced draw of <paramref name="size"/> rows; per seed the order is fixed, so the draws of one seed are nested.</summary>
    public static List<TextRow> Draw(IReadOnlyList<TextRow> rows, int size, int seed)
    {
        var labels = rows.Select(r => r.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        var perLabel = Math.Max(1, size / labels.Count);
        var drawn = new List<TextRow>();
        for (var l = 0; l < labels.Count; l++)
        {
            var ofLabel = rows.Where(r => r.Label == labels[l]).ToList();
            var random = new Random(((seed + 1) * 1_000_003) + l);
            var order = ofLabel.Select(_ => random.NextDouble()).ToArray();
            drawn.AddRange(ofLabel.Zip(order).OrderBy(p => p.Second).Take(perLabel).Select(p => p.First));
        }

        // Interleave the labels so a batch is not one label only (training shuffles too).
        return drawn.Select((r, i) => (r, i % perLabel)).OrderBy(p => p.Item2).Select(p => p.r).ToList();
    }

    private static List<Method> CurveMethods(CompareSettings settings, Dataset dataset, IReadOnlyList<TunedSetting> tuned)
    {
        if (settings.MethodsGiven)
        {
            return Methods.All.Where(m => settings.MethodNames.Contains(m.Id)).ToList();
        }

        var family = tuned.Where(t => t.Dataset == dataset.Name && CompareSettings.PromptFamily.Contains(t.Method)).OrderByDescending(t => t.ValidationAccuracy).FirstOrDefault();
        string[] ids = ["ls-llama", family?.Method ?? "prompt", "ltuning-prefix", "sdca"];
        return ids.Select(Methods.ById).ToList();
    }
}
