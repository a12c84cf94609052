// IMDB sentiment with LS-LLaMA (LoRA + a label head) on the embedded default model, compared honestly with
// ML.NET's classical text pipeline on the same split. Run: ./build.sh   or   dotnet run --project samples/Sentiment
using System.Diagnostics;
using System.Globalization;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning;
using Microsoft.ML.LabelTuning.Reporting;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Transforms;
using Sentiment;
using Spectre.Console;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
SampleSettings settings;
try
{
    settings = SampleSettings.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(SampleSettings.Usage);
    return 2;
}

if (settings.Help)
{
    Console.WriteLine(SampleSettings.Usage);
    return 0;
}

var total = Stopwatch.StartNew();
var root = RepoPaths.FindRoot();
var modelPath = Path.GetFullPath(settings.ModelPath ?? Path.Combine(root ?? ".", "models", "labeltuning-default"));
var dataPath = Path.GetFullPath(settings.DataPath ?? Path.Combine(root ?? ".", "data", "imdb"));
var outPath = Path.GetFullPath(settings.OutPath ?? Path.Combine(root ?? ".", "artifacts", "sentiment"));
foreach (var (what, path) in new[] { ("model config", Path.Combine(modelPath, "config.json")), ("training data", Path.Combine(dataPath, "train.tsv")), ("test data", Path.Combine(dataPath, "test.tsv")) })
{
    if (!File.Exists(path))
    {
        Console.Error.WriteLine($"The {what} '{path}' does not exist. Run from the repository (or pass --model/--data); see docs/getting-started.md.");
        return 1;
    }
}

TorchRuntime.EnsureInitialized();
Directory.CreateDirectory(outPath);
var ml = new MLContext(seed: settings.Seed);
var allTrain = TextData.Load(Path.Combine(dataPath, "train.tsv"));
var allTest = TextData.Load(Path.Combine(dataPath, "test.tsv"));
var trainRows = TextData.Balanced(allTrain, settings.TrainSize);
var testRows = settings.TestSize == 0 ? allTest : allTest.Take(settings.TestSize).ToList();
var train = ml.Data.LoadFromEnumerable(trainRows);
var test = ml.Data.LoadFromEnumerable(testRows);

AnsiConsole.Write(new Rule("[bold]Microsoft.ML.LabelTuning: IMDB sentiment with LS-LLaMA[/]").LeftJustified());
var config = Microsoft.ML.LabelTuning.Llama.LlamaConfig.Load(Path.Combine(modelPath, "config.json"));
var setup = new Table().HideHeaders().Border(TableBorder.None).AddColumn("").AddColumn("");
setup.AddRow("base model", Markup.Escape($"{RepoPaths.Relative(root, modelPath)} (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, vocabulary {config.VocabSize})"));
setup.AddRow("data", Markup.Escape($"{RepoPaths.Relative(root, dataPath)}: {trainRows.Count} training reviews ({TextData.Describe(trainRows)}), {testRows.Count} test reviews ({TextData.Describe(testRows)})"));
setup.AddRow("method", Markup.Escape($"LS-LLaMA: LoRA r={settings.LoraRank} on {settings.TargetsText} + a label head on the {(settings.Pooling == Microsoft.ML.LabelTuning.Methods.Pooling.Last ? "last token" : "mean of the tokens")}"));
setup.AddRow("training", Markup.Escape($"{settings.Epochs} epochs, batch {settings.BatchSize}, peak lr {settings.LearningRate:G3}, first {settings.MaxLength} tokens of each review"));
setup.AddRow("threads", $"{TorchRuntime.Threads} (LABELTUNING_THREADS)");
AnsiConsole.Write(setup);
AnsiConsole.WriteLine();

// 1. Fine-tune LS-LLaMA.
var (model, curve, trainTime) = TrainingBar.Run("LS-LLaMA", progress =>
    (ITransformer)ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
        .Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(settings.ToOptions(modelPath, progress)))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedText", "PredictedLabel"))
        .Fit(train));
var tuned = ((IEnumerable<ITransformer>)model).OfType<Microsoft.ML.LabelTuning.Transformers.LabelTuningTransformerBase>().Single();
var trainable = tuned.TrainableParameterCount;

