// Every tuning method of the library, and ML.NET's classical text pipeline, on the held-out split of each committed
// data set (IMDB, spam, Austen). Writes docs/results.md (one table per data set) and docs/results.png.
// Run: dotnet run --project samples/Compare -c Release -- --quick     (a smoke run: subsamples, 1 epoch)
//      dotnet run --project samples/Compare -c Release -- --tune      (choose settings on validation rows, then full mode)
//      dotnet run --project samples/Compare -c Release                (full mode with the settings docs/tuned-settings.json holds)
//      dotnet run --project samples/Compare -c Release -- --curve     (the learning curve: accuracy against training rows)
using System.Diagnostics;
using System.Globalization;
using Compare;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.LabelTuning.Runtime;
using Spectre.Console;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
CompareSettings settings;
try
{
    settings = CompareSettings.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(CompareSettings.Usage);
    return 2;
}

if (settings.Help)
{
    Console.WriteLine(CompareSettings.Usage);
    return 0;
}

var total = Stopwatch.StartNew();
var root = RepoPaths.FindRoot();
if (settings.FromJson is { } json)
{
    var folder = Path.GetFullPath(settings.OutPath ?? Path.GetDirectoryName(Path.GetFullPath(json))!);
    var earlier = ResultsReport.FromJson(json);
    earlier.WriteChart(Path.Combine(folder, "results.png"));
    earlier.WriteMarkdown(Path.Combine(folder, "results.md"), "results.png");
    earlier.Curve?.WriteChart(Path.Combine(folder, "results-learning-curve.png"));
    Console.WriteLine($"Rewrote results.md and results.png{(earlier.Curve is null ? string.Empty : " and results-learning-curve.png")} in {folder} from {json}.");
    return 0;
}

var modelPath = Path.GetFullPath(settings.ModelPath ?? Path.Combine(root ?? ".", "models", "labeltuning-default"));
var dataRoot = Path.GetFullPath(settings.DataRoot ?? Path.Combine(root ?? ".", "data"));
var outPath = Path.GetFullPath(settings.OutPath ?? Path.Combine(root ?? ".", "docs"));
var datasets = Datasets.All.Where(d => settings.DatasetNames.Contains(d.Name)).ToList();
var files = new List<(string, string)> { ("model config", Path.Combine(modelPath, "config.json")) };
files.AddRange(datasets.SelectMany(d => new[] { ($"{d.Name} training data", Path.Combine(dataRoot, d.Folder, "train.tsv")), ($"{d.Name} test data", Path.Combine(dataRoot, d.Folder, "test.tsv")) }));
if (!RepoPaths.RequireFiles(files.ToArray()))
{
    return 1;
}

TorchRuntime.EnsureInitialized();
Directory.CreateDirectory(outPath);
var tunedPath = Path.GetFullPath(settings.TunedPath ?? Path.Combine(outPath, "tuned-settings.json"));
if (settings.Curve)
{
    return LearningCurve.Run(settings, root, modelPath, dataRoot, outPath, tunedPath, datasets);
}

var machine = MachineInfo.Describe();
var loadBefore = MachineInfo.LoadAverage();
AnsiConsole.Write(new Rule($"[bold]Microsoft.ML.LabelTuning: every method on every data set ({(settings.Quick ? "quick" : "full")} mode)[/]").LeftJustified());
AnsiConsole.MarkupLine(Markup.Escape($"base model {RepoPaths.Relative(root, modelPath)}; {machine}; load average {loadBefore}"));
AnsiConsole.WriteLine();

var tuned = new List<TunedSetting>();
if (settings.Tune)
{
    AnsiConsole.Write(new Rule("[bold]Tuning: learning rate and epochs per method, on validation rows held out from train.tsv[/]").LeftJustified());

    // Settings tuned earlier for this model stay in the file (other data sets or methods), and a stopped run continues:
    // each choice is written as soon as it is made.
    // Each setting records the sequence length it was tuned at (one at another length is tuned again); the file records
    // one set of epoch rungs for all, so a run under other rungs starts afresh.
    var earlier = File.Exists(tunedPath) && !settings.Quick ? TryLoad(tunedPath, modelPath) : null;
    if (earlier is not null && !earlier.EpochRungs.SequenceEqual(settings.TuneEpochs))
    {
        AnsiConsole.MarkupLine(Markup.Escape($"{RepoPaths.Relative(root, tunedPath)} was tuned with epoch rungs {string.Join(',', earlier.EpochRungs)}; this run replaces it."));
        earlier = null;
    }

    var written = earlier?.Settings.ToList() ?? [];
    foreach (var dataset in datasets)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"{dataset.Name}:"));
        var trainRows = TextData.Balanced(TextData.Load(Path.Combine(dataRoot, dataset.Folder, "train.tsv")), settings.TrainSize);
        Tuning.Run(settings, modelPath, dataset, trainRows, earlier, setting =>
        {
            written.RemoveAll(w => w.Dataset == setting.Dataset && w.Method == setting.Method);
            written.Add(setting);
            Tuning.Save(tunedPath, modelPath, settings, written);
        });
    }

    tuned = written;
    Tuning.Save(tunedPath, modelPath, settings, tuned);
    AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(RepoPaths.Relative(root, tunedPath))}[/].");
    AnsiConsole.WriteLine();
    if (settings.TuneOnly)
    {
        return 0;
    }
}
else if (!settings.Untuned && !settings.Quick && File.Exists(tunedPath))
{
    tuned = Tuning.Load(tunedPath, modelPath);
    AnsiConsole.MarkupLine(Markup.Escape($"learning rates and epochs from {RepoPaths.Relative(root, tunedPath)} (chosen on validation rows; --untuned ignores them)"));
}

