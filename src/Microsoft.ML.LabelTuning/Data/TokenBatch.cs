using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Data;

/// <summary>A right-padded batch of token ids with its attention mask.</summary>
/// <param name="InputIds">[B, T] int64.</param>
/// <param name="AttentionMask">[B, T] int64, 1 for real tokens.</param>
/// <param name="TokenCount">Real tokens in the batch (padding excluded).</param>
internal sealed record TokenBatch(Tensor InputIds, Tensor AttentionMask, long TokenCount)
{
    /// <summary>Pads sequences on the right to the longest one (dynamic padding).</summary>
    public static TokenBatch Collate(IReadOnlyList<int[]> sequences, int padId, Device device)
    {
        var length = Math.Max(1, sequences.Max(s => s.Length));
        var ids = new long[sequences.Count * length];
        var mask = new long[sequences.Count * length];
        Array.Fill(ids, padId);
        long tokens = 0;
        for (var row = 0; row < sequences.Count; row++)
        {
            var sequence = sequences[row];
            for (var t = 0; t < sequence.Length; t++)
            {
                ids[(row * length) + t] = sequence[t];
                mask[(row * length) + t] = 1;
            }

            tokens += sequence.Length;
        }

        long[] shape = [sequences.Count, length];
        return new TokenBatch(tensor(ids, shape).to(device), tensor(mask, shape).to(device), tokens);
    }
}
