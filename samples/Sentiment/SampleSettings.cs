using System.Globalization;
using Microsoft.ML.LabelTuning;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Training;

namespace Sentiment;

/// <summary>The sample's command line. Every default is chosen so the whole run takes about 5 minutes on 2 CPU cores.</summary>
internal sealed class SampleSettings
{
    public const string Usage = """
        Usage: dotnet run --project samples/Sentiment -- [options] ["a sentence to classify" ...]
          --model DIR        a Hugging Face LLaMA-family folder (default: the embedded models/labeltuning-default)
          --data DIR         folder with train.tsv and test.tsv, columns Label, Text (default: data/imdb)
          --out DIR          where model.zip and the chart go (default: artifacts/sentiment)
          --train-size N     balanced training rows taken from train.tsv (default 0 = all 2,000)
          --test-size N      test rows scored (default 1000; 0 = all)
          --max-length N     tokens per review, BOS and EOS included (default 512)
          --epochs N         passes over the training rows (default 2)
          --batch N          reviews per step (default 16)
          --lr X             peak learning rate (default 1e-3)
          --lora-rank N      LoRA rank (default 16)
          --targets T        LoRA targets: qv, attention or all (default all)
          --pooling P        last or mean: which hidden states feed the label head (default last)
          --seed N           seed (default 0)
        Sentences after the options are classified at the end (three examples when none are given).
        """;

    public string? ModelPath { get; private set; }

    public string? DataPath { get; private set; }

    public string? OutPath { get; private set; }

    public int TrainSize { get; private set; }

    public int TestSize { get; private set; } = 1000;

    public int MaxLength { get; private set; } = 512;

    public int Epochs { get; private set; } = 2;

    public int BatchSize { get; private set; } = 16;

    public double LearningRate { get; private set; } = 1e-3;

    public int LoraRank { get; private set; } = 16;

    public LoraTargets Targets { get; private set; } = LoraTargets.AllLinear;

    public int Seed { get; private set; }

    public Microsoft.ML.LabelTuning.Methods.Pooling Pooling { get; private set; } = Microsoft.ML.LabelTuning.Methods.Pooling.Last;

    public List<string> Sentences { get; } = [];

    public bool Help { get; private set; }

    public static SampleSettings Parse(string[] args)
    {
        var s = new SampleSettings();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help")
            {
                s.Help = true;
                continue;
            }

            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                s.Sentences.Add(arg);
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
                case "--train-size": s.TrainSize = Int(arg, value, 0); break;
                case "--test-size": s.TestSize = Int(arg, value, 0); break;
                case "--max-length": s.MaxLength = Int(arg, value, 8); break;
                case "--epochs": s.Epochs = Int(arg, value, 1); break;
                case "--batch": s.BatchSize = Int(arg, value, 1); break;
                case "--lr": s.LearningRate = double.Parse(value, CultureInfo.InvariantCulture); break;
                case "--lora-rank": s.LoraRank = Int(arg, value, 1); break;
                case "--seed": s.Seed = Int(arg, value, 0); break;
                case "--pooling":
                    s.Pooling = value switch
                    {
                        "last" => Microsoft.ML.LabelTuning.Methods.Pooling.Last,
                        "mean" => Microsoft.ML.LabelTuning.Methods.Pooling.Mean,
                        _ => throw new ArgumentException($"--pooling must be last or mean but is '{value}'."),
                    };
                    break;
                case "--targets":
                    s.Targets = value switch
                    {
                        "qv" => LoraTargets.QueryValue,
                        "attention" => LoraTargets.Attention,
                        "all" => LoraTargets.AllLinear,
                        _ => throw new ArgumentException($"--targets must be qv, attention or all but is '{value}'."),
                    };
                    break;
                default:
                    throw new ArgumentException($"Unknown option '{arg}'.");
            }
        }

        return s;
    }

    public string TargetsText => Targets switch
    {
        LoraTargets.QueryValue => "q_proj, v_proj",
        LoraTargets.Attention => "q, k, v, o projections",
        LoraTargets.AllLinear => "every linear layer",
        _ => Targets.ToString(),
    };

    public Microsoft.ML.LabelTuning.Methods.LabelSupervised.LabelSupervisedLlamaOptions ToOptions(string modelPath, IProgress<TrainingProgress> progress) => new()
    {
        ModelPath = modelPath,
        LabelColumnName = "Label",
        TextColumnName = "Text",
        MaxSequenceLength = MaxLength,
        Truncation = Truncation.Head,
        Epochs = Epochs,
        BatchSize = BatchSize,
        LearningRate = LearningRate,
        WarmupRatio = 0.1,
        LoraRank = LoraRank,
        LoraAlpha = 2.0 * LoraRank,
        LoraDropout = 0.05,
        LoraTargets = Targets,
        Pooling = Pooling,
        Seed = Seed,
        Progress = progress,
    };

    private static int Int(string option, string value, int minimum)
    {
        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) || n < minimum)
        {
            throw new ArgumentException($"{option} must be an integer of at least {minimum} but is '{value}'.");
        }

        return n;
    }
}
