using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Reporting;

namespace Compare;

/// <summary>All methods' results on one data set.</summary>
internal sealed record DatasetRun(Dataset Dataset, int TrainRows, int TestRows, IReadOnlyList<MethodResult> Results)
{
    /// <summary>Gets the tokens per text the run cut inputs to (0: the report's <see cref="CompareSettings.MaxLength"/>).</summary>
    public int MaxLength { get; init; }
}

/// <summary>Describes the machine the timings come from.</summary>
internal static class MachineInfo
{
    public static string Describe()
    {
        var cpu = "unknown CPU";
        if (File.Exists("/proc/cpuinfo"))
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            if (line is not null)
            {
                cpu = line[(line.IndexOf(':') + 1)..].Trim();
            }
        }

        var memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024.0 * 1024 * 1024);
        return $"{cpu}, {Environment.ProcessorCount} cores, {memory:F0} GB, {RuntimeInformation.OSDescription}, .NET {Environment.Version}, {Microsoft.ML.LabelTuning.Runtime.TorchRuntime.Threads} torch threads, CPU fp32";
    }

    /// <summary>The 1-, 5- and 15-minute load averages (Linux), or "n/a".</summary>
    public static string LoadAverage()
        => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}

/// <summary>Writes the comparison as Markdown, JSON and a bar chart.</summary>
internal sealed class ResultsReport(CompareSettings settings, string machine, string loadBefore, string loadAfter, string model, TimeSpan elapsed, IReadOnlyList<DatasetRun> runs, DateTime written)
{
    private static readonly Dictionary<string, double> _chance = new() { ["imdb"] = 0.5, ["spam"] = 0.5, ["austen"] = 1.0 / 6 };

    /// <summary>Gets the learning rates and epochs chosen on validation rows (empty: every method ran untuned).</summary>
    public IReadOnlyList<TunedSetting> Tuned { get; init; } = [];

    /// <summary>Gets the learning curve a <c>--curve</c> run wrote, or null.</summary>
    public CurveReport? Curve { get; init; }

    /// <summary>Gets the settings the run had (those results.json records, when read back).</summary>
    public CompareSettings Settings => settings;

    /// <summary>Gets the base model's path, relative to the repository as the report writes it.</summary>
    public string Model => model;

