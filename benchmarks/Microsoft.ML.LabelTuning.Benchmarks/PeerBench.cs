using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using AdamW = Microsoft.ML.LabelTuning.Training.AdamW;
using static TorchSharp.torch;
using static Microsoft.ML.LabelTuning.Benchmarks.BenchMath;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// Side by side with the peer (issue 20): this process times our LoRA, prompt-tuning and prefix-tuning steps, and
/// benchmarks/peer/peer_bench.py (a child process) times Hugging Face's LlamaForSequenceClassification + PEFT at the
/// same config, alternating method by method and phase by phase, the side that goes first swapping every pair.
/// Each side's figure for one turn is the median of <c>runs</c> steps; ratios are peer ms / our ms per pair, and the
/// reported ratio is the median over pairs (min and max alongside). <c>*_ms</c> are medians over the pairs and
/// <c>*_ms_best</c> the fastest turn; utilisation is the full model's FLOPs (what the peer computes, see
/// docs/performance.md) at the fastest turn over that side's own matmul peak.
/// </summary>
internal static partial class PeerBench
{
    private static readonly string[] _methods = ["lora", "prompt", "prefix"];
    private static readonly string[] _phases = ["train", "inference"];

    public static void Run(Action<object> print, int pairs, int runs, int warmup, IReadOnlySet<string> parts)
    {
        var python = Environment.GetEnvironmentVariable("LABELTUNING_PEER_PYTHON") ?? "python3";
        var script = Path.Combine(TrainerBench.RepoRoot(), "benchmarks", "peer", "peer_bench.py");
        using var peer = new PeerProcess(python, script, TorchRuntime.Threads);
        using var ours = new OursSide();

        var peerConfig = peer.Ask("config");
        print(new
        {
            bench = "peer_config",
            ours = OursSide.Config,
            peer = peerConfig["config"],
            peer_impl = (string?)peerConfig["peer_impl"],
            peer_impl_note = (string?)peerConfig["peer_impl_note"],
            peer_torch = (string?)peerConfig["torch"],
            peer_attention = (string?)peerConfig["attention"],
            peer_blas = (string?)peerConfig["blas"],
            ours_torch = "TorchSharp 0.107 / libtorch 2.10 cpu, scaled_dot_product_attention",
            pairs,
            runs_per_turn = runs,
            host = $"{Environment.ProcessorCount} cores, {Environment.OSVersion}",
            date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
        });
        CheckSameConfig(peerConfig["config"]!.AsObject());
        if (!parts.Contains("methods"))
        {
            RunData(print, peer, ours, pairs, parts, (string?)peerConfig["peer_impl"]);
            return;
        }

        // Peaks, alternating: the best of two before the pairs, one before each pair and one after. Other load on the
        // host only lowers a peak, and the steps' best turns may fall in quieter moments than any one peak measurement
        // (a utilisation above 1 on a busy host), so each side's peak is its best over the whole run.
        double oursPeak = 0, peerPeak = 0;
        void MeasurePeaks()
        {
            using (NativeHeap.ForTraining()) // big outputs reuse heap blocks, as the peer's glibc does after its first frees
            {
                oursPeak = Math.Max(oursPeak, MatmulPeak.Measure().GflopsPerSecond);
            }

            Pause();
            peerPeak = Math.Max(peerPeak, (double)peer.Ask("peak")["gflops_per_s"]!);
            Pause();
        }

        MeasurePeaks();
        MeasurePeaks();

        var oursMs = new Dictionary<(string, string), List<double>>();
        var peerMs = new Dictionary<(string, string), List<double>>();
        for (var pair = 0; pair < pairs; pair++)
        {
            if (pair > 0)
            {
                MeasurePeaks();
            }

            foreach (var method in _methods)
            {
                foreach (var phase in _phases)
                {
                    var key = (method, phase);
                    var w = pair == 0 ? warmup : 1;
                    double TimeOurs() => Median(ours.Time(method, phase, runs, w));
                    double TimePeer() => (double)peer.Ask($"time {method} {phase} {runs} {w}")["ms"]!;
                    double o, p;
                    if (pair % 2 == 0)
                    {
                        o = TimeOurs();
                        Pause();
                        p = TimePeer();
                    }
                    else
                    {
                        p = TimePeer();
                        Pause();
                        o = TimeOurs();
                    }

                    Pause();
                    Add(oursMs, key, o);
                    Add(peerMs, key, p);
                    Console.Error.WriteLine($"pair {pair + 1}/{pairs} {method} {phase}: ours {o:F1} ms, peer {p:F1} ms, ratio {p / o:F2}");
                }
            }
        }

        MeasurePeaks();
        var config = BenchConfig.Model;
        foreach (var method in _methods)
        {
            foreach (var phase in _phases)
            {
                var key = (method, phase);
                var ratios = oursMs[key].Zip(peerMs[key], (o, p) => p / o).ToArray();
                var o = Median(oursMs[key]);
                var p = Median(peerMs[key]);
                var sequence = BenchConfig.Sequence + (method == "prompt" ? BenchConfig.VirtualTokens : 0);
                var flops = BenchConfig.ForwardFlops(config, BenchConfig.Batch, sequence) * (phase == "train" ? 2 : 1);
                var ratio = Median(ratios);
                print(new
                {
                    bench = "peer",
                    method,
                    phase,
                    ours_ms = Math.Round(o, 2),
                    peer_ms = Math.Round(p, 2),
                    ours_ms_best = Math.Round(oursMs[key].Min(), 2),
                    peer_ms_best = Math.Round(peerMs[key].Min(), 2),
                    ratio = Math.Round(ratio, 3),
                    ratio_min = Math.Round(ratios.Min(), 3),
                    ratio_max = Math.Round(ratios.Max(), 3),
                    pairs,
                    ours_peak_gflops = Math.Round(oursPeak, 1),
                    peer_peak_gflops = Math.Round(peerPeak, 1),
                    ratio_at_equal_peak = Math.Round(ratio * peerPeak / oursPeak, 3),
                    ours_utilisation_best = Math.Round(flops / (oursMs[key].Min() / 1000) / 1e9 / oursPeak, 3),
                    peer_utilisation_best = Math.Round(flops / (peerMs[key].Min() / 1000) / 1e9 / peerPeak, 3),
                    ours_tokens_per_s = Math.Round(BenchConfig.Batch * BenchConfig.Sequence / (o / 1000)),
                    peer_tokens_per_s = Math.Round(BenchConfig.Batch * BenchConfig.Sequence / (p / 1000)),
                    peer_impl = (string?)peerConfig["peer_impl"],
                });
            }
        }

        RunData(print, peer, ours, pairs, parts, (string?)peerConfig["peer_impl"]);
    }