// 2. Score the test reviews.
var scoreClock = Stopwatch.StartNew();
MulticlassClassificationMetrics llama = null!;
AnsiConsole.Status().Start($"Scoring {testRows.Count} test reviews...", _ => llama = ml.MulticlassClassification.Evaluate(model.Transform(test)));
scoreClock.Stop();
var llamaResult = new MethodResult(settings.ModelPath is null ? "LS-LLaMA" : $"LS-LLaMA ({Path.GetFileName(modelPath.TrimEnd('/'))})", llama, trainTime, trainable, testRows.Count / scoreClock.Elapsed.TotalSeconds);
Report.Metrics(llamaResult);

// 3. ML.NET's classical pipeline on the same rows: word and character n-gram TF-IDF + SDCA maximum entropy.
var baseline = Baseline.Run(ml, train, test, testRows.Count);
Report.Metrics(baseline);
Report.Comparison([llamaResult, baseline], settings.MaxLength);
Report.WriteJson(Path.Combine(outPath, "results.json"), settings, trainRows.Count, testRows.Count, [llamaResult, baseline]);

// 4. Save, reload, and predict new sentences with the reloaded model.
var zip = Path.Combine(outPath, "model.zip");
ml.Model.Save(model, train.Schema, zip);
var loaded = ml.Model.Load(zip, out _);
var sentences = settings.Sentences.Count > 0 ? settings.Sentences :
[
    "A wonderful, moving film. The cast is brilliant and the ending made me cry.",
    "Two hours of my life I will never get back. Dull, predictable and badly acted.",
    "The plot was thin, but the music and the photography kept me watching.",
];
var engine = ml.Model.CreatePredictionEngine<TextRow, ReviewPrediction>(loaded);
var check = ml.Model.CreatePredictionEngine<TextRow, ReviewPrediction>(model);
var positiveIndex = tuned.ClassNames.ToList().IndexOf("positive");
var predictions = new Table().Title($"Predictions of the reloaded {Path.GetFileName(zip)} ({new FileInfo(zip).Length / 1024.0:F0} KB)").AddColumn("sentence").AddColumn("predicted").AddColumn("P(positive)");
var identical = true;
foreach (var sentence in sentences)
{
    var p = engine.Predict(new TextRow { Text = sentence });
    var q = check.Predict(new TextRow { Text = sentence });
    identical &= p.PredictedText == q.PredictedText && p.Score.SequenceEqual(q.Score);
    predictions.AddRow(Markup.Escape(sentence), p.PredictedText == "positive" ? "[green]positive[/]" : "[red]negative[/]", p.Score[positiveIndex].ToString("F3"));
}

AnsiConsole.Write(predictions);
AnsiConsole.MarkupLine(identical
    ? $"Saved [blue]{Markup.Escape(RepoPaths.Relative(root, zip))}[/]; the reloaded model scores exactly as the trained one."
    : "[red]The reloaded model scores differently from the trained one.[/]");

// 5. The training curve.
var chartPath = Path.Combine(outPath, "training-curve.png");
var chart = new LineChart { Title = "LS-LLaMA on IMDB: training loss", XLabel = "optimizer step", YLabel = "cross-entropy" };
chart.AddSeries("loss per step", curve.Select(c => (double)c.Step).ToArray(), curve.Select(c => c.Loss).ToArray());
var window = Math.Max(1, curve.Count / 10);
chart.AddSeries($"mean of {window} steps", curve.Select(c => (double)c.Step).ToArray(),
    curve.Select((_, i) => curve.Skip(Math.Max(0, i - window + 1)).Take(Math.Min(window, i + 1)).Average(c => c.Loss)).ToArray());
chart.YMin = 0;
chart.Save(chartPath);
AnsiConsole.MarkupLine($"Training curve: [blue]{Markup.Escape(RepoPaths.Relative(root, chartPath))}[/]");
AnsiConsole.MarkupLine($"Total time {total.Elapsed.TotalMinutes:F1} min. Bring your own model for real accuracy: [grey]dotnet run --project samples/Sentiment -- --model <Hugging Face folder>[/]");
return identical ? 0 : 1;
