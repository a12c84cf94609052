using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>Builds the additive attention mask and default position ids.</summary>
internal static class AttentionMasks
{
    /// <summary>
    /// The additive mask [B, 1, T, K] (K = P + L + T keys: prefix, cached past, tokens) — 0 where query i may attend
    /// key j, the dtype's minimum elsewhere — or null when nothing needs masking (no padding mask, and either
    /// bidirectional or plain causal over K = T, which the caller runs with the fused causal flag). A query row with
    /// no allowed key (a left-padding row) holds only minimums, so softmax spreads evenly instead of producing NaN.
    /// Causal: key j is visible to query i when <c>j &lt;= P + L + i</c>, so the prefix and past are always visible.
    /// A key mask without zeros masks nothing and counts as none, so that an unpadded batch runs with the fused
    /// kernel's causal flag (or no mask) instead of reading an explicit [B, 1, T, K] mask in every layer.
    /// </summary>
    public static Tensor? Build(
        Tensor? keyMask, bool causal, long batch, long queries, long prefix, long past, ScalarType dtype, Device device)
    {
        var keys = prefix + past + queries;
        using var scope = torch.NewDisposeScope();
        Tensor? allowed = null;                                                       // bool [B or 1, 1, T or 1, K]
        if (keyMask is not null)
        {
            var keyAllowed = KeyMask(keyMask, batch, keys, prefix, device);           // validated [B, K]
            if (!keyAllowed.all().item<bool>())
            {
                allowed = keyAllowed.view(batch, 1, 1, keys);                         // [B, 1, 1, K]
            }
        }

        if (allowed is null && (!causal || keys == queries))
        {
            return null;
        }

        if (causal)
        {
            var q = torch.arange(queries, dtype: ScalarType.Int64, device: device).unsqueeze(1);  // [T, 1]
            var k = torch.arange(keys, dtype: ScalarType.Int64, device: device).unsqueeze(0);     // [1, K]
            var causalAllowed = (k <= q + (prefix + past)).view(1, 1, queries, keys);             // [1, 1, T, K]
            allowed = allowed is null ? causalAllowed : allowed.logical_and(causalAllowed);      // [B, 1, T, K]
        }

        var blocked = torch.finfo(dtype).min;
        var additive = torch.zeros(1, dtype: dtype, device: device)
            .masked_fill(allowed!.logical_not(), blocked)                                        // [B, 1, T|1, K]
            .expand(batch, 1, queries, keys);                                                    // [B, 1, T, K]
        return additive.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Default position ids for a padded batch: for each row, the count of attended tokens before each token
    /// (<c>cumsum(mask) − 1</c>, padding clamped to 0), offset by <paramref name="past"/>. With right padding this
    /// equals <c>past + arange(T)</c> on every real token; with left padding it starts each row's real tokens at 0.
    /// </summary>
    public static Tensor PositionIdsFromMask(Tensor attentionMask, long past = 0) // [B, T] -> [B, T] int64
    {
        using var scope = torch.NewDisposeScope();
        var mask = attentionMask.to(ScalarType.Int64);
        var positions = (mask.cumsum(1, ScalarType.Int64) - 1).clamp_min(0) + past;
        return positions.MoveToOuterDisposeScope();
    }

    private static Tensor KeyMask(Tensor mask, long batch, long keys, long prefix, Device device)
    {
        if (mask.dim() != 2 || mask.shape[0] != batch)
        {
            throw new ArgumentException(
                $"AttentionMask must be [{batch}, {keys}] (prefix + past + tokens) but is [{string.Join(", ", mask.shape)}].");
        }

        var bools = (mask.dtype == ScalarType.Bool ? mask : mask.ne(0)).to(device);
        if (mask.shape[1] == keys)
        {
            return bools;
        }

        if (prefix > 0 && mask.shape[1] == keys - prefix)
        {
            var ones = torch.ones(batch, prefix, dtype: ScalarType.Bool, device: device);
            return torch.cat([ones, bools], 1); // [B, P + L + T]
        }

        throw new ArgumentException(
            $"AttentionMask is [{string.Join(", ", mask.shape)}] but must cover all {keys} keys [{batch}, {keys}] (prefix {prefix} + past + tokens), or [{batch}, {keys - prefix}] without the prefix.");
    }
}