    /// <summary>
    /// Our side alone (no Python): the median of <paramref name="runs"/> steps per method and phase, for quick
    /// iterations and for a profiler; <paramref name="only"/> (<c>lora</c>, <c>lora/train</c>, ...) narrows it.
    /// </summary>
    public static void RunOursOnly(Action<object> print, int runs, string? only = null)
    {
        using var ours = new OursSide();
        foreach (var method in _methods)
        {
            foreach (var phase in _phases)
            {
                if (only is not null && only != method && only != $"{method}/{phase}")
                {
                    continue;
                }

                if (phase == "train")
                {
                    // Where a step's time goes: the loss (forward), backward, and the rest (item, clip, AdamW, zero).
                    var parts = ours.TimeTrainParts(method, runs, 3);
                    print(new
                    {
                        bench = "peer_ours_only",
                        method,
                        phase,
                        ours_ms = Math.Round(Median(parts.Select(p => p.Forward + p.Backward + p.Update)), 2),
                        forward_ms = Math.Round(Median(parts.Select(p => p.Forward)), 2),
                        backward_ms = Math.Round(Median(parts.Select(p => p.Backward)), 2),
                        update_ms = Math.Round(Median(parts.Select(p => p.Update)), 2),
                    });
                    continue;
                }

                print(new { bench = "peer_ours_only", method, phase, ours_ms = Math.Round(Median(ours.Time(method, phase, runs, 3)), 2) });
            }
        }
    }

