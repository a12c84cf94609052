using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;
using static TorchSharp.torch;
using static Microsoft.ML.LabelTuning.Benchmarks.BenchMath;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// The peer benchmark's data-path parts (issue 20, items 2 and 4), LoRA at the peer config, alternating with the peer:
/// <list type="bullet">
/// <item><c>imdb</c>: one training epoch over 512 real IMDB reviews (data/imdb/train.tsv, the first 512 rows) tokenized
/// with the real LLaMA-2 tokenizer and cut at 256 tokens (BOS included), batch 8. Both sides get the same token ids. Ours
/// batches them as the trainer does (length-grouped batches, padded to the batch's longest row); the peer as the HF
/// Trainer does with DataCollatorWithPadding (a seeded random permutation, each batch padded to its longest row).
/// The figure that matters is real (non-pad) tokens per second.</item>
/// <item><c>scaling</c>: a LoRA training step and a scoring step at sequence 128, 256, 512, 1024 and batch 1, 8, 32
/// (random tokens, no padding): ms, tokens/s and peak RSS (VmHWM reset through /proc/self/clear_refs before each
/// configuration, on each side), so users see where attention's quadratic term starts to matter.</item>
/// </list>
/// </summary>
internal static partial class PeerBench
{
    private const int ImdbReviews = 512;
    private const int ImdbMaxTokens = 256;
    private static readonly int[] _scalingSequences = [128, 256, 512, 1024];
    private static readonly int[] _scalingBatches = [1, 8, 32];

    private static void RunData(Action<object> print, PeerProcess peer, OursSide ours, int pairs, IReadOnlySet<string> parts, string? peerImpl)
    {
        ours.Prepare("lora");
        if (parts.Contains("imdb"))
        {
            RunImdb(print, peer, ours, Math.Max(2, Math.Min(pairs, 4)), peerImpl);
        }

        if (parts.Contains("scaling"))
        {
            RunScaling(print, peer, ours, peerImpl);
        }
    }

