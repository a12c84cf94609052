using System.Globalization;
using System.Runtime.InteropServices;
using LabelTuning.Pretrain;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Pretraining;
using Microsoft.ML.LabelTuning.Runtime;

// Pretrains the embedded default model and exports it. See docs/models/labeltuning-default.md.
const string usage = """
    Usage: LabelTuning.Pretrain <command> [options]
      train    pretrain (or resume) the default model
               --run-dir DIR            checkpoints, metrics.jsonl and best/ (default artifacts/pretrain-run)
               --corpus FILE            training text, repeatable (default data/.cache/pretrain/corpus.txt)
               --valid FILE             validation text (default data/.cache/pretrain/valid.txt)
               --tokenizer DIR          tokenizer folder (default models/labeltuning-default)
               --state DIR              portable state committed to the repository: the run starts from it when the
                                        run dir holds no checkpoint, and rewrites it at every checkpoint
                                        (default models/labeltuning-default/pretraining; "none" disables)
               --max-tokens N           token budget; the schedule ends here (default 48000000)
               --schedule wsd|cosine    warmup-stable-decay (default) or cosine
               --decay-fraction X       the last fraction of the steps over which wsd decays (default 0.2)
               --resume-warmup N        re-warmup steps after a start from the portable state (default 50)
               --max-minutes M          stop this process after M minutes, with a checkpoint (resume later)
               --lr X --warmup N --min-lr-ratio X --weight-decay X --seed N
               --batch N --seq N        (default 16 x 256)
               --eval-every N           steps between validations (default 250)
               --checkpoint-minutes M   minutes between checkpoints (default 8)
      export   write the best checkpoint to models/labeltuning-default (float16) and docs/models/labeltuning-default.md
               --run-dir DIR --out DIR --card FILE --dtype float16|bfloat16|float32
               --valid FILE --corpus FILE  (to score the exported weights and count the corpus; defaults as for train)
      status   print the run's position and best validation perplexity
               --run-dir DIR
      seed-state  write a first portable state from exported weights (a one-time migration of a run whose
               checkpoint was lost): --from DIR --step N --train-hours H --note TEXT, plus the train options
    Threads: LABELTUNING_THREADS (default: all cores).
    """;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine(usage);
    return args.Length == 0 ? 2 : 0;
}

var options = Args.Parse(args.Skip(1).ToArray());
var root = RepoPaths.FindRoot();
string RunDir() => Path.GetFullPath(options.Get("run-dir") ?? Path.Combine(root, "artifacts", "pretrain-run"));

switch (args[0])
{
    case "train":
        return Train();
    case "export":
        {
            TorchRuntime.EnsureInitialized();
            var corpusFiles = options.GetAll("corpus").Select(Path.GetFullPath).ToList();
            if (corpusFiles.Count == 0)
            {
                corpusFiles.Add(Path.Combine(root, "data", ".cache", "pretrain", "corpus.txt"));
            }

            var result = Export.Run(
                RunDir(),
                Path.GetFullPath(options.Get("out") ?? Path.Combine(root, "models", "labeltuning-default")),
                Path.GetFullPath(options.Get("card") ?? Path.Combine(root, "docs", "models", "labeltuning-default.md")),
                options.Get("dtype") ?? "float16",
                root,
                Path.GetFullPath(options.Get("valid") ?? Path.Combine(root, "data", ".cache", "pretrain", "valid.txt")),
                corpusFiles);
            Console.WriteLine(result);
            return 0;
        }

    case "seed-state":
        {
            TorchRuntime.EnsureInitialized();
            var pretrainer = BuildOptions();
            if (pretrainer is null)
            {
                return 1;
            }

            new CausalLmPretrainer(pretrainer).WritePortableStateFromModel(
                Path.GetFullPath(options.Get("from") ?? Path.Combine(root, "models", "labeltuning-default")),
                options.GetLong("step", 0),
                options.GetDouble("train-hours", 0) * 3600,
                options.Get("note") ?? "seeded from exported weights");
            Console.WriteLine($"wrote {Path.Combine(pretrainer.PortableStateFolder!, "pretraining-state.json")}");
            return 0;
        }

    case "status":
        Console.WriteLine(Export.Status(RunDir()));
        return 0;
    default:
        Console.Error.WriteLine($"Unknown command '{args[0]}'.");
        Console.Error.WriteLine(usage);
        return 2;
}

