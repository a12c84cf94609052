// Named entities in Jane Austen with LS-unLLaMA token classification (LoRA, bidirectional attention, a tag head on
// each word's first sub-token). The tags in data/austen-ner are SILVER labels from a gazetteer, not annotations:
// good for exercising a token classifier, useless as a gold benchmark. Scores are entity-level (CoNLL-style) P/R/F1,
// and a most-frequent-tag-per-word baseline shows how much of the silver task plain memorising solves.
// Run: dotnet run --project samples/AustenNer -c Release [-- --quick] [-- --model <Hugging Face folder>]
using System.Diagnostics;
using System.Globalization;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning;
using Microsoft.ML.LabelTuning.Evaluation;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Runtime;
using Spectre.Console;

const string usage = """
    Usage: dotnet run --project samples/AustenNer -c Release -- [options]
      --model DIR        a Hugging Face LLaMA-family folder (default: the embedded models/labeltuning-default)
      --data DIR         folder with train.tsv and test.tsv, columns Tokens, Tags (BIO; default: data/austen-ner, silver labels)
      --out DIR          where model.zip goes (default: artifacts/austen-ner)
      --train-size N     training sentences (default 1000 = all)
      --test-size N      test sentences (default 300 = all)
      --max-length N     sub-word tokens per sentence, BOS and EOS included (default 128)
      --epochs N         passes over the training sentences (default 3)
      --batch N          sentences per step (default 16)
      --lr X             peak learning rate (default 1e-3)
      --lora-rank N      LoRA rank on every linear layer (default 16)
      --seed N           seed (default 0)
      --quick            400 training and 100 test sentences, 2 epochs (about a minute)
    """;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
SampleArgs cli;
int trainSize, testSize, maxLength, epochs, batch, rank, seed;
double lr;
try
{
    cli = SampleArgs.Parse(args, ["--model", "--data", "--out", "--train-size", "--test-size", "--max-length", "--epochs", "--batch", "--lr", "--lora-rank", "--seed"], ["--quick"]);
    var quick = cli.Flag("--quick");
    trainSize = cli.Int("--train-size", quick ? 400 : 0);
    testSize = cli.Int("--test-size", quick ? 100 : 0);
    maxLength = cli.Int("--max-length", 128, minimum: 8);
    epochs = cli.Int("--epochs", quick ? 2 : 3, minimum: 1);
    batch = cli.Int("--batch", 16, minimum: 1);
    rank = cli.Int("--lora-rank", 16, minimum: 1);
    seed = cli.Int("--seed", 0);
    lr = cli.Double("--lr", 1e-3);
    if (cli.Free.Count > 0)
    {
        throw new ArgumentException($"Unexpected argument '{cli.Free[0]}'.");
    }
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(usage);
    return 2;
}

if (cli.Help)
{
    Console.WriteLine(usage);
    return 0;
}

var total = Stopwatch.StartNew();
var folders = SampleFolders.Resolve(cli, "austen-ner", "austen-ner");
if (folders is null)
{
    return 1;
}

var (root, modelPath, dataPath, outPath) = folders;
TorchRuntime.EnsureInitialized();
var ml = new MLContext(seed: seed);
var allTrain = SilverSentence.Load(Path.Combine(dataPath, "train.tsv"));
var allTest = SilverSentence.Load(Path.Combine(dataPath, "test.tsv"));
var trainRows = trainSize == 0 ? allTrain : allTrain.Take(trainSize).ToList();
var testRows = testSize == 0 ? allTest : allTest.Take(testSize).ToList();
var train = ml.Data.LoadFromEnumerable(trainRows);
var test = ml.Data.LoadFromEnumerable(testRows);

AnsiConsole.Write(new Rule("[bold]Microsoft.ML.LabelTuning: named entities in Austen (silver labels)[/]").LeftJustified());
var config = Microsoft.ML.LabelTuning.Llama.LlamaConfig.Load(Path.Combine(modelPath, "config.json"));
var setup = new Table().HideHeaders().Border(TableBorder.None).AddColumn("").AddColumn("");
setup.AddRow("base model", Markup.Escape($"{RepoPaths.Relative(root, modelPath)} (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, vocabulary {config.VocabSize})"));
setup.AddRow("data", Markup.Escape($"{RepoPaths.Relative(root, dataPath)}: {trainRows.Count} training and {testRows.Count} test sentences; SILVER tags (PER, LOC) from a gazetteer, not annotators"));
setup.AddRow("method", Markup.Escape($"LS-unLLaMA token classification: LoRA r={rank} on every linear layer, bidirectional attention, a tag head on each word's first sub-token"));
setup.AddRow("training", Markup.Escape($"{epochs} epoch(s), batch {batch}, peak lr {lr:G3}, up to {maxLength} sub-word tokens per sentence"));
setup.AddRow("threads", $"{TorchRuntime.Threads} (LABELTUNING_THREADS)");
AnsiConsole.Write(setup);
AnsiConsole.WriteLine();

