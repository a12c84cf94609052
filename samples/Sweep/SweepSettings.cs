using System.Globalization;
using Microsoft.ML.LabelTuning.Methods;

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

    public string? ModelPath { get; private set; }

    public string? DataPath { get; private set; }

    public string? OutPath { get; private set; }

    public int TrainSize { get; private set; } = 240;

    public int ValidSize { get; private set; } = 160;

    public int TestSize { get; private set; } = 300;

    public int MaxLength { get; private set; } = 64;

    public int BatchSize { get; private set; } = 16;

    public uint Seconds { get; private set; } = 240;

    public int Trials { get; private set; }

    public bool Halving { get; private set; } = true;

    public Microsoft.ML.LabelTuning.Sweep.LabelTuningMetric Metric { get; private set; } = Microsoft.ML.LabelTuning.Sweep.LabelTuningMetric.MacroAccuracy;

    public List<TuningMethod> Methods { get; private set; } = [];

    public int Seed { get; private set; }

    public bool Fresh { get; private set; }

    public bool Help { get; private set; }

    public static SweepSettings Parse(string[] args)
    {
        var s = new SweepSettings();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            switch (arg)
            {
                case "-h" or "--help":
                    s.Help = true;
                    continue;
                case "--fresh":
                    s.Fresh = true;
                    continue;
            }

            if (i + 1 >= args.Length)
            {
                throw new ArgumentException($"Option '{arg}' needs a value.");
            }

            var value = args[++i];
            switch (arg)
            {
                case "--model": s.ModelPath = value; break;
                case "--data": s.DataPath = value; break;
                case "--out": s.OutPath = value; break;
                case "--train-size": s.TrainSize = Int(arg, value, 2); break;
                case "--valid-size": s.ValidSize = Int(arg, value, 2); break;
                case "--test-size": s.TestSize = Int(arg, value, 0); break;
                case "--max-length": s.MaxLength = Int(arg, value, 8); break;
                case "--batch": s.BatchSize = Int(arg, value, 1); break;
                case "--seconds": s.Seconds = (uint)Int(arg, value, 1); break;
                case "--trials": s.Trials = Int(arg, value, 0); break;
                case "--seed": s.Seed = Int(arg, value, 0); break;
                case "--tuner":
                    s.Halving = value switch
                    {
                        "halving" => true,
                        "random" => false,
                        _ => throw new ArgumentException($"--tuner must be halving or random but is '{value}'."),
                    };
                    break;
                case "--metric":
                    s.Metric = value switch
                    {
                        "macro" => Microsoft.ML.LabelTuning.Sweep.LabelTuningMetric.MacroAccuracy,
                        "micro" => Microsoft.ML.LabelTuning.Sweep.LabelTuningMetric.MicroAccuracy,
                        "logloss" => Microsoft.ML.LabelTuning.Sweep.LabelTuningMetric.LogLoss,
                        "f1" => Microsoft.ML.LabelTuning.Sweep.LabelTuningMetric.F1,
                        _ => throw new ArgumentException($"--metric must be macro, micro, logloss or f1 but is '{value}'."),
                    };
                    break;
                case "--methods":
                    s.Methods = value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(m => m switch
                    {
                        "ls" => TuningMethod.LabelSupervised,
                        "prompt" => TuningMethod.PromptTuning,
                        "prefix" => TuningMethod.PrefixTuning,
                        "ltuning-prefix" => TuningMethod.LTuningPrefix,
                        "ltuning-prompt" => TuningMethod.LTuningPrompt,
                        _ => throw new ArgumentException($"--methods: unknown method '{m}'; use ls, prompt, prefix, ltuning-prefix or ltuning-prompt."),
                    }).Distinct().ToList();
                    break;
                default:
                    throw new ArgumentException($"Unknown option '{arg}'.");
            }
        }

        return s;
    }

    private static int Int(string option, string value, int minimum)
    {
        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < minimum)
        {
            throw new ArgumentException($"{option} must be an integer of at least {minimum} but is '{value}'.");
        }

        return n;
    }
}

/// <summary>One labelled text of the sample's TSV files.</summary>
public sealed class Message
{
    public string Label { get; set; } = string.Empty;

    public string Text { get; set; } = string.Empty;
}

/// <summary>Reads <c>Label\tText</c> files and takes balanced subsets.</summary>
internal static class Messages
{
    public static List<Message> Load(string path)
    {
        var rows = new List<Message>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            if (++lineNumber == 1)
            {
                if (!line.StartsWith("Label\tText", StringComparison.Ordinal))
                {
                    throw new InvalidDataException($"'{path}' must start with the header 'Label<TAB>Text'.");
                }

                continue;
            }

            var tab = line.IndexOf('\t');
            if (tab <= 0)
            {
                throw new InvalidDataException($"Line {lineNumber} of '{path}' has no tab between Label and Text.");
            }

            rows.Add(new Message { Label = line[..tab], Text = line[(tab + 1)..] });
        }

        return rows;
    }

    /// <summary>The first count / labels rows of each label, in file order, skipping the first <paramref name="skipPerLabel"/> of each.</summary>
    public static List<Message> Balanced(IReadOnlyList<Message> rows, int count, int skipPerLabel = 0)
    {
        var labels = rows.Select(r => r.Label).Distinct().Order(StringComparer.Ordinal).ToList();
        var perLabel = Math.Max(1, count / labels.Count);
        return labels.SelectMany(l => rows.Where(r => r.Label == l).Skip(skipPerLabel).Take(perLabel)).ToList();
    }

    public static string Describe(IReadOnlyList<Message> rows)
        => string.Join(", ", rows.GroupBy(r => r.Label).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Count()} {g.Key}"));

    public static string? FindRepoRoot()
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

        return null;
    }

    public static string Relative(string? root, string path) => root is null ? path : Path.GetRelativePath(root, path).Replace('\\', '/');
}
