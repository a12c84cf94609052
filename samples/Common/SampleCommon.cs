// Helpers the console samples share (linked into each sample's project): reading the TSV splits, finding the
// repository, the command line, Spectre.Console training progress, and the macro-F1 ML.NET does not report.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Training;
using Spectre.Console;

namespace LabelTuning.Samples;

/// <summary>One labelled text: the input of the classification pipelines.</summary>
public sealed class TextRow
{
    public string Label { get; set; } = string.Empty;

    public string Text { get; set; } = string.Empty;
}

/// <summary>Reads the committed TSV splits (header <c>Label\tText</c>) and picks balanced subsets.</summary>
public static class TextData
{
    /// <summary>Reads a UTF-8 TSV whose header starts with <paramref name="header"/> and whose rows hold two tab-separated fields.</summary>
    public static List<(string First, string Second)> LoadPairs(string path, string header)
    {
        var rows = new List<(string, string)>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            lineNumber++;
            if (lineNumber == 1)
            {
                if (!line.StartsWith(header, StringComparison.Ordinal))
                {
                    throw new InvalidDataException($"'{path}' must start with the header '{header.Replace("\t", "<TAB>", StringComparison.Ordinal)}' but starts with '{line[..Math.Min(40, line.Length)]}'.");
                }

                continue;
            }

            var tab = line.IndexOf('\t');
            if (tab <= 0)
            {
                throw new InvalidDataException($"Line {lineNumber} of '{path}' has no tab between its two fields.");
            }

            rows.Add((line[..tab], line[(tab + 1)..]));
        }

        return rows;
    }

    /// <summary>Reads a <c>Label\tText</c> TSV.</summary>
    public static List<TextRow> Load(string path)
        => LoadPairs(path, "Label\tText").Select(p => new TextRow { Label = p.First, Text = p.Second }).ToList();

    /// <summary>
    /// The first <paramref name="count"/> / labels rows of each label, in file order (all rows when count is 0), after
    /// skipping the first <paramref name="skipPerLabel"/> rows of each label (to take a second, disjoint subset).
    /// </summary>
    public static List<TextRow> Balanced(IReadOnlyList<TextRow> rows, int count, int skipPerLabel = 0)
    {
        if (skipPerLabel == 0 && (count <= 0 || count >= rows.Count))
        {
            return rows.ToList();
        }

        var labels = rows.Select(r => r.Label).Distinct().ToList();
        var perLabel = count <= 0 ? int.MaxValue : Math.Max(1, count / labels.Count);
        var seen = labels.ToDictionary(l => l, _ => 0);
        var result = new List<TextRow>();
        foreach (var row in rows)
        {
            var index = seen[row.Label]++;
            if (index >= skipPerLabel && index - skipPerLabel < perLabel)
            {
                result.Add(row);
            }
        }

        return result;
    }

    /// <summary>"250 ham, 250 spam".</summary>
    public static string Describe(IEnumerable<TextRow> rows)
        => string.Join(", ", rows.GroupBy(r => r.Label).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Count()} {g.Key}"));
}

/// <summary>Finds the repository root (the folder with Microsoft.ML.LabelTuning.sln) from the working folder or the binaries.</summary>
public static class RepoPaths
{
    public static string? FindRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.LabelTuning.sln")))
                {
                    return dir.FullName;
                }
            }
        }

        return null;
    }

    /// <summary>The path relative to the repository root, with forward slashes (the path itself when there is no root).</summary>
    public static string Relative(string? root, string path) => root is null ? path : Path.GetRelativePath(root, path).Replace('\\', '/');

    /// <summary>Checks that each file exists; prints what is missing and returns false otherwise.</summary>
    public static bool RequireFiles(params (string What, string Path)[] files)
    {
        foreach (var (what, path) in files)
        {
            if (!File.Exists(path))
            {
                Console.Error.WriteLine($"The {what} '{path}' does not exist. Run from the repository (or pass --model/--data); see docs/getting-started.md.");
                return false;
            }
        }

        return true;
    }
}

/// <summary>The folders a single-data-set sample works in: the repository root (if found), the base model, the split and the output.</summary>
public sealed record SampleFolders(string? Root, string Model, string Data, string Out)
{
    /// <summary>
    /// Resolves <c>--model</c>, <c>--data</c> and <c>--out</c> (defaults: the embedded model, <c>data/{dataName}</c> and
    /// <c>artifacts/{outName}</c>), checks that the model config and both splits exist, printing what is missing, and
    /// creates the output folder. Returns null when a file is missing.
    /// </summary>
    public static SampleFolders? Resolve(SampleArgs cli, string dataName, string outName)
    {
        var root = RepoPaths.FindRoot();
        var model = Path.GetFullPath(cli.String("--model") ?? Path.Combine(root ?? ".", "models", "labeltuning-default"));
        var data = Path.GetFullPath(cli.String("--data") ?? Path.Combine(root ?? ".", "data", dataName));
        var output = Path.GetFullPath(cli.String("--out") ?? Path.Combine(root ?? ".", "artifacts", outName));
        if (!RepoPaths.RequireFiles(("model config", Path.Combine(model, "config.json")), ("training data", Path.Combine(data, "train.tsv")), ("test data", Path.Combine(data, "test.tsv"))))
        {
            return null;
        }

        Directory.CreateDirectory(output);
        return new SampleFolders(root, model, data, output);
    }
}