CausalLmPretrainerOptions? BuildOptions()
{
    var runDir = RunDir();
    var tokenizer = Path.GetFullPath(options.Get("tokenizer") ?? Path.Combine(root, "models", "labeltuning-default"));
    var corpus = options.GetAll("corpus").Select(Path.GetFullPath).ToList();
    if (corpus.Count == 0)
    {
        corpus.Add(Path.Combine(root, "data", ".cache", "pretrain", "corpus.txt"));
    }

    var valid = Path.GetFullPath(options.Get("valid") ?? Path.Combine(root, "data", ".cache", "pretrain", "valid.txt"));
    foreach (var file in corpus.Append(valid))
    {
        if (!File.Exists(file))
        {
            Console.Error.WriteLine($"'{file}' does not exist. Build the corpus first: bash data/fetch.sh && dotnet run --project tools/LabelTuning.DataPrep -- build-all");
            return null;
        }
    }

    var state = options.Get("state") ?? Path.Combine(root, "models", "labeltuning-default", "pretraining");
    return new CausalLmPretrainerOptions
    {
        ModelConfig = DefaultModel.Config,
        TokenizerFolder = tokenizer,
        CorpusFiles = corpus,
        ValidationFile = valid,
        SequenceLength = options.GetInt("seq", 256),
        BatchSize = options.GetInt("batch", 16),
        LearningRate = options.GetDouble("lr", DefaultModel.LearningRate),
        WarmupSteps = options.GetInt("warmup", DefaultModel.WarmupSteps),
        MinLearningRateRatio = options.GetDouble("min-lr-ratio", DefaultModel.MinLearningRateRatio),
        Schedule = (options.Get("schedule") ?? "wsd") switch
        {
            "wsd" => PretrainingSchedule.WarmupStableDecay,
            "cosine" => PretrainingSchedule.Cosine,
            var other => throw new ArgumentException($"--schedule must be 'wsd' or 'cosine' but is '{other}'."),
        },
        DecayFraction = options.GetDouble("decay-fraction", DefaultModel.DecayFraction),
        ResumeWarmupSteps = options.GetInt("resume-warmup", DefaultModel.ResumeWarmupSteps),
        PortableStateFolder = state == "none" ? null : Path.GetFullPath(state),
        WeightDecay = options.GetDouble("weight-decay", 0.1),
        MaxTokens = options.GetLong("max-tokens", DefaultModel.MaxTokens),
        MaxMinutes = options.Get("max-minutes") is null ? null : options.GetDouble("max-minutes", 0),
        CheckpointFolder = runDir,
        CheckpointIntervalMinutes = options.GetDouble("checkpoint-minutes", 8),
        EvalEverySteps = options.GetInt("eval-every", 250),
        LogEverySteps = options.GetInt("log-every", 10),
        Seed = options.GetInt("seed", 0),
        Progress = new ConsoleProgress(),
    };
}