    public void WriteMarkdown(string path, string chartFile)
    {
        var md = new StringBuilder();
        var mode = settings.Quick ? "quick" : "full";
        md.AppendLine("# Results: every method on every data set");
        md.AppendLine();
        md.AppendLine($"Written by `samples/Compare` ({mode} mode) on {written:yyyy-MM-dd HH:mm} UTC. Rerun with");
        md.AppendLine($"`dotnet run --project samples/Compare -c Release{(settings.Quick ? " -- --quick" : string.Empty)}`; `--model <folder>` runs the same comparison on another base model.");
        if (!settings.Quick)
        {
            md.AppendLine($"A stopped run continues from `{PartialRun.FileName}` when started again with the same settings; the minutes below include its stopped parts.");
        }

        md.AppendLine();
        if (settings.Quick)
        {
            md.AppendLine("> **Quick mode: a smoke run, not a benchmark.** Each method saw a small subsample for one epoch on short inputs, so");
            md.AppendLine("> the accuracies below say little about what the methods can do; full mode (`samples/Compare` without `--quick`)");
            md.AppendLine("> trains longer on more rows.");
            md.AppendLine();
        }

        md.AppendLine("## Setup");
        md.AppendLine();
        md.AppendLine($"- **Machine:** {machine}. Load average {loadBefore} at the start and {loadAfter} at the end (1, 5, 15 min):");
        md.AppendLine("  a load above the core count means other jobs shared the cores, so the times are longer, and the rows/s lower, than on an idle");
        md.AppendLine("  machine. Compare times within one table, not across runs.");
        md.AppendLine($"- **Base model:** `{model}`, frozen except for each method's trained parameters.");
        md.AppendLine($"- **Sizes:** {string.Join("; ", runs.Select(r => $"{r.Dataset.Name} {r.TrainRows} training rows and {r.TestRows} test rows"))}, balanced across labels, taken in file order from the committed splits in `data/`.");
        md.AppendLine(Tuned.Count == 0
            ? $"- **Training:** {settings.Epochs} epoch(s) at each method's default learning rate (nothing tuned), batch {settings.BatchSize}, inputs cut to the first {Lengths()} tokens (BOS and EOS included), seed {settings.Seed}, AdamW with 10% warm-up and linear decay."
            : $"- **Training:** batch {settings.BatchSize}, inputs cut to the first {Lengths()} tokens (BOS and EOS included), seed {settings.Seed}, AdamW with 10% warm-up and linear decay. " +
              "**Learning rate and epochs per method and data set were chosen on validation rows, never on test rows** " +
              $"(`--tune`: the last {Tuned.Max(t => t.ValidationRows)} rows, balanced, of each data set's train.tsv held out; a successive-halving `LabelTuningExperiment` per method " +
              "over the learning rate within 4x of the default and the epochs; see the table below and `docs/tuned-settings.json`), then trained on all the training rows." +
              CarriedOver());
        md.AppendLine($"- **Total time:** {elapsed.TotalMinutes:F1} min.");
        md.AppendLine("- **Columns:** accuracy ± its standard error (binomial, sqrt(p(1-p)/n) over the test rows) and macro-F1 (mean of the per-class F1) on the test rows;");
        md.AppendLine("  the learning rate and epochs the run used; training time (wall clock, model loading included);");
        md.AppendLine("  trained parameters (for SDCA: features × classes + biases); scoring rows/s (wall clock of `Transform` + `Evaluate` over the test rows).");
        md.AppendLine();
        md.AppendLine("| method | settings |");
        md.AppendLine("|---|---|");
        foreach (var method in Methods.All.Where(m => settings.MethodNames.Contains(m.Id)))
        {
            md.AppendLine($"| {method.Name} | {method.Settings} |");
        }

        md.AppendLine();
        foreach (var run in runs)
        {
            md.AppendLine($"## {run.Dataset.Name}: {run.Dataset.Task}");
            md.AppendLine();
            md.AppendLine($"{run.TrainRows} training rows, {run.TestRows} test rows, inputs cut to {LengthOf(run)} tokens; always guessing one class scores {_chance.GetValueOrDefault(run.Dataset.Name, double.NaN):P1}.");
            md.AppendLine();
            md.AppendLine("| method | accuracy | macro-F1 | lr, epochs | training time | trained parameters | scoring rows/s |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            var best = run.Results.Where(r => r.Error is null).Select(r => r.Accuracy).DefaultIfEmpty(double.NaN).Max();
            foreach (var r in run.Results)
            {
                if (r.Error is not null)
                {
                    md.AppendLine($"| {r.Method} | failed | | | | | {r.Error.Replace("|", "\\|", StringComparison.Ordinal).ReplaceLineEndings(" ")} |");
                    continue;
                }

                var accuracy = string.Create(CultureInfo.InvariantCulture, $"{r.Accuracy:P1} ± {100 * r.StandardError(run.TestRows):F1}");
                var budget = double.IsFinite(r.LearningRate) ? string.Create(CultureInfo.InvariantCulture, $"{r.LearningRate:G3}, {r.Epochs}") : "—";
                md.AppendLine($"| {r.Method} | {(r.Accuracy == best ? $"**{accuracy}**" : accuracy)} | {r.MacroF1:P1} | {budget} | {r.TrainSeconds:F0} s | {r.TrainableParameters:N0} | {r.RowsPerSecond:F0} |");
            }

            md.AppendLine();
            md.AppendLine(Verdict(run));
            md.AppendLine();
        }

        if (Tuned.Count > 0)
        {
            md.AppendLine("## Settings chosen on validation rows");
            md.AppendLine();
            md.AppendLine("| data set | method | learning rate | epochs | validation accuracy | tokens | fit rows | validation rows | trials | tuning time |");
            md.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var t in Tuned.OrderBy(t => Array.IndexOf(CompareSettings.AllDatasets, t.Dataset)).ThenBy(t => Array.IndexOf(CompareSettings.AllMethods, t.Method)))
            {
                md.AppendLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {t.Dataset} | {Methods.ById(t.Method).Name} | {t.LearningRate:G3} | {t.Epochs} | {t.ValidationAccuracy:P1} ± {100 * t.ValidationStandardError:F1} | {(t.MaxLength > 0 ? t.MaxLength : settings.MaxLength)} | {t.FitRows} | {t.ValidationRows} | {t.Trials} | {t.Seconds:F0} s |"));
            }

            md.AppendLine();
        }

        if (Curve is not null)
        {
            Curve.WriteMarkdown(md);
        }

        md.AppendLine("## Accuracy at a glance");
        md.AppendLine();
        md.AppendLine($"![Test accuracy of every method on every data set]({chartFile})");
        md.AppendLine();
        md.AppendLine("## Reading these numbers");
        md.AppendLine();
        md.AppendLine("- The embedded default model is a 4-layer, 256-wide LLaMA (7M parameters) pretrained on CPUs on the training text of");
        md.AppendLine("  these data sets only ([model card](models/labeltuning-default.md)). The methods that keep it frozen (prompt tuning, DePT,");
        md.AppendLine("  prefix tuning and the L-Tuning rows) can use only what its hidden states already hold; LS-LLaMA's LoRA changes every layer.");
        md.AppendLine("- The L-Tuning rows use the Matching head (the default; see [l-tuning.md](methods/l-tuning.md)). With the paper's true/false");
        md.AppendLine("  head alone, L-Tuning stays at chance on IMDB with this model: the frozen model relates a text to a label too weakly.");
        md.AppendLine("- L-Tuning prompt, after: the label prompt follows the text, so scoring runs each text once and reuses its key/value cache");
        md.AppendLine("  for every label; its rows set the accuracy of that placement against the paper's (before the text).");
        md.AppendLine("- The classical pipeline reads whole texts; the LLaMA methods read only the first tokens. Word and character n-grams are strong on these");
        md.AppendLine("  word-driven tasks (spam words, sentiment words, character names in Austen), so where a row says the baseline wins, it does.");
        md.AppendLine("- L-Tuning scores each text against every label (K passes per text, or one batch of B·K rows), so its scoring rows/s fall");
        md.AppendLine("  with the number of classes; its training pairs each text with one false label, which doubles the work per row.");
        md.AppendLine("- For real accuracy, run the same comparison on a real pretrained model: `--model /path/to/TinyLlama-1.1B` (any Hugging Face");
        md.AppendLine("  LLaMA-family folder).");
        md.AppendLine();
        md.AppendLine("## Other results");
        md.AppendLine();
        md.AppendLine("- The README main job (`samples/Sentiment`): its measured output is in [getting-started.md](getting-started.md).");
        md.AppendLine("- GPTA (an LLM writes the input prefix) against no prefix and a hand-written prefix: [results-gpta.md](results-gpta.md).");
        md.AppendLine("- The sweep over methods: [sweep.md](sweep.md).");
        File.WriteAllText(path, md.ToString());
    }