/// <summary>
/// A small command line: <c>--name value</c> options, <c>--flag</c> switches and free arguments. Each sample declares
/// what it accepts, so an unknown or malformed option is an error that names it.
/// </summary>
public sealed class SampleArgs
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    private SampleArgs()
    {
    }

    /// <summary>Free arguments (not options), in order.</summary>
    public List<string> Free { get; } = [];

    /// <summary>True when -h or --help was given.</summary>
    public bool Help { get; private set; }

    /// <summary>Parses <paramref name="args"/>; <paramref name="options"/> take a value, <paramref name="flags"/> do not.</summary>
    public static SampleArgs Parse(string[] args, IReadOnlyCollection<string> options, IReadOnlyCollection<string> flags)
    {
        var parsed = new SampleArgs();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help")
            {
                parsed.Help = true;
            }
            else if (flags.Contains(arg))
            {
                parsed._flags.Add(arg);
            }
            else if (options.Contains(arg))
            {
                if (i + 1 >= args.Length)
                {
                    throw new ArgumentException($"Option '{arg}' needs a value.");
                }

                parsed._values[arg] = args[++i];
            }
            else if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"Unknown option '{arg}'.");
            }
            else
            {
                parsed.Free.Add(arg);
            }
        }

        return parsed;
    }

    public bool Flag(string name) => _flags.Contains(name);

    public string? String(string name) => _values.TryGetValue(name, out var value) ? value : null;

    public int Int(string name, int fallback, int minimum = 0)
    {
        if (!_values.TryGetValue(name, out var value))
        {
            return fallback;
        }

        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < minimum)
        {
            throw new ArgumentException($"{name} must be an integer of at least {minimum} but is '{value}'.");
        }

        return n;
    }

    public double Double(string name, double fallback)
    {
        if (!_values.TryGetValue(name, out var value))
        {
            return fallback;
        }

        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) || !(x > 0) || !double.IsFinite(x))
        {
            throw new ArgumentException($"{name} must be a positive number but is '{value}'.");
        }

        return x;
    }
}

/// <summary>Runs one fit under a Spectre.Console progress bar fed by the trainer's <see cref="TrainingProgress"/> reports.</summary>
public static class TrainingBar
{
    /// <summary>Runs <paramref name="fit"/> with a progress reporter and returns its result, the loss per step and the time it took.</summary>
    public static (T Result, List<(long Step, double Loss)> Curve, TimeSpan Elapsed) Run<T>(string name, Func<IProgress<TrainingProgress>, T> fit)
    {
        var curve = new List<(long Step, double Loss)>();
        T result = default!;
        var clock = Stopwatch.StartNew();
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(name), maxValue: 1);
                var progress = new SyncProgress<TrainingProgress>(p =>
                {
                    if (p.IsValidation)
                    {
                        return;
                    }

                    task.MaxValue = p.TotalSteps;
                    task.Value = p.Step;
                    if (double.IsNaN(p.Loss))
                    {
                        // The report before the first step (its planned time): no loss yet.
                        task.Description = Markup.Escape($"{name} epoch {p.Epoch}/{p.Epochs} starting");
                        return;
                    }

                    curve.Add((p.Step, p.Loss));
                    var recent = curve.TakeLast(10).Average(c => c.Loss);
                    task.Description = Markup.Escape($"{name} epoch {p.Epoch}/{p.Epochs} loss {recent:F3} {p.TokensPerSecond:F0} tok/s");
                });
                result = fit(progress);
                task.Value = task.MaxValue;
            });
        clock.Stop();
        return (result, curve, clock.Elapsed);
    }
}

/// <summary>An IProgress that reports on the training thread (Progress&lt;T&gt; would post to the thread pool).</summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

/// <summary>Figures ML.NET's metrics do not carry.</summary>
public static class MetricsExtras
{
    /// <summary>The mean over classes of F1 = 2PR / (P + R).</summary>
    public static double MacroF1(this MulticlassClassificationMetrics metrics)
        => metrics.ConfusionMatrix.PerClassPrecision
            .Zip(metrics.ConfusionMatrix.PerClassRecall, (p, r) => p + r > 0 ? 2 * p * r / (p + r) : 0)
            .Average();

    /// <summary>A confusion matrix as a Spectre table (rows: true label, columns: predicted), with per-class recall.</summary>
    public static Table ConfusionTable(ConfusionMatrix matrix, IReadOnlyList<string> names)
    {
        var table = new Table().Title("confusion matrix (rows: true label, columns: predicted)").AddColumn("");
        foreach (var name in names)
        {
            table.AddColumn(new TableColumn(Markup.Escape(name)).RightAligned());
        }

        table.AddColumn(new TableColumn("recall").RightAligned());
        var counts = matrix.Counts;
        for (var i = 0; i < counts.Count; i++)
        {
            var cells = new List<string> { Markup.Escape(names[i]) };
            cells.AddRange(counts[i].Select((c, j) => i == j ? $"[green]{c:F0}[/]" : $"{c:F0}"));
            cells.Add($"{matrix.PerClassRecall[i]:P1}");
            table.AddRow(cells.ToArray());
        }

        return table;
    }
}
