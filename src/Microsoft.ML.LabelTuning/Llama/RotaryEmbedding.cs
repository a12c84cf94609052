using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// Rotary position embedding in Hugging Face's <c>rotate_half</c> convention: a head vector x of width Dh is split
/// into halves (x₁, x₂) and rotated as <c>x·cos + (−x₂, x₁)·sin</c>, with angle <c>position · inv_freq[i]</c> for
/// the i-th of the Dh/2 frequencies (repeated over both halves). The inverse frequencies are
/// <c>1 / θ^(2i/Dh)</c>, optionally rescaled as transformers' <c>_compute_llama3_parameters</c> or linear scaling
/// do. Cos/sin tables for consecutive positions are cached per device; arbitrary position ids are computed
/// directly. Holds no parameters, so nothing of it appears in the state dict.
/// </summary>
internal sealed class RotaryEmbedding : IDisposable
{
    private const long MinimumTableLength = 256;
    private readonly float[] _invFreq;
    private readonly Dictionary<string, (Tensor InvFreq, Tensor Cos, Tensor Sin)> _tables = new(StringComparer.Ordinal);
    private bool _disposed;

    public RotaryEmbedding(LlamaConfig config)
    {
        HeadDim = config.HeadDimension;
        _invFreq = ComputeInverseFrequencies(config);
    }

    /// <summary>Gets the rotated width Dh.</summary>
    public int HeadDim { get; }

    /// <summary>Gets the Dh/2 inverse frequencies in float32 (after any scaling).</summary>
    public IReadOnlyList<float> InverseFrequencies => _invFreq;

    /// <summary>
    /// The Dh/2 inverse frequencies, computed in float32 exactly as transformers does:
    /// <c>inv_freq[i] = 1 / θ^(2i/Dh)</c>; for <c>linear</c> scaling divided by <c>factor</c>; for <c>llama3</c>,
    /// with wavelength <c>λ = 2π / inv_freq</c>, kept where <c>λ &lt; L/high</c>, divided by <c>factor</c> where
    /// <c>λ &gt; L/low</c>, and in between blended as <c>(1 − s)·f/factor + s·f</c> with
    /// <c>s = (L/λ − low) / (high − low)</c> (L = original_max_position_embeddings).
    /// </summary>
    public static float[] ComputeInverseFrequencies(LlamaConfig config)
    {
        var dim = config.HeadDimension;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var exponents = torch.arange(0, dim, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / dim; // [Dh/2]
        var invFreq = 1.0f / torch.pow(torch.tensor((float)config.RopeTheta), exponents);              // [Dh/2]

        var scaling = config.RopeScaling;
        switch (scaling?.Kind)
        {
            case "linear":
                invFreq = invFreq / scaling.Factor!.Value;
                break;
            case "llama3":
                var factor = scaling.Factor!.Value;
                var low = scaling.LowFreqFactor!.Value;
                var high = scaling.HighFreqFactor!.Value;
                double oldContext = scaling.OriginalMaxPositionEmbeddings!.Value;
                var lowFreqWavelen = oldContext / low;
                var highFreqWavelen = oldContext / high;
                var wavelen = 2 * Math.PI / invFreq;
                var llama = torch.where(wavelen > lowFreqWavelen, invFreq / factor, invFreq);
                var smooth = (oldContext / wavelen - low) / (high - low);
                var smoothed = (1 - smooth) * llama / factor + smooth * llama;
                var isMedium = (wavelen < highFreqWavelen).logical_not().logical_and((wavelen > lowFreqWavelen).logical_not());
                invFreq = torch.where(isMedium, smoothed, llama);
                break;
        }

        return invFreq.to(ScalarType.Float32).data<float>().ToArray();
    }

    /// <summary>Cos and sin for positions <c>start .. start+length-1</c>, shaped [1, 1, T, Dh], from a cached table.</summary>
    public (Tensor Cos, Tensor Sin) ForRange(long start, long length, Device device, ScalarType dtype)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var (_, cosTable, sinTable) = TablesFor(device, start + length);
        var cos = cosTable.narrow(0, start, length).unsqueeze(0).unsqueeze(0); // [1, 1, T, Dh]
        var sin = sinTable.narrow(0, start, length).unsqueeze(0).unsqueeze(0); // [1, 1, T, Dh]
        return (cos.to(dtype), sin.to(dtype));
    }

    /// <summary>Cos and sin for explicit position ids [B, T] (int64), shaped [B, 1, T, Dh].</summary>
    public (Tensor Cos, Tensor Sin) ForPositions(Tensor positionIds, ScalarType dtype)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var (invFreq, _, _) = TablesFor(positionIds.device, 0);
        using var scope = torch.NewDisposeScope();
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq; // [B, T, Dh/2]
        var emb = torch.cat([freqs, freqs], -1).unsqueeze(1);                    // [B, 1, T, Dh]
        var cos = emb.cos().to(dtype).MoveToOuterDisposeScope();
        var sin = emb.sin().to(dtype).MoveToOuterDisposeScope();
        return (cos, sin);
    }

    /// <summary>Rotates x [B, H, T, Dh] by cos/sin broadcastable to it: <c>x·cos + rotate_half(x)·sin</c>.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        var half = x.shape[^1] / 2;
        // rotate_half(x)·sin = [x2, x1]·[−sin₁, sin₂]: the sign moves to the (small, batch-free) sine table, so the
        // x-sized work is one swap of the halves, one product and one fused multiply-add instead of five kernels. The
        // swap is a roll by Dh/2 (the same values as concatenating the two halves), whose gradient is one roll back
        // rather than two zero-filled half-width scatters and their sum (0.26 vs 0.34-0.45 ms forward and backward
        // at [8, 4, 128, 64], 2 threads).
        var swapped = x.roll(half, -1); // [B, H, T, Dh]: [x2, x1]
        var signedSin = torch.cat([sin.narrow(-1, 0, half).neg(), sin.narrow(-1, half, half)], -1); // like sin
        return torch.addcmul(x * cos, swapped, signedSin, 1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        foreach (var (invFreq, cos, sin) in _tables.Values)
        {
            invFreq.Dispose();
            cos.Dispose();
            sin.Dispose();
        }

        _tables.Clear();
        _disposed = true;
    }

    private (Tensor InvFreq, Tensor Cos, Tensor Sin) TablesFor(Device device, long needed)
    {
        var key = device.ToString();
        if (_tables.TryGetValue(key, out var tables) && tables.Cos.shape[0] >= needed)
        {
            return tables;
        }

        var length = Math.Max(MinimumTableLength, needed);
        if (tables.Cos is not null)
        {
            length = Math.Max(length, 2 * tables.Cos.shape[0]);
            tables.InvFreq.Dispose();
            tables.Cos.Dispose();
            tables.Sin.Dispose();
        }

        using (torch.no_grad())
        using (var scope = torch.NewDisposeScope())
        {
            var invFreq = torch.tensor(_invFreq, device: device);                                      // [Dh/2]
            var positions = torch.arange(length, dtype: ScalarType.Int64, device: device).to(ScalarType.Float32);
            var freqs = positions.unsqueeze(-1) * invFreq;                                             // [N, Dh/2]
            var emb = torch.cat([freqs, freqs], -1);                                                   // [N, Dh]
            tables = (invFreq.DetachFromDisposeScope(), emb.cos().DetachFromDisposeScope(), emb.sin().DetachFromDisposeScope());
        }

        _tables[key] = tables;
        return tables;
    }
}