var partialPath = Path.Combine(outPath, PartialRun.FileName);
var resumeKey = settings.Quick ? null : PartialRun.Key(settings, modelPath);
string LegacyKey(IReadOnlyList<TunedSetting> listed) => PartialRun.LegacyKey(settings, modelPath, listed);
void Say(string message) => AnsiConsole.MarkupLine(Markup.Escape(message));
var (stopped, stoppedElapsed) = resumeKey is null ? ([], TimeSpan.Zero) : PartialRun.Read(partialPath, resumeKey, Say, LegacyKey);
if (resumeKey is not null && stopped.Count == 0 && settings.KeepUnchanged)
{
    // A finished run's results, kept where nothing that decides them changed: after tuning one method again, only it runs.
    (stopped, stoppedElapsed) = PartialRun.Read(Path.Combine(outPath, "results.json"), resumeKey, Say, LegacyKey, (settings, RepoPaths.Relative(root, modelPath)));
}

var runs = new List<DatasetRun>();
foreach (var dataset in datasets)
{
    var ml = new MLContext(seed: settings.Seed);
    var trainRows = TextData.Balanced(TextData.Load(Path.Combine(dataRoot, dataset.Folder, "train.tsv")), settings.TrainSize);
    var testRows = TextData.Balanced(TextData.Load(Path.Combine(dataRoot, dataset.Folder, "test.tsv")), settings.TestSize);
    var plan = new RunPlan(ml, modelPath, trainRows, testRows, dataset, settings);
    AnsiConsole.Write(new Rule(Markup.Escape($"{dataset.Name}: {trainRows.Count} training rows ({TextData.Describe(trainRows)}), {testRows.Count} test rows")).LeftJustified());
    var results = new List<MethodResult>();
    var maxLength = settings.MaxLengthFor(dataset);
    // Results measured at another sequence length are not kept (the classical baseline's either: it is re-run in seconds).
    var earlier = stopped.FirstOrDefault(r => r.Dataset.Name == dataset.Name && r.TrainRows == trainRows.Count && r.TestRows == testRows.Count
        && (r.MaxLength > 0 ? r.MaxLength : settings.MaxLength) == maxLength)?.Results ?? [];
    foreach (var method in Methods.All.Where(m => settings.MethodNames.Contains(m.Id)))
    {
        var tunedFor = tuned.FirstOrDefault(t => t.Dataset == dataset.Name && t.Method == method.Id);
        var kept = earlier.FirstOrDefault(r => r.Method == method.Name && PartialRun.SameBudget(r, Methods.Budget(method, plan, tunedFor)));
        var result = kept ?? method.Run(plan, tunedFor);
        results.Add(result);
        AnsiConsole.MarkupLine(result.Error is null
            ? Markup.Escape($"  {result.Method}: accuracy {result.Accuracy:P1} ± {result.StandardError(testRows.Count):P1}, macro-F1 {result.MacroF1:P1}, train {result.TrainSeconds:F0} s, {result.TrainableParameters:N0} trained parameters, {result.RowsPerSecond:F0} rows/s{(kept is null ? string.Empty : " (measured by the earlier run with the same settings; kept)")}")
            : $"  [red]{Markup.Escape($"{result.Method} failed: {result.Error}")}[/]");
        if (resumeKey is not null)
        {
            // The progress so far, so that a stopped run continues from here.
            var soFar = runs.Append(new DatasetRun(dataset, trainRows.Count, testRows.Count, results.ToList()) { MaxLength = maxLength }).ToList();
            new ResultsReport(settings, machine, loadBefore, MachineInfo.LoadAverage(), RepoPaths.Relative(root, modelPath), stoppedElapsed + total.Elapsed, soFar, DateTime.UtcNow) { Tuned = tuned, ResumeKey = resumeKey }
                .WriteJson(partialPath);
        }
    }

    runs.Add(new DatasetRun(dataset, trainRows.Count, testRows.Count, results) { MaxLength = maxLength });
    AnsiConsole.WriteLine();
}

var report = new ResultsReport(settings, machine, loadBefore, MachineInfo.LoadAverage(), RepoPaths.Relative(root, modelPath), stoppedElapsed + total.Elapsed, runs, DateTime.UtcNow)
{
    Tuned = tuned,
    Curve = LearningCurve.TryRead(Path.Combine(outPath, "learning-curve.json")),
    ResumeKey = resumeKey, // so that --keep-unchanged can take these results later
};
var markdown = Path.Combine(outPath, "results.md");
var chart = Path.Combine(outPath, "results.png");
report.WriteChart(chart);
report.WriteMarkdown(markdown, Path.GetFileName(chart));
report.WriteJson(Path.Combine(outPath, "results.json"));
File.Delete(partialPath);
AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(RepoPaths.Relative(root, markdown))}[/] and [blue]{Markup.Escape(RepoPaths.Relative(root, chart))}[/] in {total.Elapsed.TotalMinutes:F1} min.");
return runs.SelectMany(r => r.Results).Any(r => r.Error is not null) ? 1 : 0;

static TunedFile? TryLoad(string path, string modelPath)
{
    try
    {
        return Tuning.LoadFile(path, modelPath);
    }
    catch (InvalidOperationException)
    {
        // Settings for another base model are replaced, not merged.
        return null;
    }
}
