// Which tuning method suits this data, with which settings? A sweep over LS-LLaMA, prompt tuning (and DePT), prefix
// tuning and L-Tuning on real spam/ham e-mails, with successive halving over epochs, in about 5 minutes on 2 CPU cores.
// Run: dotnet run --project samples/Sweep        (again to resume; --fresh to start over)
using System.Diagnostics;
using System.Globalization;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Sweep;
using Spectre.Console;
using SweepSample;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
SweepSettings settings;
try
{
    settings = SweepSettings.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(SweepSettings.Usage);
    return 2;
}

if (settings.Help)
{
    Console.WriteLine(SweepSettings.Usage);
    return 0;
}

var total = Stopwatch.StartNew();
var folders = SampleFolders.Resolve(settings.Cli, dataName: "spam", outName: "sweep");
if (folders is null)
{
    return 1;
}

var (root, modelPath, dataPath, outPath) = (folders.Root, folders.Model, folders.Data, folders.Out);
TorchRuntime.EnsureInitialized();
var checkpoint = Path.Combine(outPath, "checkpoint");
if (settings.Fresh && Directory.Exists(checkpoint))
{
    Directory.Delete(checkpoint, recursive: true);
}

Directory.CreateDirectory(outPath);
var ml = new MLContext(seed: settings.Seed);
var allTest = TextData.Load(Path.Combine(dataPath, "test.tsv"));
var trainRows = TextData.Balanced(TextData.Load(Path.Combine(dataPath, "train.tsv")), settings.TrainSize);
var validRows = TextData.Balanced(allTest, settings.ValidSize);
var testRows = settings.TestSize == 0 ? [] : TextData.Balanced(allTest, settings.TestSize, skipPerLabel: validRows.Count == 0 ? 0 : validRows.GroupBy(r => r.Label).Max(g => g.Count()));

// The search space: every method the library has, with the ranges each method registers with its descriptor. The
// default model is small, so LS-LLaMA's learning-rate range moves up from its 1e-4 default, as the Sentiment sample's.
var space = settings.Methods.Count > 0 ? LabelTuningSearchSpace.For([.. settings.Methods]) : LabelTuningSearchSpace.Default();
if (space.Methods.Any(m => m.Method == TuningMethod.LabelSupervised))
{
    space[TuningMethod.LabelSupervised].SetRange("LearningRate", 3e-4, 3e-3, init: 1e-3, logBase: true);
}

var experiment = new LabelTuningExperiment(ml, new LabelTuningExperimentSettings
{
    ModelPath = modelPath,
    MaxSequenceLength = settings.MaxLength,
    BatchSize = settings.BatchSize,
    Seed = settings.Seed,
})
    .SetDataset(ml.Data.LoadFromEnumerable(trainRows), ml.Data.LoadFromEnumerable(validRows))
    .SetSearchSpace(space)
    .SetMetric(settings.Metric)
    .SetTrainingTimeInSeconds(settings.Seconds)
    .SetCheckpointFolder(checkpoint);
if (settings.Trials > 0)
{
    experiment.SetMaxTrials(settings.Trials);
}

if (settings.Halving)
{
    experiment.SetSuccessiveHalvingTuner(minEpochs: 1, maxEpochs: 3, eta: 3);
}
else
{
    experiment.SetRandomSearchTuner();
}

AnsiConsole.Write(new Rule("[bold]Microsoft.ML.LabelTuning: a sweep over tuning methods[/]").LeftJustified());
var setup = new Table().HideHeaders().Border(TableBorder.None).AddColumn("").AddColumn("");
setup.AddRow("base model", Markup.Escape(RepoPaths.Relative(root, modelPath)));
setup.AddRow("data", Markup.Escape($"{RepoPaths.Relative(root, dataPath)}: {trainRows.Count} training ({TextData.Describe(trainRows)}), {validRows.Count} validation, {testRows.Count} test rows"));
setup.AddRow("methods", Markup.Escape(string.Join(", ", space.Methods.Select(m => m.Method))));
setup.AddRow("tuner", settings.Halving ? "successive halving: 1 epoch, the best third goes on to 3" : "random search");
setup.AddRow("budget", Markup.Escape($"{settings.Seconds} s{(settings.Trials > 0 ? $", {settings.Trials} trials" : string.Empty)}; metric {settings.Metric}; seed {settings.Seed}"));
setup.AddRow("checkpoint", Markup.Escape($"{RepoPaths.Relative(root, checkpoint)} (run again to resume, --fresh to start over)"));
AnsiConsole.Write(setup);
AnsiConsole.WriteLine();