    public void WriteChart(string path)
    {
        var methods = runs.SelectMany(r => r.Results.Select(m => m.Method)).Distinct().ToList();
        var chart = new BarChart(methods)
        {
            Title = $"Test accuracy per method ({(settings.Quick ? "quick mode: subsamples, 1 epoch" : Tuned.Count > 0 ? "settings chosen on validation rows" : $"{settings.Epochs} epochs")}, embedded default model)",
            YLabel = "accuracy",
            ValueFormat = "P0",
            YMin = 0,
            YMax = 1.25, // head room: the legend sits in the top right corner
            Width = 1100,
        };
        foreach (var run in runs)
        {
            chart.AddSeries(run.Dataset.Name, methods.Select(m => run.Results.FirstOrDefault(r => r.Method == m)?.Accuracy ?? double.NaN).ToArray());
        }

        chart.Save(path);
    }

    /// <summary>Gets the time the run took (for a continued run, its stopped parts included).</summary>
    public TimeSpan Elapsed => elapsed;

    /// <summary>Gets when the report was written.</summary>
    public DateTime Written => written;

    /// <summary>Gets the tokens per text of a data set's run.</summary>
    public int LengthOf(DatasetRun run) => run.MaxLength > 0 ? run.MaxLength : settings.MaxLength;

    /// <summary>Says where settings tuned at one sequence length were used at another (empty where none were).</summary>
    private string CarriedOver()
    {
        var carried = runs.SelectMany(r => Tuned.Where(t => t.Dataset == r.Dataset.Name && t.MaxLength > 0 && t.MaxLength != LengthOf(r))
                .Select(t => (Run: r, t.MaxLength)))
            .DistinctBy(x => (x.Run.Dataset.Name, x.MaxLength))
            .Select(x => $"{x.Run.Dataset.Name}'s were chosen at {x.MaxLength} tokens and used at {LengthOf(x.Run)}")
            .ToList();
        return carried.Count == 0 ? string.Empty : $" Not tuned again at this run's lengths: {string.Join("; ", carried)}.";
    }

