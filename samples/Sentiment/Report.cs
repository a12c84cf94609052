using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;
using Microsoft.ML.Transforms;
using Spectre.Console;

namespace Sentiment;

/// <summary>One method's results on the test reviews.</summary>
internal sealed record MethodResult(string Name, MulticlassClassificationMetrics Metrics, TimeSpan TrainTime, long TrainableParameters, double ScoringRowsPerSecond)
{
    /// <summary>Gets the mean over classes of F1 = 2PR / (P + R).</summary>
    public double MacroF1 => Metrics.ConfusionMatrix.PerClassPrecision
        .Zip(Metrics.ConfusionMatrix.PerClassRecall, (p, r) => p + r > 0 ? 2 * p * r / (p + r) : 0)
        .Average();
}

/// <summary>ML.NET's classical text classifier: FeaturizeText (word and character n-gram TF-IDF) + SdcaMaximumEntropy.</summary>
internal static class Baseline
{
    public static MethodResult Run(MLContext ml, IDataView train, IDataView test, int testCount)
    {
        MethodResult result = null!;
        AnsiConsole.Status().Start("ML.NET baseline: FeaturizeText + SdcaMaximumEntropy...", _ =>
        {
            var clock = Stopwatch.StartNew();
            // The cache checkpoint matters: SDCA makes many passes, and without it each pass featurizes the text again.
            // One thread makes SDCA deterministic.
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
                .Append(ml.Transforms.Text.FeaturizeText("Features", "Text"))
                .AppendCacheCheckpoint(ml)
                .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(new SdcaMaximumEntropyMulticlassTrainer.Options { NumberOfThreads = 1 }));
            var model = pipeline.Fit(train);
            clock.Stop();
            var scoring = Stopwatch.StartNew();
            var scored = model.Transform(test);
            var metrics = ml.MulticlassClassification.Evaluate(scored);
            scoring.Stop();
            var features = ((VectorDataViewType)scored.Schema["Features"].Type).Size;
            var classes = metrics.ConfusionMatrix.NumberOfClasses;
            result = new MethodResult("ML.NET SDCA", metrics, clock.Elapsed, ((long)features * classes) + classes, testCount / scoring.Elapsed.TotalSeconds);
        });
        return result;
    }
}

/// <summary>Prints metrics, confusion matrices and the comparison.</summary>
internal static class Report
{
    private static readonly string[] _classes = ["negative", "positive"]; // key order: ByValue

    public static void Metrics(MethodResult result)
    {
        var m = result.Metrics;
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(result.Name)}[/]: accuracy [bold]{m.MicroAccuracy:P1}[/], macro-F1 [bold]{result.MacroF1:P1}[/], log-loss {m.LogLoss:F3}");
        var table = new Table().Title("confusion matrix (rows: true label, columns: predicted)").AddColumn("");
        var counts = m.ConfusionMatrix.Counts;
        var names = counts.Count == _classes.Length ? _classes : Enumerable.Range(0, counts.Count).Select(i => $"class {i}").ToArray();
        foreach (var name in names)
        {
            table.AddColumn(new TableColumn(name).RightAligned());
        }

        table.AddColumn(new TableColumn("recall").RightAligned());
        for (var i = 0; i < counts.Count; i++)
        {
            var cells = new List<string> { names[i] };
            cells.AddRange(counts[i].Select((c, j) => i == j ? $"[green]{c:F0}[/]" : $"{c:F0}"));
            cells.Add($"{m.ConfusionMatrix.PerClassRecall[i]:P1}");
            table.AddRow(cells.ToArray());
        }

        AnsiConsole.Write(table);
        AnsiConsole.WriteLine();
    }

    public static void Comparison(IReadOnlyList<MethodResult> results, int maxLength)
    {
        var table = new Table().Title("Same training rows, same test rows").AddColumn("method")
            .AddColumn(new TableColumn("accuracy").RightAligned())
            .AddColumn(new TableColumn("macro-F1").RightAligned())
            .AddColumn(new TableColumn("train time").RightAligned())
            .AddColumn(new TableColumn("trained params").RightAligned())
            .AddColumn(new TableColumn("rows/s").RightAligned());
        var best = results.Max(r => r.Metrics.MicroAccuracy);
        foreach (var r in results)
        {
            var accuracy = r.Metrics.MicroAccuracy.ToString("P1");
            table.AddRow(Markup.Escape(r.Name), r.Metrics.MicroAccuracy == best ? $"[bold]{accuracy}[/]" : accuracy, r.MacroF1.ToString("P1"),
                $"{r.TrainTime.TotalSeconds:F0} s", r.TrainableParameters.ToString("N0"), r.ScoringRowsPerSecond.ToString("F0"));
        }

        AnsiConsole.Write(table);
        var margin = string.Empty;
        if (results.Count == 2)
        {
            // Both score the same rows; the standard error of the difference is taken as if the two were independent
            // (sqrt(p1(1-p1)/n + p2(1-p2)/n)), which overstates it for paired predictions.
            var n = results[0].Metrics.ConfusionMatrix.Counts.Sum(row => row.Sum());
            var (a, b) = (results[0].Metrics.MicroAccuracy, results[1].Metrics.MicroAccuracy);
            var se = Math.Sqrt((a * (1 - a) / n) + (b * (1 - b) / n));
            margin = string.Create(CultureInfo.InvariantCulture,
                $"{results[0].Name} is {100 * (a - b):+0.0;-0.0;0.0} points against {results[1].Name} on these {n:F0} test reviews (standard error of the difference about {100 * se:F1} points). ");
        }

        AnsiConsole.MarkupLine(Markup.Escape(
            "ML.NET SDCA is FeaturizeText (word and character n-gram TF-IDF) + SdcaMaximumEntropy. " +
            $"LS-LLaMA reads the first {maxLength} tokens of each review; the baseline reads whole reviews. " + margin +
            "The embedded model is a small LLaMA this project pretrained on one CPU (48M tokens of the data sets' own training text; " +
            "docs/models/labeltuning-default.md); a real pretrained model (--model) is what the method is meant for."));
        AnsiConsole.WriteLine();
    }

    public static void WriteJson(string path, SampleSettings settings, int trainRows, int testRows, IReadOnlyList<MethodResult> results)
    {
        var json = System.Text.Json.JsonSerializer.Serialize(new
        {
            train_rows = trainRows,
            test_rows = testRows,
            max_length = settings.MaxLength,
            epochs = settings.Epochs,
            batch = settings.BatchSize,
            lr = settings.LearningRate,
            lora_rank = settings.LoraRank,
            targets = settings.Targets.ToString(),
            pooling = settings.Pooling.ToString(),
            results = results.Select(r => new
            {
                method = r.Name,
                accuracy = r.Metrics.MicroAccuracy,
                macro_f1 = r.MacroF1,
                train_seconds = r.TrainTime.TotalSeconds,
                trainable_parameters = r.TrainableParameters,
                scoring_rows_per_s = r.ScoringRowsPerSecond,
            }),
        }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(path, json);
    }
}
