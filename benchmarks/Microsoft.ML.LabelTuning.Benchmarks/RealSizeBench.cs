using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using TorchSharp;
using AdamW = Microsoft.ML.LabelTuning.Training.AdamW;
using static TorchSharp.torch;
using static Microsoft.ML.LabelTuning.Benchmarks.BenchMath;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// Real-size models (issue 23), opt-in with <c>./build.sh bench realsize</c>: random-weight checkpoints of the
/// TinyLlama-1.1B and Llama-3.2-1B shapes (bf16, sharded, as they ship) are written to a temporary folder, then a
/// fresh process per shape loads one through the path a fit uses (the shared frozen base), and times a LoRA r8 (q, v)
/// training step at batch 4 × 128 on 2 threads and scoring, with peak resident memory after each, then one step at
/// 16 × 512 with gradient checkpointing (and without it too where that fits, on layer-cut shapes). The memory estimate is printed beside what training
/// added to the loaded model (the peak is reset after loading through /proc/self/clear_refs). When python3 imports
/// torch, benchmarks/peer/peer_bench.py builds the same shape and the two sides alternate step by step.
/// </summary>
internal static class RealSizeBench
{
    private const int Labels = 4;
    private const int DefaultThreads = 2;
    private const int PeerPairs = 3;

    /// <summary>The shapes, by name (<see cref="RandomCheckpoint.Shapes"/>).</summary>
    public static IReadOnlyDictionary<string, LlamaConfig> Shapes => RandomCheckpoint.Shapes;