LabelTuningExperimentResult result = null!;
try
{
    await AnsiConsole.Progress()
        .AutoClear(false)
        .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new ElapsedTimeColumn())
        .StartAsync(async ctx =>
        {
            var task = ctx.AddTask("starting", maxValue: settings.Seconds);
            experiment.SetProgress(new SyncProgress<SweepProgress>(p =>
            {
                task.Value = Math.Min(settings.Seconds, p.Elapsed.TotalSeconds);
                var step = p.Training is { } t ? $" epoch {t.Epoch}/{t.Epochs} step {t.Step}/{t.TotalSteps}" : string.Empty;
                task.Description = Markup.Escape(p + step);
            }));
            result = await experiment.RunAsync();
            task.Value = task.MaxValue;
        });
}
catch (TimeoutException e)
{
    AnsiConsole.MarkupLine($"[red]{Markup.Escape(e.Message)}[/] This machine is slower than the defaults assume: try --seconds 600, --train-size 120 or --max-length 32.");
    return 1;
}

var board = new Table().Title($"Leaderboard ({result.Leaderboard.Count} trials, {result.TrialsTrained} trained in this run, stopped by {result.StopReason})")
    .AddColumn("#").AddColumn("method").AddColumn(settings.Metric.ToString()).AddColumn("epochs").AddColumn("train s").AddColumn("trainable").AddColumn("peak MB").AddColumn("settings");
foreach (var (t, rank) in result.Leaderboard.Take(15).Select((t, i) => (t, i + 1)))
{
    board.AddRow(rank.ToString(CultureInfo.InvariantCulture), Markup.Escape(t.MethodName),
        t.Status == TrialStatus.Completed ? t.Metric.ToString("F4", CultureInfo.InvariantCulture) : $"[red]{Markup.Escape(t.Error ?? "failed")}[/]",
        t.Epochs.ToString(CultureInfo.InvariantCulture), t.TrainingTime.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture),
        t.TrainableParameters.ToString("N0", CultureInfo.InvariantCulture), (t.PeakMemoryBytes / 1048576.0).ToString("F0", CultureInfo.InvariantCulture),
        Markup.Escape(t.ParametersText));
}

AnsiConsole.Write(board);
result.Leaderboard.SaveCsv(Path.Combine(outPath, "leaderboard.csv"));
result.Leaderboard.SaveMarkdown(Path.Combine(outPath, "leaderboard.md"));
result.Leaderboard.SavePlot(Path.Combine(outPath, "leaderboard.png"));
var zip = Path.Combine(outPath, "best-model.zip");
ml.Model.Save(result.Model, ml.Data.LoadFromEnumerable(trainRows).Schema, zip);
AnsiConsole.MarkupLine($"Best: [green]{Markup.Escape(result.BestTrial.ToString())}[/]");
if (testRows.Count > 0)
{
    var test = ml.MulticlassClassification.Evaluate(result.Model.Transform(ml.Data.LoadFromEnumerable(testRows)));
    AnsiConsole.MarkupLine($"On {testRows.Count} held-out test rows the best model scores macro accuracy [green]{test.MacroAccuracy:F4}[/], micro accuracy {test.MicroAccuracy:F4}.");
}

AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(RepoPaths.Relative(root, outPath))}[/]/leaderboard.csv, leaderboard.md, leaderboard.png and best-model.zip in {total.Elapsed.TotalMinutes:F1} min.");
return 0;