    /// <summary>
    /// Our side only, the same process switching turn by turn between masked attention as matmuls (the default) and the
    /// fused kernel (<c>MatmulAttentionMaxScores = 0</c>): peer-ours-ab [pairs] [runs per turn]. The variant that goes
    /// first swaps every pair; <c>ratio</c> is the median over pairs of fused ms ÷ matmul ms (above 1: matmul faster).
    /// </summary>
    public static void RunAttentionAb(Action<object> print, int pairs, int runs)
    {
        using var ours = new OursSide();
        var times = new Dictionary<(string, string), List<(double Matmul, double Fused)>>();
        for (var pair = 0; pair < pairs; pair++)
        {
            foreach (var method in _methods)
            {
                foreach (var phase in _phases)
                {
                    var turns = new Dictionary<bool, double>();
                    foreach (var matmul in pair % 2 == 0 ? new[] { true, false } : [false, true])
                    {
                        ours.UseMatmulAttention(method, matmul);
                        turns[matmul] = Median(ours.Time(method, phase, runs, warmup: 2));
                    }

                    Add(times, (method, phase), (turns[true], turns[false]));
                }
            }
        }

        foreach (var ((method, phase), list) in times)
        {
            print(new
            {
                bench = "attention_ab",
                method,
                phase,
                matmul_ms = Math.Round(Median(list.Select(t => t.Matmul)), 2),
                fused_ms = Math.Round(Median(list.Select(t => t.Fused)), 2),
                ratio = Math.Round(Median(list.Select(t => t.Fused / t.Matmul)), 3),
                ratio_min = Math.Round(list.Min(t => t.Fused / t.Matmul), 3),
                ratio_max = Math.Round(list.Max(t => t.Fused / t.Matmul), 3),
                pairs,
                runs_per_turn = runs,
                date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture),
            });
        }
    }

    private static void Pause() => Thread.Sleep(150); // lets the other side's OpenMP threads stop spinning

    private static void Add<T>(Dictionary<(string, string), List<T>> map, (string, string) key, T value)
    {
        if (!map.TryGetValue(key, out var list))
        {
            map[key] = list = [];
        }

        list.Add(value);
    }

    private static void CheckSameConfig(JsonObject peer)
    {
        var ours = JsonSerializer.SerializeToNode(OursSide.Config)!.AsObject();
        foreach (var (name, value) in ours)
        {
            if (name == "threads")
            {
                continue;
            }

            if (!peer.TryGetPropertyValue(name, out var theirs) || !Same(value!, theirs!))
            {
                throw new InvalidOperationException($"The peer's config differs in '{name}': ours {value?.ToJsonString()}, peer {theirs?.ToJsonString()}.");
            }
        }
    }

    private static bool Same(JsonNode a, JsonNode b)
        => a.GetValueKind() == JsonValueKind.Number && b.GetValueKind() == JsonValueKind.Number
            ? a.GetValue<double>() == b.GetValue<double>()
            : a.ToJsonString() == b.ToJsonString();

    /// <summary>Our three methods at the peer config, each with its own classifier and optimizer.</summary>
    private sealed class OursSide : IDisposable
    {
        private readonly Dictionary<string, (IClassifierModel Model, AdamW Optimizer, IReadOnlyList<Parameter> Trainable)> _models = [];
        private readonly Dictionary<string, Llama.LlamaModel> _decoders = [];
        private readonly TokenBatch _batch;
        private readonly List<Example> _examples;

        public OursSide()
        {
            var config = BenchConfig.Model;
            var generator = new Random(1);
            var rows = Enumerable.Range(0, BenchConfig.Batch)
                .Select(_ => Enumerable.Range(0, BenchConfig.Sequence).Select(_ => generator.Next(3, config.VocabSize)).ToArray()).ToList();
            _batch = TokenBatch.Collate(rows, 0, CPU);
            _examples = rows.Select((ids, i) => new Example(ids, i % BenchConfig.Labels)).ToList();
        }

        /// <summary>Gets the config in the peer script's field names.</summary>
        public static Dictionary<string, object> Config
        {
            get
            {
                var c = BenchConfig.Model;
                return new Dictionary<string, object>
                {
                    ["hidden"] = c.HiddenSize,
                    ["layers"] = c.NumHiddenLayers,
                    ["heads"] = c.NumAttentionHeads,
                    ["kv_heads"] = c.KeyValueHeadCount,
                    ["intermediate"] = c.IntermediateSize,
                    ["vocab"] = c.VocabSize,
                    ["batch"] = BenchConfig.Batch,
                    ["sequence"] = BenchConfig.Sequence,
                    ["dtype"] = "float32",
                    ["threads"] = TorchRuntime.Threads,
                    ["lora_rank"] = BenchConfig.LoraRank,
                    ["lora_alpha"] = BenchConfig.LoraAlpha,
                    ["lora_dropout"] = BenchConfig.LoraDropout,
                    ["lora_targets"] = string.Join(",", BenchConfig.LoraTargets),
                    ["labels"] = BenchConfig.Labels,
                    ["virtual_tokens"] = BenchConfig.VirtualTokens,
                    ["rms_norm_eps"] = c.RmsNormEps,
                    ["rope_theta"] = c.RopeTheta,
                    ["learning_rate"] = BenchConfig.LearningRate,
                    ["max_grad_norm"] = BenchConfig.MaxGradientNorm,
                    ["weight_decay"] = 0.0,
                    ["pad_token_id"] = 0,
                };
            }
        }

        public double[] Time(string method, string phase, int runs, int warmup)
        {
            var (model, optimizer, trainable) = Get(method);
            using var heap = phase == "train" ? NativeHeap.ForTraining() : null; // the steps as a fit runs them
            var samples = new double[runs];
            for (var i = -warmup; i < runs; i++)
            {
                var clock = Stopwatch.StartNew();
                if (phase == "train")
                {
                    TrainStep(model, optimizer, trainable);
                }
                else
                {
                    ScoreStep(model);
                }

                if (i >= 0)
                {
                    samples[i] = clock.Elapsed.TotalMilliseconds;
                }
            }

            return samples;
        }

        /// <summary>Training steps as <see cref="Time"/> runs them, each timed in three parts.</summary>
        public (double Forward, double Backward, double Update)[] TimeTrainParts(string method, int runs, int warmup)
        {
            var (model, optimizer, trainable) = Get(method);
            using var heap = NativeHeap.ForTraining();
            var samples = new (double, double, double)[runs];
            for (var i = -warmup; i < runs; i++)
            {
                var parts = TrainStep(model, optimizer, trainable);
                if (i >= 0)
                {
                    samples[i] = parts;
                }
            }

            return samples;
        }

        public void Dispose()
        {
            foreach (var (model, optimizer, _) in _models.Values)
            {
                optimizer.Dispose();
                model.Dispose();
            }

            _batch.InputIds.Dispose();
            _batch.AttentionMask.Dispose();
        }

        /// <summary>Switches <paramref name="method"/>'s decoder between masked attention as matmuls (the default) and the fused kernel.</summary>
        public void UseMatmulAttention(string method, bool matmul)
        {
            Get(method);
            foreach (var layer in _decoders[method].Layers)
            {
                layer.SelfAttention.MatmulAttentionMaxScores = matmul ? Llama.LlamaAttention.DefaultMatmulAttentionMaxScores : 0;
            }
        }

        /// <summary>Builds <paramref name="method"/>'s model now, outside any dispose scope (a model built inside one would die with it).</summary>
        public void Prepare(string method) => Get(method);

        /// <summary>One LoRA training step on <paramref name="batch"/>: what the trainer does per step.</summary>
        public void TrainLora(TokenBatch batch, IReadOnlyList<Example> examples)
        {
            var (model, optimizer, trainable) = Get("lora");
            TrainStep(model, optimizer, trainable, batch, examples);
        }

        /// <summary>One LoRA scoring step on <paramref name="batch"/>.</summary>
        public void ScoreLora(TokenBatch batch)
        {
            var (model, _, _) = Get("lora");
            model.SetTraining(false);
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            model.Logits(batch).softmax(-1);
        }

        /// <summary>
        /// The trainer's step (TrainingEngine with ClassifierTrainingTask): loss, backward, item, clip to norm 1, AdamW,
        /// zero grad. Returns the milliseconds of the loss (forward), of backward, and of the rest.
        /// </summary>
        private (double Forward, double Backward, double Update) TrainStep(IClassifierModel model, AdamW optimizer, IReadOnlyList<Parameter> trainable, TokenBatch? batch = null, IReadOnlyList<Example>? examples = null)
        {
            model.SetTraining(true);
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            var loss = model.Loss(batch ?? _batch, examples ?? _examples, null);
            var forward = clock.Elapsed.TotalMilliseconds;
            loss.backward();
            var backward = clock.Elapsed.TotalMilliseconds;
            loss.item<float>();
            nn.utils.clip_grad_norm_(trainable, BenchConfig.MaxGradientNorm);
            optimizer.Step(BenchConfig.LearningRate);
            optimizer.ZeroGrad();
            return (forward, backward - forward, clock.Elapsed.TotalMilliseconds - backward);
        }

        /// <summary>Scoring as ClassifierRuntime does it: no_grad, logits, softmax.</summary>
        private void ScoreStep(IClassifierModel model)
        {
            model.SetTraining(false);
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            model.Logits(_batch).softmax(-1);
        }

        private (IClassifierModel Model, AdamW Optimizer, IReadOnlyList<Parameter> Trainable) Get(string method)
        {
            if (_models.TryGetValue(method, out var built))
            {
                return built;
            }

            random.manual_seed(0);
            var (kind, settings) = method switch
            {
                "lora" => (TuningMethod.LabelSupervised, JsonSerializer.SerializeToElement(
                    new LoraSettings(BenchConfig.LoraRank, BenchConfig.LoraAlpha, BenchConfig.LoraDropout, BenchConfig.LoraTargets, Pooling.Last, false),
                    SettingsJson.Options)),
                "prompt" => (TuningMethod.PromptTuning, JsonSerializer.SerializeToElement(
                    new PromptTuningSettings(BenchConfig.VirtualTokens, PromptTuningInit.Random, null, 0, 0, BenchConfig.Sequence, 1, Pooling.Last),
                    SettingsJson.Options)),
                "prefix" => (TuningMethod.PrefixTuning, JsonSerializer.SerializeToElement(
                    new PrefixTuningSettings(BenchConfig.VirtualTokens, 0, Pooling.Last), SettingsJson.Options)),
                _ => throw new ArgumentException($"Unknown method '{method}'.", nameof(method)),
            };
            var decoder = new Llama.LlamaModel(BenchConfig.Model);
            var model = TuningMethodRegistry.Get(kind).Factory.Build(decoder, BenchConfig.Labels, settings, tokenLevel: false);
            _decoders[method] = decoder; // owned by the model
            model.FreezeBase();
            var trainable = model.TrainableParameters();
            var optimizer = new AdamW([new ParameterGroup("all", trainable, 1, 0.0)]);
            built = (model, optimizer, trainable.Select(p => p.Parameter).ToList());
            _models[method] = built;
            return built;
        }
    }

    /// <summary>The peer script in --serve mode: one command a line in, one JSON line out.</summary>
    internal sealed class PeerProcess : IDisposable
    {
        private readonly Process _process;

        public PeerProcess(string python, string script, int threads, params string[] extraArguments)
        {
            var start = new ProcessStartInfo(python)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = false,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(script);
            start.ArgumentList.Add("--serve");
            start.ArgumentList.Add("--threads");
            start.ArgumentList.Add(threads.ToString(CultureInfo.InvariantCulture));
            foreach (var argument in extraArguments)
            {
                start.ArgumentList.Add(argument);
            }
            _process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start '{python} {script}'.");
        }

        public JsonObject Ask(string command)
        {
            _process.StandardInput.WriteLine(command);
            _process.StandardInput.Flush();
            var line = _process.StandardOutput.ReadLine()
                ?? throw new InvalidOperationException($"The peer script exited while answering '{command}' (see its error output above).");
            var answer = JsonNode.Parse(line)!.AsObject();
            if (answer["error"] is { } error)
            {
                throw new InvalidOperationException($"The peer script failed on '{command}': {error}");
            }

            return answer;
        }

        public void Dispose()
        {
            try
            {
                _process.StandardInput.WriteLine("quit");
                _process.StandardInput.Flush();
                _process.WaitForExit(10_000);
            }
            catch (IOException)
            {
                // already gone
            }

            _process.Dispose();
        }
    }
}