    /// <summary>Gets the tokens per text as the setup states them: one number, or one per data set where they differ.</summary>
    private string Lengths()
        => runs.Select(LengthOf).Distinct().Count() <= 1
            ? $"{(runs.Count > 0 ? LengthOf(runs[0]) : settings.MaxLength)}"
            : string.Join(", ", runs.Select(r => $"{LengthOf(r)} ({r.Dataset.Name})"));

    /// <summary>Gets the runs, per data set.</summary>
    public IReadOnlyList<DatasetRun> Runs => runs;

    /// <summary>Gets the key of a run in progress (<see cref="PartialRun"/>); null in a finished report.</summary>
    public string? ResumeKey { get; init; }

    public void WriteJson(string path)
    {
        var json = JsonSerializer.Serialize(new
        {
            mode = settings.Quick ? "quick" : "full",
            resume_key = ResumeKey,
            written_utc = written,
            machine,
            load_average_start = loadBefore,
            load_average_end = loadAfter,
            model,
            epochs = settings.Epochs,
            batch = settings.BatchSize,
            max_length = settings.MaxLength,
            seed = settings.Seed,
            minutes = elapsed.TotalMinutes,
            tuned_on_validation_rows = Tuned.Select(t => new { dataset = t.Dataset, method = t.Method, learning_rate = t.LearningRate, epochs = t.Epochs, validation_accuracy = t.ValidationAccuracy, validation_standard_error = t.ValidationStandardError, fit_rows = t.FitRows, validation_rows = t.ValidationRows, trials = t.Trials, seconds = t.Seconds, max_length = t.MaxLength > 0 ? t.MaxLength : settings.MaxLength }),
            datasets = runs.Select(r => new
            {
                name = r.Dataset.Name,
                max_length = LengthOf(r),
                train_rows = r.TrainRows,
                test_rows = r.TestRows,
                results = r.Results.Select(m => new
                {
                    method = m.Method,
                    accuracy = double.IsFinite(m.Accuracy) ? m.Accuracy : (double?)null,
                    standard_error = double.IsFinite(m.StandardError(r.TestRows)) ? m.StandardError(r.TestRows) : (double?)null,
                    learning_rate = double.IsFinite(m.LearningRate) ? m.LearningRate : (double?)null,
                    epochs = m.Epochs,
                    macro_f1 = double.IsFinite(m.MacroF1) ? m.MacroF1 : (double?)null,
                    train_seconds = double.IsFinite(m.TrainSeconds) ? m.TrainSeconds : (double?)null,
                    trainable_parameters = m.TrainableParameters,
                    scoring_rows_per_s = double.IsFinite(m.RowsPerSecond) ? m.RowsPerSecond : (double?)null,
                    error = m.Error,
                }),
            }),
        }, new JsonSerializerOptions { WriteIndented = true });
        var temp = path + ".tmp";
        File.WriteAllText(temp, json);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Rebuilds a report from the results.json an earlier run wrote (to re-render results.md and the chart).</summary>
    public static ResultsReport FromJson(string path)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var root = document.RootElement;
        var settings = CompareSettings.ForReport(
            root.GetProperty("mode").GetString() == "quick",
            root.GetProperty("epochs").GetInt32(),
            root.GetProperty("batch").GetInt32(),
            root.GetProperty("max_length").GetInt32(),
            root.GetProperty("seed").GetInt32(),
            root.GetProperty("datasets").EnumerateArray().Select(d => d.GetProperty("name").GetString()!).ToArray(),
            root.GetProperty("datasets").EnumerateArray().SelectMany(d => d.GetProperty("results").EnumerateArray().Select(r => r.GetProperty("method").GetString()!))
                .Distinct().Select(name => Methods.All.Single(m => m.Name == name).Id).ToArray());
        var runs = root.GetProperty("datasets").EnumerateArray().Select(d => new DatasetRun(
            Datasets.All.Single(x => x.Name == d.GetProperty("name").GetString()),
            d.GetProperty("train_rows").GetInt32(),
            d.GetProperty("test_rows").GetInt32(),
            d.GetProperty("results").EnumerateArray().Select(r => new MethodResult(
                r.GetProperty("method").GetString()!,
                Number(r, "accuracy"),
                Number(r, "macro_f1"),
                Number(r, "train_seconds"),
                r.GetProperty("trainable_parameters").GetInt64(),
                Number(r, "scoring_rows_per_s"),
                r.GetProperty("error").GetString())
            {
                LearningRate = r.TryGetProperty("learning_rate", out _) ? Number(r, "learning_rate") : double.NaN,
                Epochs = r.TryGetProperty("epochs", out var e) && e.ValueKind == JsonValueKind.Number ? e.GetInt32() : 0,
            }).ToList())
        {
            MaxLength = d.TryGetProperty("max_length", out var length) && length.ValueKind == JsonValueKind.Number ? length.GetInt32() : root.GetProperty("max_length").GetInt32(),
        }).ToList();
        var tuned = root.TryGetProperty("tuned_on_validation_rows", out var t)
            ? t.EnumerateArray().Select(x => new TunedSetting(x.GetProperty("dataset").GetString()!, x.GetProperty("method").GetString()!, x.GetProperty("learning_rate").GetDouble(),
                x.GetProperty("epochs").GetInt32(), x.GetProperty("validation_accuracy").GetDouble(), x.GetProperty("validation_standard_error").GetDouble(),
                x.GetProperty("fit_rows").GetInt32(), x.GetProperty("validation_rows").GetInt32(), x.GetProperty("trials").GetInt32(), x.GetProperty("seconds").GetDouble(),
                x.TryGetProperty("max_length", out var tokens) ? tokens.GetInt32() : root.GetProperty("max_length").GetInt32())).ToList()
            : [];
        return new ResultsReport(settings, root.GetProperty("machine").GetString()!, root.GetProperty("load_average_start").GetString()!,
            root.GetProperty("load_average_end").GetString()!, root.GetProperty("model").GetString()!, TimeSpan.FromMinutes(root.GetProperty("minutes").GetDouble()), runs,
            root.TryGetProperty("written_utc", out var written) ? written.GetDateTime() : File.GetLastWriteTimeUtc(path))
        {
            Tuned = tuned,
            Curve = LearningCurve.TryRead(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "learning-curve.json")),
        };

