using System.Globalization;
using LabelTuning.Samples;

namespace Compare;

/// <summary>
/// The comparison's command line. Quick mode subsamples and trains one epoch: a smoke run. Full mode trains every method on
/// all training rows of each data set, at 256 tokens, with the learning rate and epochs that <c>--tune</c> chose on
/// validation rows (docs/tuned-settings.json), and scores all test rows. <c>--curve</c> draws the learning curve instead.
/// </summary>
internal sealed class CompareSettings
{
    public const string Usage = """
        Usage: dotnet run --project samples/Compare -c Release -- [options]
          --quick            subsample (200 training and 100 test rows per data set), 1 epoch, 64 tokens: a smoke run
          --tune             first choose each LLaMA method's learning rate and epochs on validation rows held out from
                             train.tsv (never test rows) and write them to --tuned; then compare with them. A stopped
                             --tune continues: methods already in --tuned for this model and these rows are kept
          --tune-only        as --tune, but stop once the settings are written (no comparison, docs/results.* untouched)
          --tuned FILE       the chosen settings (default: docs/tuned-settings.json; full mode reads it when it exists)
          --untuned          ignore --tuned: every method at its default learning rate and --epochs
          --tune-epochs LIST successive-halving rungs in epochs (default 2,6: three learning rates at 2, the best at 6)
          --tune-fit-size N  balanced fit rows per data set while tuning (default 600; 0 = all but the validation rows)
          --tune-valid-size N  validation rows per data set while tuning, the last of each label in train.tsv (default 200)
          --curve            draw the learning curve instead: test accuracy against training rows (--curve-sizes), the same
                             rows for every method at each size and seed; writes docs/learning-curve.json and
                             docs/results-learning-curve.png and adds the table to docs/results.md
          --curve-sizes LIST training rows per point (default 32,64,128,256,512,1024); methods (unless --methods):
                             LS-LLaMA, the prompt-family method with the best validation accuracy, L-Tuning prefix, SDCA;
                             test rows default to 500 (--test-size) and tokens to 128 (--max-length)
          --curve-seeds N    row draws per size up to 128 rows (default 3; larger sizes use 1)
          --curve-min-steps N  at least this many optimizer steps per fit, so tiny sets are not under-trained (default 40)
          --model DIR        a Hugging Face LLaMA-family folder (default: the embedded models/labeltuning-default)
          --data DIR         folder holding imdb/, spam/ and austen/ (default: data)
          --out DIR          where results.md, results.png and results.json go (default: docs)
          --datasets LIST    comma-separated, from imdb,spam,austen (default: all)
          --methods LIST     comma-separated, from ls-llama,prompt,dept,prefix,ltuning-prefix,ltuning-prompt,ltuning-prompt-after,sdca (default: all)
          --train-size N     balanced training rows per data set (default: quick 200; full 0 = all)
          --test-size N      balanced test rows per data set (default: quick 100; full 0 = all)
          --epochs N         passes over the training rows where nothing was tuned (default: quick 1; full 2)
          --max-length N     tokens per text, BOS and EOS included, on every data set (default: quick 64; full 256, imdb 512)
          --batch N          texts per step (default: quick 8; full 16)
          --seed N           seed (default 0)
          --from-json FILE   train nothing: rewrite results.md and results.png (in --out) from a results.json an earlier run wrote,
                             and results-learning-curve.png from the learning-curve.json beside it
        A stopped full run or --curve continues when started again with the same settings: each finished method (each
        curve point) is kept in results.partial.json (learning-curve.partial.json) in --out until the run is done; a
        method whose learning rate or epochs changed since (tuned again) runs again.
          --keep-unchanged   full mode: take the results of the finished run in --out (results.json) where nothing that
                             decides them changed, and run only the rest (a method tuned again, one that failed)
        """;

    public static readonly string[] AllDatasets = ["imdb", "spam", "austen"];

    public static readonly string[] AllMethods = ["ls-llama", "prompt", "dept", "prefix", "ltuning-prefix", "ltuning-prompt", "ltuning-prompt-after", "sdca"];

    /// <summary>The prompt family: the learning curve runs the one with the best validation accuracy (prompt tuning when nothing was tuned).</summary>
    public static readonly string[] PromptFamily = ["prompt", "dept", "prefix"];

    /// <summary>Gets a value indicating whether --methods was given (the learning curve otherwise picks its own methods).</summary>
    public bool MethodsGiven { get; private init; }

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

    public bool Tune { get; private init; }

    /// <summary>Gets a value indicating whether the run stops once the tuned settings are written (<c>--tune-only</c>).</summary>
    public bool TuneOnly { get; private init; }

    public bool Untuned { get; private init; }

    public string? TunedPath { get; private init; }

    public int[] TuneEpochs { get; private init; } = [2, 6];

    public int TuneFitSize { get; private init; } = 600;

    public int TuneValidationSize { get; private init; } = 200;

    public bool Curve { get; private init; }

    /// <summary>Gets a value indicating whether --max-length was given (then it applies to every data set).</summary>
    public bool MaxLengthGiven { get; private init; }

