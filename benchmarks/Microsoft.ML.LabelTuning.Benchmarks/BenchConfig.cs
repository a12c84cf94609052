using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// The engine benchmark's configuration (issue 3), shared with the peer benchmark (issue 20) and
/// benchmarks/peer/peer_bench.py: hidden 256, 4 layers, 4 heads, intermediate 688, vocab 32000, batch 8 × 128, fp32;
/// LoRA r 8, alpha 32, dropout 0.1 on q and v; 4 labels; 20 virtual tokens for prompt and prefix tuning.
/// </summary>
internal static class BenchConfig
{
    public const int Batch = 8;
    public const int Sequence = 128;
    public const int LoraRank = 8;
    public const double LoraAlpha = 32;
    public const double LoraDropout = 0.1;
    public const int Labels = 4;
    public const int VirtualTokens = 20;
    public const double LearningRate = 1e-4;
    public const double MaxGradientNorm = 1.0;
    public static readonly string[] LoraTargets = ["q_proj", "v_proj"];

    public static LlamaConfig Model => new()
    {
        HiddenSize = 256,
        IntermediateSize = 688,
        NumHiddenLayers = 4,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 4,
        VocabSize = 32000,
        MaxPositionEmbeddings = 2048,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        BosTokenId = 1,
        EosTokenId = [2],
    };

    /// <summary>
    /// Forward FLOPs of the decoder (no LM head) for a [B, T] batch: 2 × (matmul parameters outside the embedding)
    /// per token, plus attention's QKᵀ and AV products, 2 × 2 × T × D per token per layer (full square, as computed).
    /// </summary>
    public static double ForwardFlops(LlamaConfig c, int batch, int sequence)
    {
        var kv = c.KeyValueHeadCount * c.HeadDimension;
        var perLayer = (long)c.HiddenSize * (c.NumAttentionHeads * c.HeadDimension) * 2 + (2L * c.HiddenSize * kv)
            + (3L * c.HiddenSize * c.IntermediateSize);
        var tokens = (double)batch * sequence;
        var matmul = 2.0 * perLayer * c.NumHiddenLayers * tokens;
        var attention = 4.0 * sequence * c.NumAttentionHeads * c.HeadDimension * c.NumHiddenLayers * tokens;
        return matmul + attention;
    }
}

/// <summary>Peak and current resident memory of this process, from /proc/self/status.</summary>
internal static class ProcessMemory
{
    public static long PeakRssBytes() => Read("VmHWM:");

    public static long RssBytes() => Read("VmRSS:");

    /// <summary>
    /// Resets the peak (VmHWM) to the current resident size, where Linux allows it (/proc/self/clear_refs), after
    /// returning the C heap's free pages to the system (glibc's malloc_trim), so that memory freed by earlier work and
    /// kept by the allocator is neither counted in the baseline nor silently reused by what is measured next.
    /// </summary>
    public static void ResetPeak()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        if (OperatingSystem.IsLinux())
        {
            try
            {
                MallocTrim(0);
            }
            catch (DllNotFoundException)
            {
                // Not glibc (musl): nothing to trim.
            }
            catch (EntryPointNotFoundException)
            {
                // As above.
            }
        }

        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (IOException)
        {
            // Not Linux, or not allowed: the peak then includes what came before.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static long Read(string key)
    {
        if (!File.Exists("/proc/self/status"))
        {
            return Environment.WorkingSet;
        }

        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
        // "VmHWM:\t  123456 kB": a tab, then spaces that run out from 10 GB on ("VmHWM:\t10466172 kB").
        return line is null ? 0 : long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }
}

/// <summary>Statistics every benchmark shares.</summary>
internal static class BenchMath
{
    /// <summary>The median (the mean of the two middle values for an even count).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
