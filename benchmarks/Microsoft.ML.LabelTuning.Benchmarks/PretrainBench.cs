using System.Diagnostics;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Pretraining;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using AdamW = Microsoft.ML.LabelTuning.Training.AdamW;
using static TorchSharp.torch;
using static Microsoft.ML.LabelTuning.Benchmarks.BenchMath;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// Pretraining throughput of the default model's recipe (hidden 256, 4 layers, vocab 8000, batch 16 × 256, AdamW on
/// every parameter) at 1 and 2 threads: the step split into forward + loss, backward, clipping and the AdamW update,
/// and the utilisation 6 × parameters × tokens/s over this process's matmul peak at the same thread count.
/// </summary>
internal static class PretrainBench
{
    private const int Batch = 16;
    private const int Sequence = 256;

    public static IEnumerable<object> Run(int steps = 6)
    {
        // The shipped default model's architecture, read from its config.json (the recipe the pretraining run uses).
        var config = LlamaConfig.Load(Path.Combine(TrainerBench.RepoRoot(), "models", "labeltuning-default", "config.json"));
        var threadsBefore = torch.get_num_threads();
        try
        {
            foreach (var threads in new[] { 1, 2 })
            {
                torch.set_num_threads(threads);
                var peak = MatmulPeak.Measure().GflopsPerSecond;
                yield return Measure(config, threads, peak, steps);
            }
        }
        finally
        {
            torch.set_num_threads(threadsBefore);
        }
    }

    private static object Measure(LlamaConfig config, int threads, double peakGflops, int steps)
    {
        random.manual_seed(0);
        using var model = new LlamaForCausalLM(config);
        model.train();
        var parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        var parameterCount = parameters.Sum(p => p.parameter.numel());
        using var optimizer = new AdamW(
            [
                new ParameterGroup("decay", parameters.Where(p => p.parameter.dim() >= 2).ToList(), 1.0, 0.1),
                new ParameterGroup("no_decay", parameters.Where(p => p.parameter.dim() < 2).ToList(), 1.0, 0),
            ],
            0.9,
            0.95);
        var forward = new List<double>();
        var backward = new List<double>();
        var clip = new List<double>();
        var update = new List<double>();
        for (var step = 0; step < steps + 1; step++)
        {
            using var scope = NewDisposeScope();
            var windows = randint(0, config.VocabSize, [Batch, Sequence + 1], dtype: ScalarType.Int64); // [B, T + 1]
            var clock = Stopwatch.StartNew();
            var loss = CausalLmPretrainer.NextTokenLoss(model, windows);
            var f = clock.Elapsed.TotalSeconds;
            loss.backward();
            _ = loss.item<float>();
            var b = clock.Elapsed.TotalSeconds;
            nn.utils.clip_grad_norm_(parameters.Select(p => p.parameter), 1.0);
            var c = clock.Elapsed.TotalSeconds;
            optimizer.Step(1e-4);
            optimizer.ZeroGrad();
            var u = clock.Elapsed.TotalSeconds;
            if (step == 0)
            {
                continue; // the first step allocates the moments and warms the allocator
            }

            forward.Add(f);
            backward.Add(b - f);
            clip.Add(c - b);
            update.Add(u - c);
        }

        var stepSeconds = Median(forward.Zip(backward, clip.Zip(update, (x, y) => x + y)).Select(t => t.First + t.Second + t.Third).ToList());
        var tokensPerSecond = Batch * Sequence / stepSeconds;
        var modelGflops = 6.0 * parameterCount * tokensPerSecond / 1e9;
        return new
        {
            bench = "pretrain_step",
            threads,
            config = $"hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, vocab {config.VocabSize}, batch {Batch}x{Sequence}, fp32, AdamW on all {parameterCount} parameters",
            steps,
            step_s = Math.Round(stepSeconds, 3),
            forward_loss_s = Math.Round(Median(forward), 3),
            backward_s = Math.Round(Median(backward), 3),
            clip_s = Math.Round(Median(clip), 4),
            adamw_s = Math.Round(Median(update), 4),
            tokens_per_s = Math.Round(tokensPerSecond, 0),
            model_gflops_per_s = Math.Round(modelGflops, 1),
            matmul_peak_gflops_per_s = Math.Round(peakGflops, 1),
            utilisation = Math.Round(modelGflops / peakGflops, 3),
        };
    }

}
