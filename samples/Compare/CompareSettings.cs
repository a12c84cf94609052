using LabelTuning.Samples;

namespace Compare;

/// <summary>
/// The comparison's command line. Quick mode subsamples and trains one epoch. Full mode (600 training and 300 test rows
/// per data set, 2 epochs, 128 tokens) is sized for about 30 minutes on 2 cores, an estimate and not a measurement: its 18
/// fits read about 3.3M padded tokens (L-Tuning's true and false pairs counted twice). That is 6 minutes at the 9.4k
/// tokens/s docs/performance.md measured for LS-LLaMA on a nearly idle machine, and about 30 minutes at 1.9k tokens/s;
/// on a busy machine torch slows far more than the load suggests (the SpamFilter sample trained at 520 tokens/s at load 8),
/// and then full mode takes hours. Scoring adds L-Tuning's K passes per test text.
/// </summary>
internal sealed class CompareSettings
{
    public const string Usage = """
        Usage: dotnet run --project samples/Compare -c Release -- [options]
          --quick            subsample (200 training and 100 test rows per data set), 1 epoch, 64 tokens: a smoke run
          --model DIR        a Hugging Face LLaMA-family folder (default: the embedded models/labeltuning-default)
          --data DIR         folder holding imdb/, spam/ and austen/ (default: data)
          --out DIR          where results.md, results.png and results.json go (default: docs)
          --datasets LIST    comma-separated, from imdb,spam,austen (default: all)
          --methods LIST     comma-separated, from ls-llama,prompt,dept,prefix,ltuning-prefix,ltuning-prompt,ltuning-prompt-after,sdca (default: all)
          --train-size N     balanced training rows per data set (default: quick 200; full 600)
          --test-size N      balanced test rows per data set (default: quick 100; full 300)
          --epochs N         passes over the training rows (default: quick 1; full 2)
          --max-length N     tokens per text, BOS and EOS included (default: quick 64; full 128)
          --batch N          texts per step (default: quick 8; full 16)
          --seed N           seed (default 0)
          --from-json FILE   train nothing: rewrite results.md and results.png (in --out) from a results.json an earlier run wrote
        """;

    public static readonly string[] AllDatasets = ["imdb", "spam", "austen"];

    public static readonly string[] AllMethods = ["ls-llama", "prompt", "dept", "prefix", "ltuning-prefix", "ltuning-prompt", "ltuning-prompt-after", "sdca"];

    public bool Help { get; private init; }

    public bool Quick { get; private init; }

    public string? ModelPath { get; private init; }

    public string? DataRoot { get; private init; }

    public string? OutPath { get; private init; }

    public IReadOnlyList<string> DatasetNames { get; private init; } = AllDatasets;

    public IReadOnlyList<string> MethodNames { get; private init; } = AllMethods;

    public int? TrainRows { get; private init; }

    public int? TestRows { get; private init; }

    public int Epochs { get; private init; }

    public int MaxLength { get; private init; }

    public int BatchSize { get; private init; }

    public int Seed { get; private init; }

    public string? FromJson { get; private init; }

    /// <summary>Settings that describe an earlier run, read back from its results.json.</summary>
    public static CompareSettings ForReport(bool quick, int epochs, int batch, int maxLength, int seed, string[] datasets, string[] methods) => new()
    {
        Quick = quick,
        Epochs = epochs,
        BatchSize = batch,
        MaxLength = maxLength,
        Seed = seed,
        DatasetNames = datasets,
        MethodNames = methods,
    };

    /// <summary>Balanced training rows to take (a data set with fewer gives all it has).</summary>
    public int TrainSize => TrainRows ?? (Quick ? 200 : 600);

    /// <summary>Balanced test rows to take (a data set with fewer gives all it has).</summary>
    public int TestSize => TestRows ?? (Quick ? 100 : 300);

    public static CompareSettings Parse(string[] args)
    {
        var cli = SampleArgs.Parse(args,
            ["--model", "--data", "--out", "--datasets", "--methods", "--train-size", "--test-size", "--epochs", "--max-length", "--batch", "--seed", "--from-json"], ["--quick"]);
        if (cli.Free.Count > 0)
        {
            throw new ArgumentException($"Unexpected argument '{cli.Free[0]}'.");
        }

        var quick = cli.Flag("--quick");
        return new CompareSettings
        {
            Help = cli.Help,
            Quick = quick,
            ModelPath = cli.String("--model"),
            DataRoot = cli.String("--data"),
            OutPath = cli.String("--out"),
            DatasetNames = List(cli.String("--datasets"), AllDatasets, "--datasets"),
            MethodNames = List(cli.String("--methods"), AllMethods, "--methods"),
            TrainRows = cli.String("--train-size") is null ? null : cli.Int("--train-size", 0),
            TestRows = cli.String("--test-size") is null ? null : cli.Int("--test-size", 0),
            Epochs = cli.Int("--epochs", quick ? 1 : 2, minimum: 1),
            MaxLength = cli.Int("--max-length", quick ? 64 : 128, minimum: 8),
            BatchSize = cli.Int("--batch", quick ? 8 : 16, minimum: 1),
            Seed = cli.Int("--seed", 0),
            FromJson = cli.String("--from-json"),
        };
    }

    private static string[] List(string? value, string[] allowed, string option)
    {
        if (value is null)
        {
            return allowed;
        }

        var items = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var unknown = items.FirstOrDefault(i => !allowed.Contains(i, StringComparer.Ordinal));
        if (unknown is not null || items.Length == 0)
        {
            throw new ArgumentException($"{option} takes a comma-separated list from {string.Join(",", allowed)} but has '{unknown ?? value}'.");
        }

        return items;
    }
}
