using System.Globalization;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.Runtime;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>What the trainer does when the memory estimate says a run would not fit.</summary>
public enum MemoryCheck
{
    /// <summary>Write a warning to the ML.NET log and train anyway (the default).</summary>
    Warn,

    /// <summary>Throw an <see cref="InvalidOperationException"/> naming the numbers before training starts.</summary>
    Fail,

    /// <summary>Do not estimate.</summary>
    Off,
}

/// <summary>Whether decoder layers are checkpointed while training (see <see cref="LabelTuningOptions.GradientCheckpointing"/>).</summary>
public enum GradientCheckpointing
{
    /// <summary>On when the memory estimate of a batch does not fit without it (the default).</summary>
    Auto,

    /// <summary>Always: keep each layer's input only and recompute its activations in the backward pass.</summary>
    On,

    /// <summary>Never: keep every layer's activations.</summary>
    Off,
}

/// <summary>
/// An estimate, made before training, of the memory a fine-tuning run needs: the model's parameters, the gradients
/// and AdamW's two moments of the trainable ones, and the activations autograd keeps for one micro-batch of the
/// longest examples. It is a planning figure, not a bound: within 15% of the measured growth of peak resident memory
/// for LoRA steps on the TinyLlama-1.1B and Llama-3.2-1B shapes at batch 4 × 128, and on the TinyLlama shape at
/// 16 × 512 (8 and 22 layers, checkpointed or not), under the library's default C heap (<c>Runtime/NativeHeap</c>;
/// with <c>LABELTUNING_MALLOC=off</c> glibc's heap keeps more, up to 1.5x the checkpointed figure), within a factor of
/// two on the tests' tiny model.
/// </summary>
/// <param name="ParameterBytes">Every parameter of the model, frozen and trainable.</param>
/// <param name="GradientBytes">One gradient per trainable parameter.</param>
/// <param name="OptimizerBytes">AdamW's first and second moments per trainable parameter.</param>
/// <param name="ActivationBytes">Hidden states kept for the backward pass: batch × tokens × layers × (a multiple of the hidden and MLP widths).</param>
/// <param name="AttentionBytes">
/// Attention masks: batch × tokens²; plus, where float32 attention is small enough to run as matmuls
/// (<see cref="LlamaAttention.MatmulAttentionMaxScores"/>), the softmax weights batch × heads × tokens² each layer keeps for
/// the backward pass (the fused kernel, used beyond that size, keeps none).
/// </param>
/// <param name="BatchSize">The decoder rows of a micro-batch the activations are for (texts, times the label pairs where a method runs each text with several labels).</param>
/// <param name="SequenceLength">The positions per row the activations are for (the longest example, plus virtual tokens or label positions).</param>
/// <param name="Checkpointing">Whether the activations are those of a run with gradient checkpointing (each layer's input, plus one layer's activations).</param>
internal sealed record MemoryEstimate(
    long ParameterBytes,
    long GradientBytes,
    long OptimizerBytes,
    long ActivationBytes,
    long AttentionBytes,
    int BatchSize,
    int SequenceLength,
    bool Checkpointing = false)
{
    /// <summary>
    /// Hidden-width vectors autograd keeps per token and layer: the norms' scaled inputs and outputs, q and its rotated
    /// copy, k and v repeated to every head, the attention output and its merged copy, the residual sums, LoRA's
    /// dropped-out inputs. Calibrated on the TinyLlama-1.1B shape cut to 2, 4 and 8 layers (<c>./build.sh bench realsize
    /// tinyllama-1.1b --layers N</c>): 36.7k floats a token and layer in all, of which the MLP and key/value terms below
    /// take 23.6k.
    /// </summary>
    internal const double HiddenVectorsPerToken = 6;

    /// <summary>Key/value-width vectors kept per token and layer (k, v, and their rotated copies).</summary>
    internal const double KeyValueVectorsPerToken = 4;

    /// <summary>MLP-width vectors kept per token and layer: gate, up, silu(gate), and their product.</summary>
    internal const double MlpVectorsPerToken = 4;

    /// <summary>
    /// A cost per layer, without checkpointing, that does not grow with the batch: 77 MB a layer at hidden size 2048 on
    /// both the TinyLlama-1.1B and the Llama-3.2-1B shape, at batch 4 × 128 and 16 × 512 alike, written as this many
    /// floats per hidden size squared. Measured, not derived (the fused q/k/v concatenation accounts for 7 MB of it);
    /// with only hidden size 2048 measured, how it scales with the width is an assumption.
    /// </summary>
    internal const double LayerFloatsPerHiddenSquared = 4.6;

    /// <summary>
    /// Hidden-width vectors a checkpointed layer keeps per token until its backward pass: its input. Fitted on the
    /// TinyLlama shape at 8 and 22 layers (16 × 512, checkpointed; 2.61 and 3.56 GB added) under the library's default
    /// C heap (<c>Runtime/NativeHeap</c>: 1.00; under glibc's own settings, whose heap kept more, 1.55 was fitted); the
    /// per-layer term above does not appear under checkpointing.
    /// </summary>
    internal const double CheckpointedHiddenVectorsPerToken = 1.0;

    /// <summary>
    /// The recomputed layer under checkpointing, as a multiple of one layer's activations: the activations themselves
    /// and its backward pass's transients (fitted with <see cref="CheckpointedHiddenVectorsPerToken"/>; 1.77 under
    /// glibc's own heap settings).
    /// </summary>
    internal const double RecomputedLayerFactor = 1.45;

    /// <summary>
    /// Floats kept per token outside the layers: the embeddings, final norm and pooling (4 hidden-width vectors) come on
    /// top; this is the rest of the trainer's bookkeeping (token ids, masks, the loss), calibrated on the tiny model
    /// of the tests, where it is most of the total.
    /// </summary>
    internal const double FixedFloatsPerToken = 1800;

    /// <summary>
    /// Token × token matrices per example: the float attention mask and its broadcast copy. The heads × tokens² softmax
    /// weights come on top only where attention runs as matmuls (see <see cref="AttentionBytes"/>); the fused
    /// scaled_dot_product_attention kernel does not store them for the backward pass (the measured peaks confirm it).
    /// </summary>
    internal const double MaskMatricesPerExample = 2;

    /// <summary>Gets the total: parameters, gradients, optimizer state, activations and attention masks.</summary>
    public long TotalBytes => ParameterBytes + GradientBytes + OptimizerBytes + ActivationBytes + AttentionBytes;

    /// <summary>Gets what training adds to a loaded model: everything but the parameters.</summary>
    public long TrainingBytes => TotalBytes - ParameterBytes;

    /// <summary>Estimates a run of a LLaMA model.</summary>
    /// <param name="config">The model's configuration.</param>
    /// <param name="parameterCount">Every parameter of the model, frozen and trainable.</param>
    /// <param name="trainableCount">The trainable parameters.</param>
    /// <param name="elementBytes">Bytes per element of the compute dtype (4 for float32, 2 for bfloat16 and float16).</param>
    /// <param name="batchSize">Examples per micro-batch.</param>
    /// <param name="sequenceLength">Tokens per example, soft-prompt tokens included.</param>
    /// <param name="checkpointing">
    /// Whether layers are checkpointed: then each layer keeps its input (one hidden-width vector per token) and one
    /// layer at a time holds its full activations, recomputed in the backward pass.
    /// </param>
    public static MemoryEstimate For(
        LlamaConfig config, long parameterCount, long trainableCount, int elementBytes, int batchSize, int sequenceLength, bool checkpointing = false)
    {
        ArgumentNullException.ThrowIfNull(config);
        double tokens = (double)batchSize * sequenceLength;
        double layers = config.NumHiddenLayers;
        double keyValueWidth = (double)config.KeyValueHeadCount * config.HeadDimension;
        var perLayer = LayerFloatsPerHiddenSquared * config.HiddenSize * config.HiddenSize;
        var perToken = (HiddenVectorsPerToken * config.HiddenSize) + (KeyValueVectorsPerToken * keyValueWidth) + (MlpVectorsPerToken * config.IntermediateSize);
        var kept = checkpointing
            ? (layers * tokens * CheckpointedHiddenVectorsPerToken * config.HiddenSize) + (RecomputedLayerFactor * tokens * perToken) // each layer's input, one layer recomputed
            : layers * ((tokens * perToken) + perLayer);
        var activations = (kept + (tokens * ((config.HiddenSize * 4) + FixedFloatsPerToken))) * elementBytes; // + embeddings, final norm, pooling, bookkeeping
        var attention = (double)batchSize * sequenceLength * sequenceLength * MaskMatricesPerExample * elementBytes;
        var scores = (double)batchSize * config.NumAttentionHeads * sequenceLength * sequenceLength;
        if (elementBytes == 4 && scores <= LlamaAttention.DefaultMatmulAttentionMaxScores)
        {
            attention += (checkpointing ? 1 : layers) * scores * elementBytes; // softmax weights kept for backward
        }
        return new MemoryEstimate(
            parameterCount * elementBytes,
            trainableCount * elementBytes,
            2 * trainableCount * elementBytes,
            Saturate(activations),
            Saturate(attention),
            batchSize,
            sequenceLength,
            checkpointing);
    }

    /// <summary>Estimates a run of <paramref name="classifier"/> over <paramref name="model"/> (parameters counted once, from both).</summary>
    internal static MemoryEstimate For(LlamaModel model, Training.IClassifierModel classifier, int batchSize, int sequenceLength, bool checkpointing = false)
    {
        var all = new Dictionary<IntPtr, long>();
        var elementBytes = 4;
        foreach (var p in model.parameters())
        {
            all[p.Handle] = p.numel();
            elementBytes = (int)p.ElementSize;
        }

        if (classifier is TorchSharp.torch.nn.Module module)
        {
            foreach (var p in module.parameters())
            {
                all[p.Handle] = p.numel();
            }
        }

        long trainable = 0;
        foreach (var (_, p) in classifier.TrainableParameters())
        {
            all[p.Handle] = p.numel();
            trainable += p.numel();
        }

        var (rows, positions) = classifier.TrainingShape(batchSize, sequenceLength);
        return For(model.Config, all.Values.Sum(), trainable, elementBytes, rows, positions, checkpointing);
    }

    /// <summary>Gets the name and size of the largest part of <see cref="TrainingBytes"/>.</summary>
    public (string Name, long Bytes) LargestTrainingTerm => new[]
    {
        ("activations", ActivationBytes),
        ("attention masks", AttentionBytes),
        ("AdamW state", OptimizerBytes),
        ("gradients", GradientBytes),
    }.MaxBy(term => term.Item2);

    /// <summary>Formats a byte count as "1.23 GB" (powers of 1024, to match what the OS reports).</summary>
    public static string FormatBytes(long bytes)
    {
        string[] units = ["B", "KB", "MB", "GB", "TB", "PB"];
        double value = bytes;
        var unit = 0;
        while (value >= 1024 && unit < units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0 ? $"{bytes} B" : value.ToString("0.##", CultureInfo.InvariantCulture) + " " + units[unit];
    }

    /// <inheritdoc/>
    public override string ToString()
        => $"about {FormatBytes(TotalBytes)}: parameters {FormatBytes(ParameterBytes)}, gradients {FormatBytes(GradientBytes)}, " +
           $"AdamW state {FormatBytes(OptimizerBytes)}, activations {FormatBytes(ActivationBytes)} and attention masks " +
           $"{FormatBytes(AttentionBytes)} for a micro-batch of {BatchSize} rows × {SequenceLength} positions" +
           (Checkpointing ? ", layers checkpointed" : string.Empty);

    private static long Saturate(double bytes) => bytes >= long.MaxValue ? long.MaxValue : (long)bytes;
}

/// <summary>Compares a <see cref="MemoryEstimate"/> with the memory the machine has free, before training starts.</summary>
internal static class MemoryBudget
{
    /// <summary>Gets or sets a figure that replaces the measured available memory (tests only).</summary>
    internal static long? AvailableBytesOverride { get; set; }

    /// <summary>
    /// Memory this process can still use, in bytes: the smaller of the GC's limit (physical memory or the container's
    /// limit) and, on Linux, <c>MemAvailable</c> from /proc/meminfo. Null on CUDA devices, which this does not measure.
    /// </summary>
    public static long? AvailableBytes(Device device)
    {
        if (AvailableBytesOverride is { } given)
        {
            return given;
        }

        if (device.type != TorchSharp.DeviceType.CPU)
        {
            return null;
        }

        var available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (MemAvailable() is { } free)
        {
            available = available > 0 ? Math.Min(available, free) : free;
        }

        return available > 0 ? available : null;
    }

    /// <summary>
    /// The largest micro-batch, at most <paramref name="batchSize"/> and found by halving, whose estimate fits in
    /// <paramref name="availableBytes"/>; null when even one row does not fit or nothing needs to change (the batch
    /// fits, or the available memory is unknown).
    /// </summary>
    public static int? FittingMicroBatch(Func<int, MemoryEstimate> estimateFor, int batchSize, long? availableBytes)
    {
        if (availableBytes is not { } available || estimateFor(batchSize).TrainingBytes <= available)
        {
            return null;
        }

        for (var micro = batchSize / 2; micro >= 1; micro /= 2)
        {
            if (estimateFor(micro).TrainingBytes <= available)
            {
                return micro;
            }
        }

        return null;
    }

    /// <summary>
    /// Warns through <paramref name="channel"/>, or throws, when the memory training adds to the loaded model exceeds
    /// <paramref name="availableBytes"/> (the parameters are already loaded, so they are not counted against it).
    /// </summary>
    /// <returns>The message when the run would not fit, else null.</returns>
    public static string? Check(MemoryEstimate estimate, long? availableBytes, MemoryCheck mode, IChannel? channel)
    {
        if (mode == MemoryCheck.Off || availableBytes is not { } available)
        {
            return null;
        }

        if (estimate.TrainingBytes <= available)
        {
            channel?.Info($"memory estimate {estimate}; {MemoryEstimate.FormatBytes(available)} available");
            return null;
        }

        var (largest, largestBytes) = estimate.LargestTrainingTerm;
        var checkpointing = estimate.Checkpointing
            ? string.Empty
            : "set GradientCheckpointing to On (or leave it Auto) to keep one layer's activations instead of all, ";
        var message =
            $"This run would need {MemoryEstimate.FormatBytes(estimate.TrainingBytes)} beyond the loaded model but only " +
            $"{MemoryEstimate.FormatBytes(available)} is available; the largest part is the {largest} ({MemoryEstimate.FormatBytes(largestBytes)}). " +
            $"Estimate: {estimate}. To shrink it, {checkpointing}lower BatchSize (and raise GradientAccumulationSteps to keep the " +
            "effective batch; MemoryCheck Warn splits batches into micro-batches itself) or MaxSequenceLength, or set MemoryCheck to Off to train anyway.";
        if (mode == MemoryCheck.Fail)
        {
            throw new InvalidOperationException(message);
        }

        channel?.Warning(message);
        return message;
    }

    private static long? MemAvailable()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries); // "MemAvailable:", "123456", "kB"
                    return parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var kb) ? kb * 1024 : null;
                }
            }
        }
        catch (IOException)
        {
            // No /proc: fall back to the GC's figure.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }

        return null;
    }
}
