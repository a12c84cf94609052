using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Pretraining;
using Microsoft.ML.LabelTuning.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Seeded tiny runs of every method family and of the pretrainer, traced to the bit: every step's loss and learning
/// rate, every validation, and the final scores (fine-tuning) or weights (pretraining). Each run is done twice and
/// must trace the same. With <c>LABELTUNING_TRACE_FOLDER</c> set the traces are written there, so that a change to the
/// training engine can be checked to leave seeded results unchanged (diff the folders of two builds).
/// </summary>
[TestClass]
public sealed class TrainingEngineTraceTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 23);
    }

    [ClassCleanup]
    public static void DeleteModel() => Directory.Delete(_model, recursive: true);

    [TestMethod]
    [DataRow("ls-llama")]
    [DataRow("prompt-tuning")]
    [DataRow("prefix-tuning")]
    [DataRow("l-tuning")]
    public void ASeededFineTuningRunTracesTheSameTwice(string method)
    {
        var first = FineTuningTrace(method);
        var second = FineTuningTrace(method);
        Assert.AreEqual(first, second, $"{method}: two seeded runs differ");
        Save($"{method}.txt", first);
    }

    [TestMethod]
    public void ASeededPretrainingRunTracesTheSameTwice()
    {
        var first = PretrainingTrace();
        var second = PretrainingTrace();
        Assert.AreEqual(first, second, "two seeded pretraining runs differ");
        Save("pretraining.txt", first);
    }

    private static string FineTuningTrace(string method)
    {
        var trace = new StringBuilder();
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            if (p.IsValidation)
            {
                trace.AppendLine(CultureInfo.InvariantCulture, $"validation {p.Epoch} {p.ValidationLoss!.Value:R} {p.ValidationAccuracy:R}");
            }
            else if (p.IsStep)
            {
                trace.AppendLine(CultureInfo.InvariantCulture, $"step {p.Step}/{p.TotalSteps} epoch {p.Epoch} loss {p.Loss:R} lr {p.LearningRate:R}");
            }
        });
        var ml = new MLContext(seed: 1);
        var map = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue);
        var trainView = ml.Data.LoadFromEnumerable(ToyData.Rows(36, seed: 1));
        var labels = map.Fit(trainView);
        var train = labels.Transform(trainView);
        var validation = labels.Transform(ml.Data.LoadFromEnumerable(ToyData.Rows(12, seed: 3)));
        var checkpoints = Directory.CreateTempSubdirectory("lt-trace-").FullName;
        try
        {
            T Common<T>(T o)
                where T : LabelTuningOptions
            {
                o.ModelPath = _model;
                o.Epochs = 3;
                o.BatchSize = 8;
                o.LearningRate = 1e-2;
                o.WarmupRatio = 0.2;
                o.MaxSequenceLength = 32;
                o.Seed = 7;
                o.ValidationSet = validation;
                o.EarlyStoppingPatience = 3;
                o.GradientAccumulationSteps = 2;
                o.CheckpointFolder = checkpoints;
                o.CheckpointEverySteps = 2;
                o.Progress = progress;
                return o;
            }

            ITransformer model = method switch
            {
                "ls-llama" => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(
                    Common(new LabelSupervisedLlamaOptions { LoraRank = 4, LoraAlpha = 8, LoraDropout = 0.1 })).Fit(train),
                "prompt-tuning" => ml.MulticlassClassification.Trainers.PromptTuning(Common(new PromptTuningOptions { VirtualTokenCount = 4 })).Fit(train),
                "prefix-tuning" => ml.MulticlassClassification.Trainers.PrefixTuning(Common(new PrefixTuningOptions())).Fit(train),
                "l-tuning" => ml.MulticlassClassification.Trainers.LTuningPrefix(Common(new LTuningOptions
                {
                    LabelTexts = ["The text is about something negative", "The text is about something positive", "The text is about sport"],
                    NegativesPerExample = 2,
                })).Fit(train),
                _ => throw new ArgumentException(method, nameof(method)),
            };

            var test = labels.Transform(ml.Data.LoadFromEnumerable(ToyData.Rows(12, seed: 2)));
            foreach (var row in model.Transform(test).GetColumn<float[]>("Score"))
            {
                trace.AppendLine("score " + string.Join(' ', row.Select(s => s.ToString("R", CultureInfo.InvariantCulture))));
            }

            (model as IDisposable)?.Dispose();
            return trace.ToString();
        }
        finally
        {
            Directory.Delete(checkpoints, recursive: true);
        }
    }

    private static string PretrainingTrace()
    {
        var folder = Directory.CreateTempSubdirectory("lt-trace-pretrain-").FullName;
        try
        {
            File.Copy(TinyModels.TokenizerModel, Path.Combine(folder, "tokenizer.model"));
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
                """{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");
            var corpus = Path.Combine(folder, "corpus.txt");
            File.WriteAllText(corpus, string.Join("\n\n", ToyData.Rows(60, seed: 4).Select(r => r.Text)));
            var trace = new StringBuilder();
            CausalLmPretrainerOptions Options(string run, int steps) => new()
            {
                ModelConfig = TinyModels.Config(hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, vocab: 400),
                TokenizerFolder = folder,
                CorpusFiles = [corpus],
                ValidationFile = corpus,
                SequenceLength = 16,
                BatchSize = 4,
                LearningRate = 2e-3,
                WarmupSteps = 2,
                MaxTokens = steps * 4L * 16,
                CheckpointFolder = Path.Combine(folder, run),
                PortableStateFolder = Path.Combine(folder, "state"),
                ResumeWarmupSteps = 3,
                EvalEverySteps = 3,
                EvalMaxTokens = 64,
                LogEverySteps = 1,
                Seed = 11,
                Progress = new SyncProgress<PretrainingProgress>(p => trace.AppendLine(CultureInfo.InvariantCulture,
                    $"{run} step {p.Step}/{p.TotalSteps} tokens {p.Tokens} loss {p.Loss:R} lr {p.LearningRate:R} ppl {p.ValidationPerplexity:R}")),
            };

            // A run of 6 steps, then a fresh run folder continuing from the portable state (moments reset, re-warmup) to 12.
            new CausalLmPretrainer(Options("first", 6)).Run();
            var summary = new CausalLmPretrainer(Options("second", 12)).Run();
            trace.AppendLine(CultureInfo.InvariantCulture, $"summary {summary.Steps} {summary.Tokens} {summary.LastLoss:R} {summary.BestValidationPerplexity:R} {summary.BestStep}");
            using var scope = NewDisposeScope();
            var info = PortablePretrainingState.Read(Path.Combine(folder, "state"))!;
            var (weights, _) = SafeTensors.ReadFile(Path.Combine(folder, "state", info.WeightsFile));
            foreach (var (name, tensor) in weights.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                trace.AppendLine(CultureInfo.InvariantCulture, $"weight {name} {Convert.ToHexString(SHA256.HashData(tensor.bytes))}");
            }

            return trace.ToString();
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void Save(string name, string trace)
    {
        Assert.IsTrue(trace.Length > 0);
        if (Environment.GetEnvironmentVariable("LABELTUNING_TRACE_FOLDER") is { Length: > 0 } folder)
        {
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, name), trace);
        }
    }

    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