int Train()
{
    TorchRuntime.EnsureInitialized();
    var runDir = RunDir();
    if (BuildOptions() is not { } pretrainer)
    {
        return 1;
    }

    var corpus = pretrainer.CorpusFiles;

    // Ctrl+C and SIGTERM stop at the next step boundary and write a checkpoint before exiting.
    using var cancel = new CancellationTokenSource();
    void Stop(PosixSignalContext context)
    {
        context.Cancel = true;
        cancel.Cancel();
        Console.WriteLine($"{context.Signal}: stopping after this step and writing a checkpoint...");
    }

    using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
    using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
    pretrainer.CancellationToken = cancel.Token;

    Console.WriteLine($"run dir {runDir}; threads {TorchRuntime.Threads}; corpus {string.Join(", ", corpus)}");
    Console.WriteLine($"model {DefaultModel.Describe()}; batch {pretrainer.BatchSize} x {pretrainer.SequenceLength}; lr {pretrainer.LearningRate} warmup {pretrainer.WarmupSteps}; {pretrainer.Schedule} (decay {pretrainer.DecayFraction}, floor {pretrainer.MinLearningRateRatio}); max tokens {pretrainer.MaxTokens:N0}; portable state {pretrainer.PortableStateFolder ?? "none"}");
    try
    {
        var summary = new CausalLmPretrainer(pretrainer).Run();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: step {summary.Steps}/{summary.TotalSteps}, {summary.Tokens:N0} tokens, {summary.TrainSeconds / 3600:F2} h, {summary.TokensPerSecond:F0} tok/s this process, best val ppl {summary.BestValidationPerplexity:F2} at step {summary.BestStep}, completed {summary.Completed}"));
        return 0;
    }
    catch (OperationCanceledException)
    {
        Console.WriteLine("stopped; the checkpoint is written. Run the same command to resume.");
        return 0;
    }
}

internal sealed class ConsoleProgress : IProgress<PretrainingProgress>
{
    public void Report(PretrainingProgress value)
    {
        var ppl = value.ValidationPerplexity is { } p ? string.Create(CultureInfo.InvariantCulture, $" val_ppl {p:F2}") : string.Empty;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.Now:HH:mm:ss} step {value.Step}/{value.TotalSteps} tokens {value.Tokens:N0} loss {value.Loss:F4} lr {value.LearningRate:G3} {value.TokensPerSecond:F0} tok/s elapsed {value.Elapsed.TotalHours:F2} h{ppl}"));
    }
}

/// <summary>The default model's architecture and pretraining recipe.</summary>
internal static class DefaultModel
{
    public const double LearningRate = 1e-3;
    public const int WarmupSteps = 300;
    public const long MaxTokens = 48_000_000;
    public const double MinLearningRateRatio = 0.01;
    public const double DecayFraction = 0.2;
    public const int ResumeWarmupSteps = 50;

    public static LlamaConfig Config { get; } = new()
    {
        HiddenSize = 256,
        IntermediateSize = 688,
        NumHiddenLayers = 4,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 4,
        VocabSize = 8000,
        MaxPositionEmbeddings = 1024,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        BosTokenId = 1,
        EosTokenId = [2],
        TieWordEmbeddings = false,
        InitializerRange = 0.02,
    };

    public static string Describe()
        => $"hidden {Config.HiddenSize}, {Config.NumHiddenLayers} layers, {Config.NumAttentionHeads} heads (kv {Config.KeyValueHeadCount}), intermediate {Config.IntermediateSize}, vocab {Config.VocabSize}, tied {Config.TieWordEmbeddings}";
}

/// <summary>--name value options; a name may repeat.</summary>
internal sealed class Args
{
    private readonly List<(string Name, string Value)> _pairs = [];

    public static Args Parse(string[] args)
    {
        var parsed = new Args();
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"Expected '--name value' but found '{args[i]}'.");
            }

            parsed._pairs.Add((args[i][2..], args[++i]));
        }

        return parsed;
    }

    public string? Get(string name) => _pairs.LastOrDefault(p => p.Name == name).Value;

    public IEnumerable<string> GetAll(string name) => _pairs.Where(p => p.Name == name).Select(p => p.Value);

    public int GetInt(string name, int fallback) => Get(name) is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    public long GetLong(string name, long fallback) => Get(name) is { } v ? checked((long)double.Parse(v, CultureInfo.InvariantCulture)) : fallback;

    public double GetDouble(string name, double fallback) => Get(name) is { } v ? double.Parse(v, CultureInfo.InvariantCulture) : fallback;
}

/// <summary>Finds the repository root: the folder holding Microsoft.ML.LabelTuning.sln.</summary>
internal static class RepoPaths
{
    public static string FindRoot()
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

        return Directory.GetCurrentDirectory();
    }
}
