using System.Numerics;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>
/// Inverted dropout (<c>x · mask / (1 − p)</c>, each element kept with probability 1 − p), as
/// <c>torch.nn.functional.dropout</c> computes it in training, with the mask drawn by a vectorized counter-based hash
/// on the host rather than by libtorch's CPU Bernoulli kernel. That kernel draws one Mersenne-twister number per element
/// on one thread unless MKL runs on an Intel CPU (≈ 2 ms per 262,144 elements on the AMD EPYC VM, 15–20% of a LoRA step
/// at the peer benchmark's config, where q and v each drop their input in every layer); the hash fills the same mask in
/// tens of microseconds.
/// </summary>
/// <remarks>
/// Each call draws two 32-bit keys from torch's default generator, so <c>torch.manual_seed</c> makes the masks
/// reproducible and saving and restoring the generator state (gradient checkpointing's recomputation) redraws the
/// same mask. Element <c>i</c> is kept when <c>h(i) &lt; (1 − p)·2³²</c>, with <c>h</c> two rounds of the
/// "lowbias32" integer hash keyed by the two keys; the keep rate is 1 − p to within 2⁻³². The masks are not the ones
/// PyTorch would draw for the same seed (no two libraries' masks are); their distribution is.
/// </remarks>
internal static class FastDropout
{
    private const uint Golden = 0x9E3779B9u;

    /// <summary>
    /// Returns <paramref name="x"/> with each element zeroed with probability <paramref name="p"/> and the rest scaled by
    /// 1 / (1 − p). Gradients flow through as they do through <c>dropout</c> (the mask is a constant).
    /// </summary>
    /// <param name="x">The input, any shape and floating dtype, on any device (the mask is built on the CPU and moved).</param>
    /// <param name="p">The probability of zeroing an element, in [0, 1].</param>
    public static Tensor Apply(Tensor x, double p)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (double.IsNaN(p) || p < 0 || p > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "The dropout probability must be in [0, 1].");
        }

        if (p == 0)
        {
            return x.mul(1.0);
        }

        if (p == 1)
        {
            return x.mul(0.0);
        }

        using var mask = Mask(x.shape, p, x.device, x.dtype);
        return x.mul(mask);
    }

    /// <summary>A mask of <paramref name="shape"/>: 1 / (1 − p) where kept, 0 where dropped (p in (0, 1)).</summary>
    public static Tensor Mask(long[] shape, double p, Device device, ScalarType dtype)
    {
        var (key0, key1) = DrawKeys();
        using var scope = torch.NewDisposeScope();
        var mask = torch.empty(shape, dtype: ScalarType.Float32, device: CPU);
        var bytes = mask.bytes; // the tensor's own memory, written in place (contiguous: it was just made)
        Fill(MemoryMarshal.Cast<byte, float>(bytes), p, key0, key1);
        if (dtype != ScalarType.Float32)
        {
            mask = mask.to(dtype);
        }

        if (device.type != DeviceType.CPU)
        {
            mask = mask.to(device);
        }

        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Fills <paramref name="mask"/> with 1 / (1 − p) where h(i) keeps element i and 0 elsewhere.</summary>
    internal static void Fill(Span<float> mask, double p, uint key0, uint key1)
    {
        var keep = 1.0 - p;
        var threshold = (uint)Math.Min(uint.MaxValue, Math.Round(keep * 4294967296.0));
        var scale = (float)(1.0 / keep);
        var i = 0;
        if (Vector.IsHardwareAccelerated && mask.Length >= Vector<uint>.Count)
        {
            var lanes = Vector<uint>.Count;
            Span<uint> offsets = stackalloc uint[lanes];
            for (var lane = 0; lane < lanes; lane++)
            {
                offsets[lane] = (uint)lane;
            }

            var index = new Vector<uint>(offsets);
            var step = new Vector<uint>((uint)lanes);
            var k0 = new Vector<uint>(key0);
            var k1 = new Vector<uint>(key1);
            var golden = new Vector<uint>(Golden);
            var limit = new Vector<uint>(threshold);
            var scaleBits = Vector.AsVectorUInt32(new Vector<float>(scale));
            var floats = MemoryMarshal.Cast<float, Vector<uint>>(mask);
            for (var v = 0; v < floats.Length; v++)
            {
                var h = Hash((index * golden) + k0);
                h = Hash(h ^ k1);
                floats[v] = Vector.LessThan(h, limit) & scaleBits;
                index += step;
            }

            i = floats.Length * lanes;
        }

        for (; i < mask.Length; i++)
        {
            var h = Hash(((uint)i * Golden) + key0);
            h = Hash(h ^ key1);
            mask[i] = h < threshold ? scale : 0f;
        }
    }

    /// <summary>The "lowbias32" integer hash (a bijection on 32 bits with low bias), one lane at a time.</summary>
    private static uint Hash(uint x)
    {
        x ^= x >> 16;
        x *= 0x7FEB352Du;
        x ^= x >> 15;
        x *= 0x846CA68Bu;
        x ^= x >> 16;
        return x;
    }

    /// <summary>The "lowbias32" integer hash, every lane at once.</summary>
    private static Vector<uint> Hash(Vector<uint> x)
    {
        x ^= Vector.ShiftRightLogical(x, 16);
        x *= new Vector<uint>(0x7FEB352Du);
        x ^= Vector.ShiftRightLogical(x, 15);
        x *= new Vector<uint>(0x846CA68Bu);
        x ^= Vector.ShiftRightLogical(x, 16);
        return x;
    }

    /// <summary>Two 32-bit keys from torch's default generator (so manual_seed and get/set_rng_state govern them).</summary>
    private static (uint Key0, uint Key1) DrawKeys()
    {
        using var keys = torch.randint(0, 1L << 32, [2], dtype: ScalarType.Int64);
        var values = keys.data<long>();
        return ((uint)values[0], (uint)values[1]);
    }
}
