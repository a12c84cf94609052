using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>How the final hidden states of a sequence become one vector. Always computed over the attention mask.</summary>
public enum Pooling
{
    /// <summary>The hidden state of the last real token (LS-LLaMA's and Hugging Face's choice for causal models).</summary>
    Last,

    /// <summary>The mean of the hidden states of the real tokens.</summary>
    Mean,

    /// <summary>The element-wise maximum over the real tokens.</summary>
    Max,
}

/// <summary>Pooling over the attention mask.</summary>
internal static class PoolingOps
{
    /// <summary>The last position whose mask is 1 in each row of a [B, T] mask, [B] int64; works for right and left padding.</summary>
    public static Tensor LastPositions(Tensor mask)
    {
        var positions = arange(mask.shape[1], device: mask.device).unsqueeze(0); // [1, T]
        return (mask.to(ScalarType.Int64) * (positions + 1)).argmax(1);           // [B]
    }

    /// <summary>Pools [B, T, D] hidden states over a [B, T] mask (1 = real) into [B, D].</summary>
    public static Tensor Apply(Tensor hidden, Tensor mask, Pooling pooling)
    {
        switch (pooling)
        {
            case Pooling.Last:
            {
                var last = LastPositions(mask); // [B]
                var index = last.view(-1, 1, 1).expand(-1, 1, hidden.shape[2]); // [B, 1, D]
                return hidden.gather(1, index).squeeze(1); // [B, D]
            }

            case Pooling.Mean:
            {
                var weights = mask.to(hidden.dtype).unsqueeze(-1); // [B, T, 1]
                return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1); // [B, D]
            }

            case Pooling.Max:
            {
                var blocked = mask.eq(0).unsqueeze(-1); // [B, T, 1]
                return hidden.masked_fill(blocked, float.MinValue).amax(1); // [B, D]
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(pooling), pooling, "Unknown pooling.");
        }
    }
}
