using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.AI;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Generation;
using Microsoft.ML.LabelTuning.Methods.Gpta;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;

namespace Microsoft.ML.LabelTuning.Tests.Methods.Gpta;

/// <summary>
/// The measurement behind docs/results-gpta.md: LS-LLaMA on the embedded default model over an IMDB subsample, with
/// no prefix, a hand-written prefix, and the prefix GPTA's assistant (the same default model through
/// <see cref="LlamaChatClient"/>) chose. Minutes of CPU, so it runs only when LABELTUNING_GPTA_EXPERIMENT=1;
/// sizes come from LABELTUNING_GPTA_TRAIN / _VALID / _TEST / _EPOCHS / _ROUNDS / _CANDIDATES.
/// </summary>
[TestClass]
public sealed class GptaImdbExperiment
{
    private const string HandWritten = "Movie review. Is the reviewer's opinion positive or negative?";

    [TestMethod]
    [TestCategory("Experiment")]
    public void CompareNoPrefixHandWrittenAndAssistantPrefixesOnImdb()
    {
        if (Environment.GetEnvironmentVariable("LABELTUNING_GPTA_EXPERIMENT") != "1")
        {
            Assert.Inconclusive("Set LABELTUNING_GPTA_EXPERIMENT=1 to run the GPTA experiment (minutes of CPU).");
        }

        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Microsoft.ML.LabelTuning.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new DirectoryNotFoundException("repository root");
        }

        var modelFolder = Path.Combine(root, "models", "labeltuning-default");
        int Env(string name, int fallback) => int.TryParse(Environment.GetEnvironmentVariable("LABELTUNING_GPTA_" + name), out var v) ? v : fallback;
        var trainCount = Env("TRAIN", 400);
        var validCount = Env("VALID", 200);
        var testCount = Env("TEST", 500);
        var epochs = Env("EPOCHS", 2);
        var rounds = Env("ROUNDS", 2);
        var candidates = Env("CANDIDATES", 2);
        var report = new StringBuilder();
        void Log(string line)
        {
            Console.WriteLine(line);
            report.AppendLine(line);
        }

        var ml = new MLContext(seed: 0);
        var allTrain = ml.Data.LoadFromTextFile<Review>(Path.Combine(root, "data", "imdb", "train.tsv"), hasHeader: true, separatorChar: '\t', allowQuoting: false);
        var shuffled = ml.Data.ShuffleRows(allTrain, seed: 7);
        var train = ml.Data.TakeRows(shuffled, trainCount);
        var valid = ml.Data.TakeRows(ml.Data.SkipRows(shuffled, trainCount), validCount);
        var test = ml.Data.TakeRows(ml.Data.ShuffleRows(
            ml.Data.LoadFromTextFile<Review>(Path.Combine(root, "data", "imdb", "test.tsv"), hasHeader: true, separatorChar: '\t', allowQuoting: false), seed: 7), testCount);
        var map = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(train);
        train = ml.Data.Cache(map.Transform(train));
        valid = ml.Data.Cache(map.Transform(valid));
        test = ml.Data.Cache(map.Transform(test));

        LabelSupervisedLlamaOptions Options(string? prefix) => new()
        {
            ModelPath = modelFolder,
            Epochs = epochs,
            BatchSize = 8,
            LearningRate = 3e-4,
            MaxSequenceLength = 128,
            Truncation = Data.Truncation.HeadTail,
            Seed = 1,
            TextPrefix = prefix,
        };

        (double Accuracy, double MacroF1) Test(ITransformer model)
        {
            var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
            return (metrics.MicroAccuracy, MacroF1(metrics.ConfusionMatrix));
        }

        Log($"IMDB: {trainCount} train, {validCount} validation (from train.tsv), {testCount} test (test.tsv); LS-LLaMA on models/labeltuning-default, " +
            $"{epochs} epoch(s), 128 tokens, head+tail truncation, seed 1");
        var total = Stopwatch.StartNew();
        var rows = new List<string>();

        foreach (var (name, prefix) in new[] { ("no prefix", (string?)null), ("hand-written", HandWritten) })
        {
            var clock = Stopwatch.StartNew();
            using var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(prefix)).Fit(train);
            var (accuracy, f1) = Test(model);
            rows.Add($"| {name} | {(prefix is null ? "(none)" : $"`{prefix}`")} | {accuracy:P1} | {f1:F3} | {clock.Elapsed.TotalSeconds:F0} s |");
            Log(rows[^1]);
        }

        var transcript = Path.Combine(Path.GetTempPath(), "gpta-imdb-transcript.jsonl");
        File.Delete(transcript);
        using var chat = new LlamaChatClient(modelFolder, new LlamaChatClientOptions { RepetitionPenalty = 1.2f });
        var assistantOptions = new LlmPrefixAssistantOptions
        {
            TaskDescription = "Decide whether a movie review is positive or negative.",
            ValidationSet = valid,
            Rounds = rounds,
            CandidatesPerRound = candidates,
            CandidateEpochs = 1,
            HistoryRounds = 0,
            AcceptPlainLines = true,
            MaxPrefixLength = 120,
            ChatOptions = new ChatOptions { Temperature = 0.9f, TopP = 0.9f, MaxOutputTokens = 48, Seed = 11 },
            TranscriptPath = transcript,
        };
        var gptaClock = Stopwatch.StartNew();
        var gpta = ml.MulticlassClassification.Trainers.WithLlmPrefixAssistant(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(null)), chat, assistantOptions);
        using (var model = gpta.Fit(train))
        {
            var (accuracy, f1) = Test(model);
            var search = gpta.LastSearch!;
            rows.Add($"| GPTA (assistant) | {(search.BestPrefix is null ? "(none: the baseline won)" : $"`{search.BestPrefix}`")} | {accuracy:P1} | {f1:F3} | {gptaClock.Elapsed.TotalSeconds:F0} s |");
            Log(rows[^1]);
            Log($"GPTA search: {search.Candidates.Count} candidate(s) scored, {search.RejectedCandidates} rejected, {search.FailedReplies} unusable repl(ies), rounds {search.RoundsCompleted}");
            foreach (var c in search.Candidates)
            {
                Log($"  round {c.Round}: validation macro-F1 {c.Score:F3}, accuracy {c.Evaluation.Accuracy:P1}, {c.TrainingTime.TotalSeconds:F0} s: {(c.Prefix is null ? "(no prefix)" : c.Prefix)}");
            }
        }

        Log($"total {total.Elapsed.TotalMinutes:F1} min; transcript {transcript}");
        var output = Environment.GetEnvironmentVariable("LABELTUNING_GPTA_OUTPUT") ?? Path.Combine(Path.GetTempPath(), "gpta-imdb-results.md");
        File.WriteAllText(output, "| condition | prefix | test accuracy | test macro-F1 | time |\n|---|---|---|---|---|\n" + string.Join('\n', rows) + "\n\n```\n" + report + "```\n");
    }

    private static double MacroF1(ConfusionMatrix matrix)
    {
        var k = matrix.NumberOfClasses;
        var f1 = new List<double>();
        for (var c = 0; c < k; c++)
        {
            var tp = matrix.Counts[c][c];
            var actual = matrix.Counts[c].Sum();
            var predicted = Enumerable.Range(0, k).Sum(r => matrix.Counts[r][c]);
            f1.Add(actual + predicted == 0 ? 0 : 2 * tp / (actual + predicted));
        }

        return f1.Average();
    }

    private sealed class Review
    {
        [LoadColumn(0)]
        public string Label { get; set; } = string.Empty;

        [LoadColumn(1)]
        public string Text { get; set; } = string.Empty;
    }
}