// 1. Fine-tune: Sentence holds space-separated words, Label one key per word (MapValueToKey over the tag vector).
var options = new LabelSupervisedLlamaOptions
{
    ModelPath = modelPath,
    TextColumnName = "Sentence",
    MaxSequenceLength = maxLength,
    Epochs = epochs,
    BatchSize = batch,
    LearningRate = lr,
    LoraRank = rank,
    LoraAlpha = 2.0 * rank,
    LoraDropout = 0.05,
    LoraTargets = LoraTargets.AllLinear,
    Seed = seed,
};
var (model, _, trainTime) = TrainingBar.Run("LS-unLLaMA NER", progress =>
{
    options.Progress = progress;
    return ml.Transforms.Conversion.MapValueToKey("Label", "Tags")
        .Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlamaNer(options))
        .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedTags", "PredictedLabel"))
        .Fit(train);
});

// 2. Entity-level scores on the silver test tags.
var clock = Stopwatch.StartNew();
var scored = model.Transform(test);
EntityMetrics llama = null!;
AnsiConsole.Status().Start($"Tagging {testRows.Count} test sentences...", _ => llama = ml.MulticlassClassification.EvaluateEntities(scored));
clock.Stop();
var tuned = ((IEnumerable<ITransformer>)model).OfType<Microsoft.ML.LabelTuning.Transformers.LabelTuningTransformerBase>().Single();

// 3. The memorising baseline: each word's most frequent training tag (O for unseen words), scored the same way.
var baselineClock = Stopwatch.StartNew();
var memory = trainRows.SelectMany(r => r.Sentence.Split(' ').Zip(r.Tags))
    .GroupBy(p => p.First, StringComparer.Ordinal)
    .ToDictionary(g => g.Key, g => g.GroupBy(p => p.Second, StringComparer.Ordinal).OrderByDescending(t => t.Count()).ThenBy(t => t.Key, StringComparer.Ordinal).First().Key, StringComparer.Ordinal);
var guessed = testRows.Select(r => new GuessedSentence { Tags = r.Tags, Guess = Bio.Repair(r.Sentence.Split(' ').Select(w => memory.GetValueOrDefault(w, "O")).ToArray()) }).ToList();
var guessedView = ml.Data.LoadFromEnumerable(guessed);
var keyedGuesses = ml.Transforms.Conversion.MapValueToKey("Label", "Tags").Append(ml.Transforms.Conversion.MapValueToKey("PredictedLabel", "Guess")).Fit(guessedView).Transform(guessedView);
var baseline = ml.MulticlassClassification.EvaluateEntities(keyedGuesses);
baselineClock.Stop();

var table = new Table().Title("Entity-level scores on the silver test tags (an entity counts when its span and type both match)")
    .AddColumn("method").AddColumn("type")
    .AddColumn(new TableColumn("precision").RightAligned())
    .AddColumn(new TableColumn("recall").RightAligned())
    .AddColumn(new TableColumn("F1").RightAligned())
    .AddColumn(new TableColumn("silver entities").RightAligned());
foreach (var (name, metrics) in new[] { ("LS-unLLaMA", llama), ("most frequent tag", baseline) })
{
    foreach (var (type, m) in metrics.PerType)
    {
        table.AddRow(Markup.Escape(name), type, m.Precision.ToString("P1"), m.Recall.ToString("P1"), m.F1.ToString("P1"), m.Support.ToString("N0"));
    }

    table.AddRow($"[bold]{Markup.Escape(name)}[/]", "[bold]all[/]", metrics.Precision.ToString("P1"), metrics.Recall.ToString("P1"), $"[bold]{metrics.F1:P1}[/]", metrics.TrueEntities.ToString("N0"));
}

