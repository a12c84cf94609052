using LabelTuning.Samples;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Sweep;

namespace SweepSample;

/// <summary>The sample's command line. The defaults finish in about 5 minutes on 2 CPU cores.</summary>
internal sealed class SweepSettings
{
    public const string Usage = """
        Usage: dotnet run --project samples/Sweep -- [options]
          --model DIR        a Hugging Face LLaMA-family folder (default: models/labeltuning-default)
          --data DIR         folder with train.tsv and test.tsv, columns Label, Text (default: data/spam)
          --out DIR          where the leaderboard, the plot and the best model go (default: artifacts/sweep)
          --train-size N     balanced training rows from train.tsv (default 240)
          --valid-size N     balanced validation rows from test.tsv, which the sweep ranks trials on (default 160)
          --test-size N      further test.tsv rows the best model is scored on at the end (default 300)
          --max-length N     tokens per text (default 64)
          --batch N          texts per step (default 16)
          --seconds N        time budget of the sweep (default 240)
          --trials N         trial budget; 0 = only the time bounds the sweep (default 0)
          --tuner T          halving (successive halving over 1, 3 epochs) or random (default halving)
          --metric M         macro, micro, logloss or f1 (default macro)
          --methods LIST     comma-separated: ls, prompt, prefix, ltuning-prefix, ltuning-prompt (default all)
          --seed N           seed of the tuner and of every trial (default 0)
          --fresh            forget the trials recorded in OUT/checkpoint (by default the sweep resumes from them)
        """;

    /// <summary>The parsed command line, for <c>--model</c>, <c>--data</c> and <c>--out</c> (see <see cref="SampleFolders.Resolve"/>).</summary>
    public required SampleArgs Cli { get; init; }

    public int TrainSize { get; private init; }

    public int ValidSize { get; private init; }

    public int TestSize { get; private init; }

    public int MaxLength { get; private init; }

    public int BatchSize { get; private init; }

    public uint Seconds { get; private init; }

    public int Trials { get; private init; }

    public bool Halving { get; private init; }

    public LabelTuningMetric Metric { get; private init; } = LabelTuningMetric.MacroAccuracy;

    public List<TuningMethod> Methods { get; private init; } = [];

    public int Seed { get; private init; }

    public bool Fresh { get; private init; }

    public bool Help { get; private init; }

    public static SweepSettings Parse(string[] args)
    {
        var cli = SampleArgs.Parse(args,
            ["--model", "--data", "--out", "--train-size", "--valid-size", "--test-size", "--max-length", "--batch", "--seconds", "--trials", "--tuner", "--metric", "--methods", "--seed"],
            ["--fresh"]);
        if (cli.Free.Count > 0)
        {
            throw new ArgumentException($"Unexpected argument '{cli.Free[0]}'; every option starts with --.");
        }

        return new SweepSettings
        {
            Help = cli.Help,
            Fresh = cli.Flag("--fresh"),
            Cli = cli,
            TrainSize = cli.Int("--train-size", 240, minimum: 2),
            ValidSize = cli.Int("--valid-size", 160, minimum: 2),
            TestSize = cli.Int("--test-size", 300),
            MaxLength = cli.Int("--max-length", 64, minimum: 8),
            BatchSize = cli.Int("--batch", 16, minimum: 1),
            Seconds = (uint)cli.Int("--seconds", 240, minimum: 1),
            Trials = cli.Int("--trials", 0),
            Seed = cli.Int("--seed", 0),
            Halving = cli.String("--tuner") switch
            {
                null or "halving" => true,
                "random" => false,
                var value => throw new ArgumentException($"--tuner must be halving or random but is '{value}'."),
            },
            Metric = cli.String("--metric") switch
            {
                null or "macro" => LabelTuningMetric.MacroAccuracy,
                "micro" => LabelTuningMetric.MicroAccuracy,
                "logloss" => LabelTuningMetric.LogLoss,
                "f1" => LabelTuningMetric.F1,
                var value => throw new ArgumentException($"--metric must be macro, micro, logloss or f1 but is '{value}'."),
            },
            Methods = (cli.String("--methods") ?? string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(m => m switch
            {
                "ls" => TuningMethod.LabelSupervised,
                "prompt" => TuningMethod.PromptTuning,
                "prefix" => TuningMethod.PrefixTuning,
                "ltuning-prefix" => TuningMethod.LTuningPrefix,
                "ltuning-prompt" => TuningMethod.LTuningPrompt,
                _ => throw new ArgumentException($"--methods: unknown method '{m}'; use ls, prompt, prefix, ltuning-prefix or ltuning-prompt."),
            }).Distinct().ToList(),
        };
    }
}