    /// <summary>Tokens per text on a data set: --max-length when given; in full mode the data set's own length where it has one; else <see cref="MaxLength"/>.</summary>
    public int MaxLengthFor(Dataset dataset)
        => !MaxLengthGiven && !Quick && !Curve && dataset.FullMaxLength is { } length ? length : MaxLength;

    /// <summary>Gets a value indicating whether full mode keeps the finished run's results where nothing that decides them changed (<c>--keep-unchanged</c>).</summary>
    public bool KeepUnchanged { get; private init; }

    public int[] CurveSizes { get; private init; } = [32, 64, 128, 256, 512, 1024];

    public int CurveSeeds { get; private init; } = 3;

    public int CurveMinSteps { get; private init; } = 40;

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
    public int TrainSize => TrainRows ?? (Quick ? 200 : 0);

    /// <summary>Balanced test rows to take (a data set with fewer gives all it has).</summary>
    public int TestSize => TestRows ?? (Quick ? 100 : 0);

    public static CompareSettings Parse(string[] args)
    {
        var cli = SampleArgs.Parse(args,
            ["--model", "--data", "--out", "--datasets", "--methods", "--train-size", "--test-size", "--epochs", "--max-length", "--batch", "--seed", "--from-json",
              "--tuned", "--tune-epochs", "--tune-fit-size", "--tune-valid-size", "--curve-sizes", "--curve-seeds", "--curve-min-steps"],
            ["--quick", "--tune", "--tune-only", "--untuned", "--curve", "--keep-unchanged"]);
        if (cli.Free.Count > 0)
        {
            throw new ArgumentException($"Unexpected argument '{cli.Free[0]}'.");
        }

        var quick = cli.Flag("--quick");
        var curve = cli.Flag("--curve");
        if ((cli.Flag("--tune") || cli.Flag("--tune-only")) && cli.Flag("--untuned"))
        {
            throw new ArgumentException("--tune and --untuned exclude each other.");
        }

        var tuneEpochs = Numbers(cli.String("--tune-epochs"), [2, 6], "--tune-epochs");
        if (tuneEpochs.Zip(tuneEpochs.Skip(1)).Any(p => p.Second <= p.First))
        {
            throw new ArgumentException($"--tune-epochs takes increasing epochs, e.g. 2,6, but has '{cli.String("--tune-epochs")}'.");
        }

        return new CompareSettings
        {
            Help = cli.Help,
            Quick = quick,
            ModelPath = cli.String("--model"),
            DataRoot = cli.String("--data"),
            OutPath = cli.String("--out"),
            TrainRows = cli.String("--train-size") is null ? null : cli.Int("--train-size", 0),
            TestRows = cli.String("--test-size") is null ? (curve ? 500 : null) : cli.Int("--test-size", 0),
            Epochs = cli.Int("--epochs", quick ? 1 : 2, minimum: 1),
            MaxLength = cli.Int("--max-length", quick ? 64 : curve ? 128 : 256, minimum: 8),
            MaxLengthGiven = cli.String("--max-length") is not null,
            BatchSize = cli.Int("--batch", quick ? 8 : 16, minimum: 1),
            Seed = cli.Int("--seed", 0),
            FromJson = cli.String("--from-json"),
            Tune = cli.Flag("--tune") || cli.Flag("--tune-only"),
            TuneOnly = cli.Flag("--tune-only"),
            Untuned = cli.Flag("--untuned"),
            KeepUnchanged = cli.Flag("--keep-unchanged"),
            TunedPath = cli.String("--tuned"),
            TuneEpochs = tuneEpochs,
            TuneFitSize = cli.Int("--tune-fit-size", 600),
            TuneValidationSize = cli.Int("--tune-valid-size", 200, minimum: 2),
            Curve = curve,
            CurveSizes = Numbers(cli.String("--curve-sizes"), [32, 64, 128, 256, 512, 1024], "--curve-sizes"),
            CurveSeeds = cli.Int("--curve-seeds", 3, minimum: 1),
            CurveMinSteps = cli.Int("--curve-min-steps", 40, minimum: 1),
            DatasetNames = List(cli.String("--datasets"), curve ? ["imdb", "spam"] : AllDatasets, AllDatasets, "--datasets"),
            MethodNames = List(cli.String("--methods"), AllMethods, AllMethods, "--methods"),
            MethodsGiven = cli.String("--methods") is not null,
        };
    }

    private static int[] Numbers(string? value, int[] fallback, string option)
    {
        if (value is null)
        {
            return fallback;
        }

        var items = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var numbers = items.Select(i => int.TryParse(i, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : -1).ToArray();
        if (numbers.Length == 0 || numbers.Any(n => n <= 0))
        {
            throw new ArgumentException($"{option} takes a comma-separated list of positive integers but has '{value}'.");
        }

        return numbers;
    }

    private static string[] List(string? value, string[] fallback, string[] allowed, string option)
    {
        if (value is null)
        {
            return fallback;
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
