using System.Diagnostics;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>Raw engine throughput: decoder forward under no_grad, and a LoRA (r 8, q and v) training step with the base frozen.</summary>
internal static class EngineBench
{
    public static IEnumerable<object> Run(double peakGflops)
    {
        var config = BenchConfig.Model;
        random.manual_seed(0);
        using var model = new LlamaModel(config);
        var ids = randint(3, config.VocabSize, [BenchConfig.Batch, BenchConfig.Sequence]);
        var mask = ones(BenchConfig.Batch, BenchConfig.Sequence, dtype: ScalarType.Int64);
        var tokens = BenchConfig.Batch * BenchConfig.Sequence;
        var forwardFlops = BenchConfig.ForwardFlops(config, BenchConfig.Batch, BenchConfig.Sequence);

        var forwardMs = Time(10, 3, () =>
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            model.forward(new LlamaInput { InputIds = ids, AttentionMask = mask });
        });
        yield return new
        {
            bench = "engine_forward",
            batch = BenchConfig.Batch,
            sequence = BenchConfig.Sequence,
            ms_per_batch = Math.Round(forwardMs, 2),
            tokens_per_s = Math.Round(tokens / (forwardMs / 1000)),
            model_gflops = Math.Round(forwardFlops / 1e9, 3),
            utilisation_of_peak = Math.Round(forwardFlops / (forwardMs / 1000) / 1e9 / peakGflops, 3),
            target = 0.75,
        };

        // LoRA step at the peer benchmark's settings (r 8, alpha 32, dropout 0.1 on q and v, 4 labels): forward,
        // cross-entropy, backward (activation gradients; the base has no weight gradients), AdamW on the LoRA factors
        // and the head. Model FLOPs: 2 × forward (forward + input gradients).
        LoraInjector.Apply(model, BenchConfig.LoraRank, BenchConfig.LoraAlpha, BenchConfig.LoraDropout, BenchConfig.LoraTargets, useRsLora: false);
        using var classifier = new LlamaSequenceClassifier(model, BenchConfig.Labels, null, Pooling.Last, causal: true, tokenLevel: false);
        classifier.FreezeBase();
        var trainable = classifier.TrainableParameters();
        using var optimizer = new AdamW([new ParameterGroup("all", trainable, 1, 0.01)]);
        var labels = randint(0, BenchConfig.Labels, [BenchConfig.Batch]);
        classifier.SetTraining(true);
        var batch = new TokenBatch(ids, mask, tokens);
        var stepMs = Time(8, 2, () =>
        {
            using var scope = NewDisposeScope();
            var loss = nn.functional.cross_entropy(classifier.forward(batch), labels);
            loss.backward();
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
        });
        // Where the step's time goes: the training forward alone (autograd recording, dropout), then forward and
        // backward without the optimizer; the optimizer's share is the rest.
        var trainForwardMs = Time(8, 2, () =>
        {
            using var scope = NewDisposeScope();
            nn.functional.cross_entropy(classifier.forward(batch), labels);
        });
        var forwardBackwardMs = Time(8, 2, () =>
        {
            using var scope = NewDisposeScope();
            nn.functional.cross_entropy(classifier.forward(batch), labels).backward();
            optimizer.ZeroGrad();
        });
        using (var scope = NewDisposeScope())
        {
            nn.functional.cross_entropy(classifier.forward(batch), labels).backward();
        }

        var optimizerMs = Time(8, 2, () => optimizer.Step(1e-4));
        optimizer.ZeroGrad();
        // The same step with LoRA dropout 0 (a second model from the same seed): what the dropout masks cost.
        random.manual_seed(0);
        using var plainModel = new LlamaModel(config);
        LoraInjector.Apply(plainModel, BenchConfig.LoraRank, BenchConfig.LoraAlpha, 0.0, BenchConfig.LoraTargets, useRsLora: false);
        using var plain = new LlamaSequenceClassifier(plainModel, BenchConfig.Labels, null, Pooling.Last, causal: true, tokenLevel: false);
        plain.FreezeBase();
        var plainTrainable = plain.TrainableParameters();
        using var plainOptimizer = new AdamW([new ParameterGroup("all", plainTrainable, 1, 0.01)]);
        plain.SetTraining(true);
        var noDropoutMs = Time(8, 2, () =>
        {
            using var scope = NewDisposeScope();
            nn.functional.cross_entropy(plain.forward(batch), labels).backward();
            plainOptimizer.Step(1e-4);
            plainOptimizer.ZeroGrad();
        });
        var stepFlops = 2 * forwardFlops;
        yield return new
        {
            bench = "engine_lora_step_parts",
            step_without_dropout_ms = Math.Round(noDropoutMs, 2),
            optimizer_alone_ms = Math.Round(optimizerMs, 2),
            no_grad_forward_ms = Math.Round(forwardMs, 2),
            training_forward_ms = Math.Round(trainForwardMs, 2),
            backward_ms = Math.Round(forwardBackwardMs - trainForwardMs, 2),
            optimizer_ms = Math.Round(stepMs - forwardBackwardMs, 2),
            step_ms = Math.Round(stepMs, 2),
        };
        yield return new
        {
            bench = "engine_lora_step",
            lora_rank = BenchConfig.LoraRank,
            lora_alpha = BenchConfig.LoraAlpha,
            lora_dropout = BenchConfig.LoraDropout,
            targets = string.Join(",", BenchConfig.LoraTargets),
            trainable_parameters = trainable.Sum(p => p.Parameter.numel()),
            ms_per_step = Math.Round(stepMs, 2),
            tokens_per_s = Math.Round(tokens / (stepMs / 1000)),
            model_gflops = Math.Round(stepFlops / 1e9, 3),
            utilisation_of_peak = Math.Round(stepFlops / (stepMs / 1000) / 1e9 / peakGflops, 3),
            target = 0.65,
        };
    }

    /// <summary>Median milliseconds of <paramref name="runs"/> calls after <paramref name="warmup"/> calls.</summary>
    public static double Time(int runs, int warmup, Action action)
    {
        for (var i = 0; i < warmup; i++)
        {
            action();
        }

        var samples = new double[runs];
        for (var i = 0; i < runs; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            samples[i] = clock.Elapsed.TotalMilliseconds;
        }

        Array.Sort(samples);
        return samples[runs / 2];
    }
}