    /// <summary>
    /// The parent: writes each shape's checkpoint, measures it in a fresh process, deletes it. <paramref name="smoke"/>
    /// shrinks the shapes (hidden 256, 2 layers) to check the harness in seconds; its figures mean nothing.
    /// <paramref name="layers"/> keeps a shape's widths but cuts its decoder layers (for calibrating the memory
    /// estimate: per-layer terms are the difference of two such runs); <paramref name="threads"/> replaces the 2 threads
    /// the step times are quoted at.
    /// </summary>
    public static void Run(Action<object> print, bool smoke, bool peer, bool longStep, IReadOnlyCollection<string> only,
        int? layers = null, int threads = DefaultThreads)
    {
        foreach (var (shapeName, shape) in Shapes.Where(s => only.Count == 0 || only.Contains(s.Key)))
        {
            var (name, config) = smoke
                ? (shapeName + "-smoke", shape with
                {
                    HiddenSize = 256,
                    IntermediateSize = shape.IntermediateSize / 8,
                    NumHiddenLayers = 2,
                    NumAttentionHeads = 8,
                    NumKeyValueHeads = Math.Max(1, shape.KeyValueHeadCount * 8 / shape.NumAttentionHeads),
                })
                : (shapeName, shape);
            if (layers is { } cut)
            {
                (name, config) = ($"{name}-{cut}layers", config with { NumHiddenLayers = cut });
            }

            var folder = Directory.CreateTempSubdirectory($"lt-realsize-{name}-").FullName;
            try
            {
                var clock = Stopwatch.StartNew();
                var parameters = RandomCheckpoint.Write(config, folder, seed: 1);
                Console.Error.WriteLine($"realsize {name}: wrote {parameters:N0} parameters as bf16 shards in {clock.Elapsed.TotalSeconds:F0} s");
                var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
                start.ArgumentList.Add(typeof(RealSizeBench).Assembly.Location);
                start.ArgumentList.Add("--realsize-child");
                start.ArgumentList.Add(folder);
                start.ArgumentList.Add(name);
                start.ArgumentList.Add("--threads");
                start.ArgumentList.Add(threads.ToString(CultureInfo.InvariantCulture));
                if (!peer)
                {
                    start.ArgumentList.Add("--no-peer");
                }

                if (!longStep)
                {
                    start.ArgumentList.Add("--no-long");
                }
                using var child = Process.Start(start) ?? throw new InvalidOperationException("Could not start the realsize child process.");
                string? line;
                while ((line = child.StandardOutput.ReadLine()) is not null)
                {
                    Console.WriteLine(line); // the child prints its JSON line itself
                }

                child.WaitForExit();
                if (child.ExitCode != 0)
                {
                    print(new { bench = "realsize", shape = name, error = $"the measuring process exited with {child.ExitCode}" });
                }
            }
            finally
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    /// <summary>The child: one shape, measured from a fresh process; prints one JSON line.</summary>
    public static void Child(string folder, string name, bool peer = true, bool longStep = true, int threadCount = DefaultThreads)
    {
        TorchRuntime.EnsureInitialized();
        using var threads = TorchRuntime.UseThreads(threadCount);
        zeros(1).Dispose(); // libtorch loaded before anything is measured
        var rssAtStart = ProcessMemory.RssBytes();

        var clock = Stopwatch.StartNew();
        var sha = BaseModelReference.Fingerprint(folder); // a fit hashes the base once per path; timed apart from the load
        var hashSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();
        using var decoder = SharedBaseModels.Rent(folder, CPU, ScalarType.Float32);
        var loadSeconds = clock.Elapsed.TotalSeconds;
        var peakAfterLoad = ProcessMemory.PeakRssBytes();
        var fp32Bytes = decoder.parameters().Sum(p => p.numel() * 4);
        var config = decoder.Config;

        random.manual_seed(0);
        var settings = JsonSerializer.SerializeToElement(
            new LoraSettings(8, 16, 0.05, ["q_proj", "v_proj"], Pooling.Last, Unmasked: false), SettingsJson.Options);
        using var classifier = (LlamaSequenceClassifier)TuningMethodRegistry.Get(TuningMethod.LabelSupervised).Factory.Build(decoder, Labels, settings, tokenLevel: false);
        classifier.FreezeBase();
        var trainable = classifier.TrainableParameters();
        using var optimizer = new AdamW([new ParameterGroup("all", trainable, 1, 0.0)]);

        // A second transformer over the same base in this process (a reload, or a second adapter served beside the
        // first), before anything has trained or scored: it rents the shared frozen weights and adds its own adapter,
        // and each scores a batch. Peak resident memory while both exist, against one base's float32 bytes (the
        // runtime's own ~150 MB and one scoring batch's activations included).
        var (twoModelRows, _) = RandomBatch(8, 128, config.VocabSize, seed: 5);
        ProcessMemory.ResetPeak();
        double twoModelsLoadedPeak, oneModelPeak, twoModelsPeak;
        using (var secondDecoder = SharedBaseModels.Rent(folder, CPU, ScalarType.Float32))
        {
            random.manual_seed(1);
            using var second = (LlamaSequenceClassifier)TuningMethodRegistry.Get(TuningMethod.LabelSupervised).Factory.Build(secondDecoder, Labels, settings, tokenLevel: false);
            twoModelsLoadedPeak = ProcessMemory.PeakRssBytes(); // both built, nothing scored yet
            ScoreRowsPerSecond(classifier, twoModelRows);
            oneModelPeak = ProcessMemory.PeakRssBytes();        // the first has scored
            ScoreRowsPerSecond(second, twoModelRows);
            twoModelsPeak = ProcessMemory.PeakRssBytes();       // both have scored
        }

        Console.Error.WriteLine($"realsize {name}: two transformers over one base: peak {twoModelsLoadedPeak / 1e9:F2} GB built, {oneModelPeak / 1e9:F2} GB after the first scored, {twoModelsPeak / 1e9:F2} GB after both; {fp32Bytes / 1e9:F2} GB of float32 parameters");

        // LoRA step at 4 × 128: one warm-up step, then one timed (a step of a 1B model is 15-40 s on 2 shared cores).
        var (batch, examples) = RandomBatch(4, 128, config.VocabSize, seed: 1);
        ProcessMemory.ResetPeak();
        var rssBeforeStep = ProcessMemory.RssBytes();
        var stepMs = new List<double>();
        using (NativeHeap.ForTraining()) // as a fit runs its steps (TrainingEngine)
        {
            for (var i = 0; i < 2; i++)
            {
                clock.Restart();
                TrainStep(classifier, optimizer, trainable, batch, examples);
                stepMs.Add(clock.Elapsed.TotalMilliseconds);
                Console.Error.WriteLine($"realsize {name}: step {i + 1} at 4 x 128: {stepMs[^1]:F0} ms");
            }
        }

        var peakAfterStep = ProcessMemory.PeakRssBytes();
        var estimate = MemoryEstimate.For(decoder, classifier, 4, 128);

        // Scoring: a batch of 8 rows of 128 tokens (after one warm-up batch), first as decoders over a shared base do
        // (W x + s·B·A x, no private copies), then through merged weights (W + s·B·A and q/k/v concatenated once), as
        // unshared ones do. A forward pass of a 1B model is ~2 GFLOP a token: several seconds a batch on 2 cores.
        var (scoreRows, _) = RandomBatch(8, 128, config.VocabSize, seed: 2);
        var unmergedRowsPerSecond = ScoreRowsPerSecond(classifier, scoreRows);
        SetMerged(classifier, true);
        var rssBeforeMerged = ProcessMemory.RssBytes();
        var mergedRowsPerSecond = ScoreRowsPerSecond(classifier, scoreRows);
        var mergedCopyBytes = ProcessMemory.RssBytes() - rssBeforeMerged;
        SetMerged(classifier, false);
        Console.Error.WriteLine($"realsize {name}: scoring {unmergedRowsPerSecond:F2} rows/s unmerged, {mergedRowsPerSecond:F2} merged");


        object? longRun = null;
        if (longStep)
        {
            longRun = LongStep(name, decoder, classifier, optimizer, trainable, config);
        }

        var peerRatios = peer
            ? PeerRatios(name, config, classifier, optimizer, trainable, batch, examples, scoreRows)
            : new Dictionary<string, object> { ["skipped"] = "--no-peer" };
        var record = new Dictionary<string, object?>
        {
            ["bench"] = "realsize",
            ["shape"] = name,
            ["parameters"] = decoder.parameters().Sum(p => p.numel()),
            ["sha256_s"] = Math.Round(hashSeconds, 2),
            ["load_s"] = Math.Round(loadSeconds, 2),
            ["rss_before_load_bytes"] = rssAtStart,
            ["peak_rss_after_load_bytes"] = peakAfterLoad,
            ["fp32_param_bytes"] = fp32Bytes,
            ["peak_rss_after_load_over_fp32"] = Math.Round((double)peakAfterLoad / fp32Bytes, 3),
            ["load_peak_growth_over_fp32"] = Math.Round((double)(peakAfterLoad - rssAtStart) / fp32Bytes, 3),
            ["step_ms"] = Math.Round(Median(stepMs.Skip(1)), 0),
            ["step_batch"] = $"4x128 LoRA r8 q,v, {threadCount} threads",
            ["score_rows_per_s"] = Math.Round(unmergedRowsPerSecond, 2),
            ["score_rows_per_s_merged"] = Math.Round(mergedRowsPerSecond, 2),
            ["merged_scoring_copies_bytes"] = mergedCopyBytes,
            ["peak_rss_after_step_bytes"] = peakAfterStep,
            ["two_models_built_peak_rss_bytes"] = (long)twoModelsLoadedPeak,
            ["two_models_built_peak_rss_over_fp32"] = Math.Round(twoModelsLoadedPeak / fp32Bytes, 3),
            ["one_model_scored_peak_rss_bytes"] = (long)oneModelPeak,
            ["two_models_peak_rss_bytes"] = (long)twoModelsPeak,
            ["two_models_peak_rss_over_fp32"] = Math.Round(twoModelsPeak / fp32Bytes, 3),
            ["estimate_4x128_training_bytes"] = estimate.TrainingBytes,
            ["measured_4x128_training_bytes"] = peakAfterStep - rssBeforeStep,
            ["long_16x512"] = longRun,
            ["peer"] = peerRatios,
            ["threads"] = TorchRuntime.Threads,
            ["c_heap"] = NativeHeap.State,
            ["base_sha256"] = sha,
        };
        Console.WriteLine(JsonSerializer.Serialize(record));
    }

    private static object LongStep(string name, LlamaModel decoder, IClassifierModel classifier, AdamW optimizer,
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable, LlamaConfig config)
    {
        var (batch, examples) = RandomBatch(16, 512, config.VocabSize, seed: 3);
        var plain = MemoryEstimate.For(decoder, classifier, 16, 512);
        var checkpointed = MemoryEstimate.For(decoder, classifier, 16, 512, checkpointing: true);
        (double Ms, long Training, long Peak) Measure(bool checkpointing)
        {
            decoder.GradientCheckpointing = checkpointing;
            ProcessMemory.ResetPeak();
            var before = ProcessMemory.RssBytes();
            var clock = Stopwatch.StartNew();
            using (NativeHeap.ForTraining())
            {
                TrainStep(classifier, optimizer, trainable, batch, examples);
            }

            var ms = clock.Elapsed.TotalMilliseconds;
            var peak = ProcessMemory.PeakRssBytes();
            decoder.GradientCheckpointing = false;
            Console.Error.WriteLine($"realsize {name}: one step at 16 x 512 (checkpointing {(checkpointing ? "on" : "off")}): {ms / 1000:F0} s, {(peak - before) / 1e9:F2} GB added");
            return (ms, peak - before, peak);
        }

        var record = new Dictionary<string, object>();

        // Without checkpointing too where that fits (a layer-cut shape): the two runs calibrate both estimates.
        if (MemoryBudget.AvailableBytes(CPU) is { } available && plain.TrainingBytes < available * 0.6)
        {
            var (plainMs, plainTraining, _) = Measure(checkpointing: false);
            record["without_checkpointing"] = new Dictionary<string, object>
            {
                ["step_ms"] = Math.Round(plainMs, 0),
                ["estimate_training_bytes"] = plain.TrainingBytes,
                ["measured_training_bytes"] = plainTraining,
            };
        }

        var (ms, training, peak) = Measure(checkpointing: true);
        record["step_ms"] = Math.Round(ms, 0);
        record["estimate_training_bytes"] = checkpointed.TrainingBytes;
        record["estimate_training_bytes_without_checkpointing"] = plain.TrainingBytes;
        record["measured_training_bytes"] = training;
        record["estimate_over_measured"] = Math.Round((double)checkpointed.TrainingBytes / training, 3);
        record["peak_rss_bytes"] = peak;
        return record;
    }

    /// <summary>Step and scoring time of the peer at this shape over ours, alternating (ratio = peer ms / our ms), or why not.</summary>
    private static object PeerRatios(string name, LlamaConfig config, IClassifierModel classifier, AdamW optimizer,
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable, TokenBatch batch, List<Example> examples, TokenBatch scoreRows)
    {
        // As build.sh's peer_python: LABELTUNING_PEER_PYTHON, then python3 on the PATH, then the system's (Debian's python3-torch).
        var python = new[] { Environment.GetEnvironmentVariable("LABELTUNING_PEER_PYTHON"), "python3", "/usr/bin/python3" }
            .FirstOrDefault(candidate => !string.IsNullOrEmpty(candidate) && PythonHasTorch(candidate));
        if (python is null)
        {
            return new Dictionary<string, object> { ["skipped"] = "no python3 that imports torch (set LABELTUNING_PEER_PYTHON)" };
        }

        var shape = new Dictionary<string, object>
        {
            ["hidden"] = config.HiddenSize,
            ["layers"] = config.NumHiddenLayers,
            ["heads"] = config.NumAttentionHeads,
            ["kv_heads"] = config.KeyValueHeadCount,
            ["intermediate"] = config.IntermediateSize,
            ["vocab"] = config.VocabSize,
            ["batch"] = 4,
            ["sequence"] = 128,
            ["lora_rank"] = 8,
            ["lora_alpha"] = 16,
            ["lora_dropout"] = 0.05,
            ["labels"] = Labels,
            ["rope_theta"] = config.RopeTheta,
        };
        var script = Path.Combine(TrainerBench.RepoRoot(), "benchmarks", "peer", "peer_bench.py");
        using var peer = new PeerBench.PeerProcess(python, script, TorchRuntime.Threads, "--config", JsonSerializer.Serialize(shape));
        var trainRatios = new List<double>();
        var scoreRatios = new List<double>();
        var (scoreBatch, _) = RandomBatch(4, 128, config.VocabSize, seed: 4);
        using var heap = NativeHeap.ForTraining(); // the steps as a fit runs them; scoring between them as a fit's evaluation does
        for (var pair = 0; pair < PeerPairs; pair++)
        {
            double ours, theirs;
            var clock = Stopwatch.StartNew();
            if (pair % 2 == 0)
            {
                clock.Restart();
                TrainStep(classifier, optimizer, trainable, batch, examples);
                ours = clock.Elapsed.TotalMilliseconds;
                theirs = (double)peer.Ask($"time lora train 1 {(pair == 0 ? 1 : 0)}")["ms"]!;
            }
            else
            {
                theirs = (double)peer.Ask("time lora train 1 0")["ms"]!;
                clock.Restart();
                TrainStep(classifier, optimizer, trainable, batch, examples);
                ours = clock.Elapsed.TotalMilliseconds;
            }

            trainRatios.Add(theirs / ours);
            var oursScore = 1000 * 4 / ScoreRowsPerSecond(classifier, scoreBatch);
            var theirsScore = (double)peer.Ask($"time lora inference 1 {(pair == 0 ? 1 : 0)}")["ms"]!;
            scoreRatios.Add(theirsScore / oursScore);
            Console.Error.WriteLine($"realsize {name} peer pair {pair + 1}: step ratio {trainRatios[^1]:F2}, scoring ratio {scoreRatios[^1]:F2}");
        }

        return new Dictionary<string, object>
        {
            ["step_ratio_peer_over_ours"] = Math.Round(Median(trainRatios), 3),
            ["score_ratio_peer_over_ours"] = Math.Round(Median(scoreRatios), 3),
            ["pairs"] = PeerPairs,
            ["peer_impl"] = (string?)peer.Ask("config")["peer_impl"] ?? "unknown",
        };
    }

    private static bool PythonHasTorch(string python)
    {
        try
        {
            var start = new ProcessStartInfo(python) { RedirectStandardError = true, RedirectStandardOutput = true };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("import torch");
            using var process = Process.Start(start);
            if (process is null)
            {
                return false;
            }

            process.StandardOutput.ReadToEnd();
            process.StandardError.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false; // no such program
        }
    }

    /// <summary>The trainer's step: loss, backward, clip to norm 1, AdamW, zero grad.</summary>
    private static void TrainStep(IClassifierModel classifier, AdamW optimizer,
        IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> trainable, TokenBatch batch, List<Example> examples)
    {
        classifier.SetTraining(true);
        using var scope = NewDisposeScope();
        var loss = classifier.Loss(batch, examples, null);
        loss.backward();
        loss.item<float>();
        nn.utils.clip_grad_norm_(trainable.Select(p => p.Parameter).ToList(), 1.0);
        optimizer.Step(1e-4);
        optimizer.ZeroGrad();
    }

    /// <summary>Rows per second scoring <paramref name="rows"/> in batches of 8 as ClassifierRuntime does, after one warm-up batch.</summary>
    private static double ScoreRowsPerSecond(IClassifierModel classifier, TokenBatch rows)
    {
        classifier.SetTraining(false);
        using var noGrad = no_grad();
        var count = rows.InputIds.shape[0];
        var size = Math.Min(8, count);
        void Score(long start)
        {
            using var scope = NewDisposeScope();
            var batch = new TokenBatch(rows.InputIds.narrow(0, start, size), rows.AttentionMask.narrow(0, start, size), size * rows.InputIds.shape[1]);
            classifier.Logits(batch).softmax(-1).cpu().data<float>().ToArray();
        }

        Score(0);
        var clock = Stopwatch.StartNew();
        for (var start = 0L; start + size <= count; start += size)
        {
            Score(start);
        }

        return count / clock.Elapsed.TotalSeconds;
    }

    private static void SetMerged(LlamaSequenceClassifier classifier, bool merged)
    {
        foreach (var lora in classifier.modules().OfType<LoraLinear>())
        {
            lora.MergeForScoring = merged;
        }

        foreach (var layer in classifier.Model.Layers)
        {
            layer.SelfAttention.CacheScoringWeights = merged;
        }
    }

    private static (TokenBatch Batch, List<Example> Examples) RandomBatch(int rows, int length, int vocab, int seed)
    {
        var generator = new Random(seed);
        var ids = Enumerable.Range(0, rows).Select(_ => Enumerable.Range(0, length).Select(_ => generator.Next(3, vocab)).ToArray()).ToList();
        return (TokenBatch.Collate(ids, 0, CPU), ids.Select((row, i) => new Example(row, i % Labels)).ToList());
    }

}
