using System.Diagnostics;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// L-Tuning on the engine benchmark's decoder: trainable parameters against the paper's counts (prefix 2·l²·m·d + 3d,
/// prompt about d(d+2)), for the paper's true/false head and for the matching head (2·d·r + 3d more), training and scoring
/// throughput of prefix, prompt-before and prompt-after, and how scoring time
/// grows with the class count K for the paper's placement against the KV-cached After placement.
/// </summary>
internal static class LTuningBench
{
    /// <summary>One variant's figures at a given class count.</summary>
    public sealed record Row(
        string Variant, string Head, int Classes, int LabelLength, long TrainableParameters, long PaperParameters,
        double TrainExamplesPerSecond, double ScoreRowsPerSecond);

    /// <summary>Scoring time at K classes (default matching head); the speed-up is prompt-before time over prompt-after (cached) time.</summary>
    public sealed record Scaling(int Classes, double PrefixMs, double BeforeMs, double AfterMs, double AfterSpeedup);

    /// <summary>All figures.</summary>
    public sealed record Result(
        string Benchmark, int Hidden, int Layers, int Batch, int Tokens, IReadOnlyList<Row> Rows, IReadOnlyList<Scaling> KScaling);

    /// <summary>Runs the benchmark on <see cref="BenchConfig.Model"/> with texts of <paramref name="tokens"/> tokens.</summary>
    public static Result Run(int batch = 8, int tokens = 128, int labelLength = 6, int steps = 4)
    {
        var config = BenchConfig.Model;
        var rows = new List<Row>();
        foreach (var head in new[] { LTuningHead.TrueFalse, LTuningHead.Matching })
        {
            foreach (var (name, variant, placement) in Variants())
            {
                rows.Add(Measure(config, name, variant, placement, head, classes: 4, batch, tokens, labelLength, steps));
            }
        }

        var scaling = new List<Scaling>();
        foreach (var k in new[] { 2, 4, 8, 16 })
        {
            var prefix = ScoreMs(config, LTuningVariant.Prefix, LabelPlacement.Before, k, batch, tokens, labelLength, steps);
            var before = ScoreMs(config, LTuningVariant.Prompt, LabelPlacement.Before, k, batch, tokens, labelLength, steps);
            var after = ScoreMs(config, LTuningVariant.Prompt, LabelPlacement.After, k, batch, tokens, labelLength, steps);
            scaling.Add(new Scaling(k, Math.Round(prefix, 1), Math.Round(before, 1), Math.Round(after, 1), Math.Round(before / after, 2)));
        }

        return new Result("ltuning", config.HiddenSize, config.NumHiddenLayers, batch, tokens, rows, scaling);
    }

    private static IEnumerable<(string Name, LTuningVariant Variant, LabelPlacement Placement)> Variants()
    {
        yield return ("lt-prefix", LTuningVariant.Prefix, LabelPlacement.Before);
        yield return ("lt-prompt-before", LTuningVariant.Prompt, LabelPlacement.Before);
        yield return ("lt-prompt-after", LTuningVariant.Prompt, LabelPlacement.After);
    }

    private static LTuningClassifier Build(
        LlamaConfig config, LTuningVariant variant, LabelPlacement placement, int classes, int labelLength, LTuningHead head = LTuningHead.TrueFalse)
    {
        random.manual_seed(0);
        var generator = new Random(2);
        var ids = Enumerable.Range(0, classes)
            .Select(_ => Enumerable.Range(0, labelLength).Select(_ => generator.Next(3, config.VocabSize)).ToArray())
            .ToArray();
        var settings = new LTuningSettings(variant, null, 1, placement, ids, Head: head);
        var classifier = new LTuningClassifier(new LlamaModel(config), settings, classes);
        classifier.FreezeBase();
        return classifier;
    }

    private static TokenBatch Texts(LlamaConfig config, int batch, int tokens)
    {
        var generator = new Random(1);
        var rows = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, tokens).Select(_ => generator.Next(3, config.VocabSize)).ToArray()).ToList();
        return TokenBatch.Collate(rows, 0, CPU);
    }

    private static Row Measure(
        LlamaConfig config, string name, LTuningVariant variant, LabelPlacement placement, LTuningHead head, int classes, int batch, int tokens, int labelLength, int steps)
    {
        using var classifier = Build(config, variant, placement, classes, labelLength, head);
        var trainable = classifier.TrainableParameters();
        using var optimizer = optim.AdamW(trainable.Select(p => p.Parameter), lr: 1e-3);
        var texts = Texts(config, batch, tokens);
        var examples = Enumerable.Range(0, batch).Select(i => new Example(texts.InputIds[i].data<long>().Select(v => (int)v).ToArray(), i % classes)).ToList();

        void TrainStep()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            classifier.Loss(texts, examples, null).backward();
            optimizer.step();
        }

        classifier.SetTraining(true);
        TrainStep(); // warm-up
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < steps; i++)
        {
            TrainStep();
        }

        var trainSeconds = clock.Elapsed.TotalSeconds / steps;
        var scoreMs = ScoreMs(classifier, texts, steps);
        var d = (long)config.HiddenSize;
        var paper = variant == LTuningVariant.Prefix
            ? (2L * labelLength * labelLength * config.NumHiddenLayers * d) + (3 * d)
            : d * (d + 2);
        texts.InputIds.Dispose();
        texts.AttentionMask.Dispose();
        return new Row(
            name, head.ToString(), classes, labelLength, trainable.Sum(p => p.Parameter.numel()), paper,
            Math.Round(batch / trainSeconds, 1), Math.Round(batch / (scoreMs / 1000), 1));
    }

    private static double ScoreMs(LlamaConfig config, LTuningVariant variant, LabelPlacement placement, int classes, int batch, int tokens, int labelLength, int steps)
    {
        using var classifier = Build(config, variant, placement, classes, labelLength, LTuningHead.Matching); // the default head
        var texts = Texts(config, batch, tokens);
        var ms = ScoreMs(classifier, texts, steps);
        texts.InputIds.Dispose();
        texts.AttentionMask.Dispose();
        return ms;
    }

    private static double ScoreMs(LTuningClassifier classifier, TokenBatch texts, int steps)
    {
        classifier.SetTraining(false);

        void ScoreStep()
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            classifier.Logits(texts);
        }

        ScoreStep(); // warm-up
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < steps; i++)
        {
            ScoreStep();
        }

        return clock.Elapsed.TotalMilliseconds / steps;
    }
}
