using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// The prompt-learning family on one random decoder: trainable parameter counts, and training-step and scoring time of
/// DePT against plain prompt tuning at (nearly) equal parameter count, with EPT and prefix tuning alongside.
/// Call <c>PromptLearningBench.Run()</c> and print the result as one JSON line.
/// </summary>
internal static class PromptLearningBench
{
    /// <summary>One method's figures.</summary>
    public sealed record Row(
        string Method, int VirtualTokens, int DecomposedRank, int ProjectionSpaces, int ProjectionHiddenSize,
        long TrainableParameters, double TrainMsPerStep, double ScoreMsPerBatch);

    /// <summary>All figures, and DePT's speed-up over prompt tuning (prompt time / DePT time).</summary>
    public sealed record Result(
        string Benchmark, int Hidden, int Layers, int Batch, int Tokens, int Steps, IReadOnlyList<Row> Rows,
        double DeptTrainSpeedup, double DeptScoreSpeedup);

    /// <summary>
    /// Runs the comparison: prompt tuning with <paramref name="promptTokens"/> virtual tokens against DePT with half as
    /// many and the rank that brings its parameters level (A is tokens × r, B is r × hidden).
    /// </summary>
    public static Result Run(int hidden = 256, int layers = 4, int batch = 8, int tokens = 128, int promptTokens = 60, int steps = 8)
    {
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = hidden * 8 / 3,
            NumHiddenLayers = layers,
            NumAttentionHeads = Math.Max(1, hidden / 64),
            NumKeyValueHeads = Math.Max(1, hidden / 128),
            VocabSize = 1000,
            MaxPositionEmbeddings = 4096,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
        };
        var deptTokens = promptTokens / 2;
        var rank = (int)Math.Round((double)(promptTokens - deptTokens) * hidden / (tokens + hidden));
        var rows = new List<Row>
        {
            Measure("prompt-tuning", config, batch, tokens, steps, new PromptTuningSettings(promptTokens, PromptTuningInit.Random, null, 0, 8, tokens, 1, Pooling.Last)),
            Measure("dept", config, batch, tokens, steps, new PromptTuningSettings(deptTokens, PromptTuningInit.Random, null, rank, 8, tokens, 1, Pooling.Last)),
            Measure("ept", config, batch, tokens, steps, new PromptTuningSettings(deptTokens, PromptTuningInit.Random, null, rank, 8, tokens, 2, Pooling.Last)),
            Measure("prefix-tuning", config, batch, tokens, steps, new PrefixTuningSettings(promptTokens / 4, 0, Pooling.Last)),
            Measure("prefix-tuning-mlp", config, batch, tokens, steps, new PrefixTuningSettings(promptTokens / 4, 64, Pooling.Last)),
        };
        return new Result(
            "prompt-learning", hidden, layers, batch, tokens, steps, rows,
            rows[0].TrainMsPerStep / rows[1].TrainMsPerStep, rows[0].ScoreMsPerBatch / rows[1].ScoreMsPerBatch);
    }

    private static Row Measure(string name, LlamaConfig config, int batch, int tokens, int steps, object settings)
    {
        random.manual_seed(0);
        var method = settings is PrefixTuningSettings ? TuningMethod.PrefixTuning : TuningMethod.PromptTuning;
        using var classifier = TuningMethodRegistry.Get(method).Factory
            .Build(new LlamaModel(config), 3, JsonSerializer.SerializeToElement(settings, settings.GetType(), SettingsJson.Options), tokenLevel: false);
        classifier.FreezeBase();
        var trainable = classifier.TrainableParameters();
        using var optimizer = optim.AdamW(trainable.Select(p => p.Parameter), lr: 1e-3);
        var generator = new Random(1);
        var rows = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, tokens).Select(_ => generator.Next(3, config.VocabSize)).ToArray()).ToList();
        var batchTensors = TokenBatch.Collate(rows, 0, CPU);
        using var labels = tensor(Enumerable.Range(0, batch).Select(i => (long)(i % 3)).ToArray());

        void TrainStep()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            nn.functional.cross_entropy(classifier.Logits(batchTensors), labels).backward();
            optimizer.step();
        }

        void ScoreStep()
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            classifier.Logits(batchTensors);
        }

        classifier.SetTraining(true);
        TrainStep(); // warm-up
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < steps; i++)
        {
            TrainStep();
        }

        var trainMs = clock.Elapsed.TotalMilliseconds / steps;
        classifier.SetTraining(false);
        ScoreStep();
        clock.Restart();
        for (var i = 0; i < steps; i++)
        {
            ScoreStep();
        }

        var scoreMs = clock.Elapsed.TotalMilliseconds / steps;
        batchTensors.InputIds.Dispose();
        batchTensors.AttentionMask.Dispose();
        var (n, r, k, h) = settings switch
        {
            PromptTuningSettings p => (p.VirtualTokenCount, p.DecomposedRank, p.ProjectionSpaces, 0),
            PrefixTuningSettings p => (p.VirtualTokenCount, 0, 1, p.ProjectionHiddenSize),
            _ => throw new ArgumentException("Unknown settings.", nameof(settings)),
        };
        return new Row(name, n, r, k, h, trainable.Sum(p => p.Parameter.numel()), trainMs, scoreMs);
    }
}