        static double Number(JsonElement e, string name) => e.GetProperty(name).ValueKind == JsonValueKind.Number ? e.GetProperty(name).GetDouble() : double.NaN;
    }

    /// <summary>One honest sentence per data set: does the best LLaMA method beat the classical baseline?</summary>
    private static string Verdict(DatasetRun run)
    {
        var baseline = run.Results.FirstOrDefault(r => r.Method == "ML.NET SDCA" && r.Error is null);
        var tuned = run.Results.Where(r => r.Method != "ML.NET SDCA" && r.Error is null).OrderByDescending(r => r.Accuracy).ToList();
        if (baseline is null || tuned.Count == 0)
        {
            return "No comparison with the classical baseline: one side did not run.";
        }

        var top = tuned[0];
        var chance = _chance.GetValueOrDefault(run.Dataset.Name, double.NaN);
        var nearChance = tuned.Where(r => r.Accuracy < chance + 0.05).Select(r => r.Method).ToList();
        var diff = top.Accuracy - baseline.Accuracy;
        var se = Math.Sqrt((top.StandardError(run.TestRows) * top.StandardError(run.TestRows)) + (baseline.StandardError(run.TestRows) * baseline.StandardError(run.TestRows)));
        var margin = string.Create(CultureInfo.InvariantCulture, $"{100 * diff:+0.0;-0.0} points, standard error of the difference {100 * se:F1}");
        var text = diff > 2 * se
            ? $"**{top.Method} beats the classical baseline here** ({top.Accuracy:P1} against {baseline.Accuracy:P1}: {margin})."
            : diff > 0
            ? $"**{top.Method} is ahead of the classical baseline, within noise** ({top.Accuracy:P1} against {baseline.Accuracy:P1}: {margin})."
            : diff == 0
            ? $"**A tie:** {top.Method} and ML.NET SDCA both score {top.Accuracy:P1}; SDCA trains in {baseline.TrainSeconds:F0} s against {top.TrainSeconds:F0} s."
            : $"**The classical baseline wins here:** ML.NET SDCA {baseline.Accuracy:P1}, the best LLaMA method ({top.Method}) {top.Accuracy:P1} ({margin}), " +
              $"and SDCA trains in {baseline.TrainSeconds:F0} s against {top.TrainSeconds:F0} s.";
        if (nearChance.Count > 0)
        {
            text += $" Within 5 points of chance: {string.Join(", ", nearChance)}.";
        }

        return text;
    }
}