    private static void RunImdb(Action<object> print, PeerProcess peer, OursSide ours, int pairs, string? peerImpl)
    {
        var root = TrainerBench.RepoRoot();
        var tokenizer = LlamaTextTokenizer.FromModelFolder(Path.Combine(root, "test", "Microsoft.ML.LabelTuning.Tests", "Fixtures", "llama2-tokenizer"));
        var rows = File.ReadLines(Path.Combine(root, "data", "imdb", "train.tsv")).Skip(1)
            .Where(line => line.Length > 0)
            .Select(line => (Label: line[..line.IndexOf('\t', StringComparison.Ordinal)], Text: line[(line.IndexOf('\t', StringComparison.Ordinal) + 1)..]))
            .Take(ImdbReviews)
            .ToList();
        var ids = rows.Select(r => tokenizer.Encode(r.Text).Take(ImdbMaxTokens).ToArray()).ToList();
        var labels = rows.Select(r => r.Label == "positive" ? 1 : 0).ToList();
        var examples = ids.Select((x, i) => new Example(x, labels[i])).ToList();
        var realTokens = ids.Sum(x => (long)x.Length);
        var file = Path.Combine(Path.GetTempPath(), $"labeltuning-peer-imdb-{Environment.ProcessId}.json");
        File.WriteAllText(file, JsonSerializer.Serialize(new { ids, labels }));
        try
        {
            (double Ms, long Padded) OursEpoch(int seed)
            {
                var plan = LengthGroupedBatcher.Plan(ids.Select(x => x.Length).ToArray(), BenchConfig.Batch, seed, 0);
                long padded = 0;
                var clock = Stopwatch.StartNew();
                using var heap = NativeHeap.ForTraining(); // an epoch, as a fit runs it
                foreach (var batch in plan)
                {
                    using var scope = NewDisposeScope();
                    var sequences = batch.Select(i => ids[i]).ToList();
                    padded += (long)sequences.Count * sequences.Max(s => s.Length);
                    ours.TrainLora(TokenBatch.Collate(sequences, 0, CPU), batch.Select(i => examples[i]).ToList());
                }

                return (clock.Elapsed.TotalMilliseconds, padded);
            }

            (double Ms, long Padded) PeerEpoch(int seed)
            {
                var answer = peer.Ask($"epoch {file} {BenchConfig.Batch} {seed}");
                if ((long)answer["real_tokens"]! != realTokens)
                {
                    throw new InvalidOperationException($"The peer counted {answer["real_tokens"]} real tokens in {file}, ours {realTokens}.");
                }

                return ((double)answer["ms"]!, (long)answer["padded_tokens"]!);
            }

            // A warm-up epoch on each side (first-touch allocation, the peer's first model build).
            OursEpoch(100);
            PeerEpoch(100);
            var oursMs = new List<double>();
            var peerMs = new List<double>();
            long oursPadded = 0, peerPadded = 0;
            for (var pair = 0; pair < pairs; pair++)
            {
                (double Ms, long Padded) o, p;
                if (pair % 2 == 0)
                {
                    o = OursEpoch(pair);
                    Pause();
                    p = PeerEpoch(pair);
                }
                else
                {
                    p = PeerEpoch(pair);
                    Pause();
                    o = OursEpoch(pair);
                }

                Pause();
                oursMs.Add(o.Ms);
                peerMs.Add(p.Ms);
                oursPadded += o.Padded;
                peerPadded += p.Padded;
                Console.Error.WriteLine($"imdb epoch pair {pair + 1}/{pairs}: ours {o.Ms / 1000:F1} s ({o.Padded:N0} padded tokens), peer {p.Ms / 1000:F1} s ({p.Padded:N0}), ratio {p.Ms / o.Ms:F2}");
            }

            var ratios = oursMs.Zip(peerMs, (o, p) => p / o).ToArray();
            print(new
            {
                bench = "peer_imdb",
                method = "lora",
                phase = "train_epoch",
                reviews = ids.Count,
                max_tokens = ImdbMaxTokens,
                batch = BenchConfig.Batch,
                tokenizer = "LLaMA-2 tokenizer.model (test fixture), the same ids on both sides",
                real_tokens = realTokens,
                ours_padded_tokens = oursPadded / pairs,
                peer_padded_tokens = peerPadded / pairs,
                ours_epoch_s = Math.Round(Median(oursMs) / 1000, 2),
                peer_epoch_s = Math.Round(Median(peerMs) / 1000, 2),
                ours_real_tokens_per_s = Math.Round(realTokens / (Median(oursMs) / 1000)),
                peer_real_tokens_per_s = Math.Round(realTokens / (Median(peerMs) / 1000)),
                ratio = Math.Round(Median(ratios), 3),
                ratio_min = Math.Round(ratios.Min(), 3),
                ratio_max = Math.Round(ratios.Max(), 3),
                pairs,
                ours_batching = "length-grouped, padded to the batch's longest row",
                peer_batching = "random permutation, DataCollatorWithPadding (padded to the batch's longest row)",
                peer_impl = peerImpl,
            });
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static void RunScaling(Action<object> print, PeerProcess peer, OursSide ours, string? peerImpl)
    {
        FixedMmapThreshold();
        var generator = new Random(2);
        foreach (var sequence in _scalingSequences)
        {
            foreach (var batch in _scalingBatches)
            {
                var rows = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, sequence).Select(_ => generator.Next(3, BenchConfig.Model.VocabSize)).ToArray()).ToList();
                var examples = rows.Select((x, i) => new Example(x, i % BenchConfig.Labels)).ToList();
                var tokens = (long)batch * sequence;
                // A few steps, fewer for the big shapes: about 16k tokens of work per turn at least.
                var runs = (int)Math.Clamp(16_384 / tokens, 2, 5);
                foreach (var phase in _phases)
                {
                    (double Ms, long PeakRss, long BaseRss) Ours()
                    {
                        using var scope = NewDisposeScope();
                        using var heap = phase == "train" ? NativeHeap.ForTraining() : null; // the steps as a fit runs them
                        var tokenBatch = TokenBatch.Collate(rows, 0, CPU);
                        void Step()
                        {
                            if (phase == "train")
                            {
                                ours.TrainLora(tokenBatch, examples);
                            }
                            else
                            {
                                ours.ScoreLora(tokenBatch);
                            }
                        }

                        ResetPeakRss();
                        var baseline = ProcessMemory.RssBytes();
                        Step();
                        var samples = new List<double>();
                        for (var i = 0; i < runs; i++)
                        {
                            var clock = Stopwatch.StartNew();
                            Step();
                            samples.Add(clock.Elapsed.TotalMilliseconds);
                        }

                        return (Median(samples), ProcessMemory.PeakRssBytes(), baseline);
                    }

                    (double Ms, long? PeakRss, long? BaseRss) Peer()
                    {
                        var answer = peer.Ask($"shape {batch} {sequence} {phase} {runs} 1");
                        return ((double)answer["ms"]!, answer["peak_rss_bytes"] is { } rss ? (long)rss : null, answer["rss_before_bytes"] is { } before ? (long)before : null);
                    }

                    var o = Ours();
                    Pause();
                    var p = Peer();
                    Pause();
                    print(new
                    {
                        bench = "peer_scaling",
                        method = "lora",
                        phase,
                        batch,
                        sequence,
                        runs,
                        ours_ms = Math.Round(o.Ms, 2),
                        peer_ms = Math.Round(p.Ms, 2),
                        ratio = Math.Round(p.Ms / o.Ms, 3),
                        ours_tokens_per_s = Math.Round(tokens / (o.Ms / 1000)),
                        peer_tokens_per_s = Math.Round(tokens / (p.Ms / 1000)),
                        ours_peak_rss_bytes = o.PeakRss,
                        peer_peak_rss_bytes = p.PeakRss,
                        ours_rss_before_bytes = o.BaseRss,
                        peer_rss_before_bytes = p.BaseRss,
                        ours_peak_increase_bytes = o.PeakRss - o.BaseRss,
                        peer_peak_increase_bytes = p.PeakRss - p.BaseRss,
                        peer_impl = peerImpl,
                    });
                }
            }
        }
    }

    /// <summary>
    /// glibc: allocations of 64 KiB and more are mmapped and returned to the OS when freed (M_MMAP_THRESHOLD fixed, so
    /// no dynamic threshold), so one configuration's peak RSS is not hidden by heap kept from an earlier, larger one.
    /// The peer script does the same.
    /// </summary>
    private static void FixedMmapThreshold()
    {
        try
        {
            _ = Mallopt(-3, 64 * 1024);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Console.Error.WriteLine("not glibc: the peak RSS of a configuration may include memory kept from an earlier one");
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int parameter, int value);

    /// <summary>Linux: writing 5 to /proc/self/clear_refs resets VmHWM (the peak resident set) to the current RSS.</summary>
    private static void ResetPeakRss()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"could not reset the peak RSS ({e.Message}); peak_rss is then the process's peak so far");
        }
    }
}