AnsiConsole.Write(table);
AnsiConsole.MarkupLine(Markup.Escape(
    $"LS-unLLaMA trained {tuned.TrainableParameterCount:N0} parameters in {trainTime.TotalSeconds:F0} s and tags {testRows.Count / clock.Elapsed.TotalSeconds:F0} sentences/s. " +
    "The silver tags come from a name list, so memorising names goes a long way here; what the tuned model adds shows on names " +
    "and places it has not seen in training. Neither figure is a gold NER benchmark."));
AnsiConsole.WriteLine();

// 4. A few test sentences with the entities the model found.
var predicted = scored.GetColumn<string[]>("PredictedTags").ToArray();
var examples = new Table().Title("Test sentences: silver entities and predicted entities").AddColumn("sentence").AddColumn("silver").AddColumn("predicted");
foreach (var i in Enumerable.Range(0, testRows.Count).Where(i => testRows[i].Tags.Any(t => t != "O")).Take(5))
{
    var words = testRows[i].Sentence.Split(' ');
    examples.AddRow(Markup.Escape(testRows[i].Sentence), Markup.Escape(Bio.Describe(words, testRows[i].Tags)), Markup.Escape(Bio.Describe(words, predicted[i])));
}

AnsiConsole.Write(examples);

// 5. Save and reload; the reloaded model must tag exactly as the trained one.
var zip = Path.Combine(outPath, "model.zip");
ml.Model.Save(model, train.Schema, zip);
var reloaded = ml.Model.Load(zip, out _).Transform(test).GetColumn<string[]>("PredictedTags").ToArray();
var identical = reloaded.Zip(predicted).All(p => p.First.SequenceEqual(p.Second));
AnsiConsole.MarkupLine(identical
    ? $"Saved [blue]{Markup.Escape(RepoPaths.Relative(root, zip))}[/] ({new FileInfo(zip).Length / 1024.0:F0} KB); the reloaded model tags every test sentence identically."
    : "[red]The reloaded model tags differently from the trained one.[/]");
AnsiConsole.MarkupLine($"Total time {total.Elapsed.TotalMinutes:F1} min.");
return identical ? 0 : 1;

/// <summary>One sentence of data/austen-ner: space-separated words and one silver BIO tag per word.</summary>
public sealed class SilverSentence
{
    public string Sentence { get; set; } = string.Empty;

    public string[] Tags { get; set; } = [];

    public static List<SilverSentence> Load(string path)
    {
        var rows = new List<SilverSentence>();
        var line = 1;
        foreach (var (tokens, tags) in TextData.LoadPairs(path, "Tokens\tTags"))
        {
            line++;
            var sentence = new SilverSentence { Sentence = tokens, Tags = tags.Split(' ') };
            var words = tokens.Split(' ').Length;
            if (words != sentence.Tags.Length)
            {
                throw new InvalidDataException($"Line {line} of '{path}' has {words} token(s) but {sentence.Tags.Length} tag(s).");
            }

            rows.Add(sentence);
        }

        return rows;
    }
}

/// <summary>The memorising baseline's row: the silver tags and the guessed ones.</summary>
public sealed class GuessedSentence
{
    public string[] Tags { get; set; } = [];

    public string[] Guess { get; set; } = [];
}

/// <summary>BIO helpers.</summary>
internal static class Bio
{
    /// <summary>Makes guessed tags a valid BIO sequence: an I-X that does not continue an X becomes B-X.</summary>
    public static string[] Repair(string[] tags)
    {
        var result = (string[])tags.Clone();
        for (var i = 0; i < result.Length; i++)
        {
            if (result[i].StartsWith("I-", StringComparison.Ordinal) && (i == 0 || result[i - 1][Math.Min(2, result[i - 1].Length)..] != result[i][2..]))
            {
                result[i] = "B-" + result[i][2..];
            }
        }

        return result;
    }

    /// <summary>"Elizabeth (PER), Pemberley (LOC)", or "none".</summary>
    public static string Describe(string[] words, string[] tags)
    {
        var entities = new List<string>();
        for (var i = 0; i < tags.Length && i < words.Length; i++)
        {
            if (tags[i].Length > 2 && tags[i][1] == '-' && (tags[i][0] == 'B' || i == 0 || tags[i - 1].Length < 2 || tags[i - 1][2..] != tags[i][2..]))
            {
                var type = tags[i][2..];
                var end = i + 1;
                while (end < tags.Length && end < words.Length && tags[end] == "I-" + type)
                {
                    end++;
                }

                entities.Add($"{string.Join(' ', words[i..end])} ({type})");
            }
        }

        return entities.Count == 0 ? "none" : string.Join(", ", entities);
    }
}
