using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// The LS-LLaMA trainer end to end on the engine benchmark's config, with real IMDB text cut to 128 tokens:
/// training tokens/s (compared with the raw engine LoRA step) and scoring rows/s.
/// </summary>
internal static class TrainerBench
{
    public static IEnumerable<object> Run(double peakGflops)
    {
        var root = RepoRoot();
        var folder = Directory.CreateTempSubdirectory("lt-bench-").FullName;
        try
        {
            var config = BenchConfig.Model;
            torch.random.manual_seed(0);
            using (var model = new LlamaForCausalLM(config))
            {
                CheckpointLoader.SaveHfFolder(model, config, folder);
            }

            File.Copy(Path.Combine(root, "test", "Microsoft.ML.LabelTuning.Tests", "Fixtures", "llama2-tokenizer", "tokenizer.model"),
                Path.Combine(folder, "tokenizer.model"));

            var ml = new MLContext(seed: 0);
            var rows = File.ReadLines(Path.Combine(root, "data", "imdb", "train.tsv")).Skip(1).Take(320)
                .Select(line => line.Split('\t')).Select(f => new Review { Label = f[0], Text = f[1] }).ToList();
            var train = ml.Data.LoadFromEnumerable(rows.Take(256));
            var score = ml.Data.LoadFromEnumerable(rows.Skip(256));
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train);
            var options = new LabelSupervisedLlamaOptions
            {
                ModelPath = folder,
                MaxSequenceLength = BenchConfig.Sequence,
                BatchSize = BenchConfig.Batch,
                Epochs = 1,
                LoraRank = 8,
                LoraAlpha = 16,
                LoraDropout = 0,
                LoraTargets = LoraTargets.QueryValue,
                Seed = 0,
            };
            var trainer = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options);
            var clock = Stopwatch.StartNew();
            using var transformer = trainer.Fit(keyed.Transform(train));
            var fitSeconds = clock.Elapsed.TotalSeconds;
            var summary = transformer.Runtime.LastTraining!;
            var flopsPerToken = 2 * BenchConfig.ForwardFlops(config, BenchConfig.Batch, BenchConfig.Sequence) / (BenchConfig.Batch * BenchConfig.Sequence);
            yield return new
            {
                bench = "ls_llama_train",
                rows = 256,
                steps = summary.Steps,
                tokens_per_s = Math.Round(summary.TokensPerSecond),
                utilisation_of_peak = Math.Round(summary.TokensPerSecond * flopsPerToken / 1e9 / peakGflops, 3),
                fit_seconds_including_load_and_tokenize = Math.Round(fitSeconds, 2),
                trainable_parameters = summary.TrainableParameters,
                note = "compare tokens_per_s with engine_lora_step; target: at most 10% below it",
            };

            var scoreRows = 64;
            var scoreData = keyed.Transform(score);
            transformer.Transform(scoreData).GetColumn<float[]>("Score").ToArray(); // warm-up
            clock.Restart();
            var scored = transformer.Transform(scoreData).GetColumn<float[]>("Score").Count();
            var seconds = clock.Elapsed.TotalSeconds;
            yield return new
            {
                bench = "ls_llama_score",
                rows = scored,
                rows_per_s = Math.Round(scoreRows / seconds, 1),
                tokens_per_s = Math.Round(scoreRows * BenchConfig.Sequence / seconds),
                utilisation_of_peak = Math.Round(scoreRows * BenchConfig.Sequence * flopsPerToken / 2 / seconds / 1e9 / peakGflops, 3),
            };
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    public static string RepoRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Microsoft.ML.LabelTuning.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new DirectoryNotFoundException("Run the benchmarks from inside the repository.");
    }

    private sealed class Review
    {
        public string Label { get; set; } = string.Empty;

        public string Text { get; set; } = string.Empty;
    }
}
