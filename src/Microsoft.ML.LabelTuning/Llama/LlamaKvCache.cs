using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// Keys and values of earlier calls, per layer, shaped [B, KvHeads, L, Dh] (rotary already applied, prefix keys
/// not included). Passing the cache in <see cref="LlamaInput.Cache"/> makes each layer attend to the cached past
/// and then append the new tokens, and positions continue at L (after any prefix). The cache owns its tensors:
/// they are outside every dispose scope and are released by <see cref="Truncate"/>, <see cref="Clear"/> and
/// <see cref="Dispose"/>. The tensors keep their autograd history, so a text's keys can be reused for several
/// suffixes within one training step.
/// </summary>
internal sealed class LlamaKvCache : IDisposable
{
    private readonly (Tensor Key, Tensor Value)?[] _layers;

    public LlamaKvCache(int layerCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layerCount);
        _layers = new (Tensor Key, Tensor Value)?[layerCount];
    }

    /// <summary>Gets the number of layers the cache has a slot for.</summary>
    public int LayerCount => _layers.Length;

    /// <summary>Gets the number of cached positions L (that of the first layer; all layers agree between calls).</summary>
    public long Length => LengthOf(0);

    /// <summary>Gets the cached keys and values of a layer, or null while it is empty.</summary>
    public (Tensor Key, Tensor Value)? this[int layer] => _layers[layer];

    /// <summary>Gets the cached positions of one layer.</summary>
    public long LengthOf(int layer) => _layers[layer] is { } kv ? kv.Key.shape[2] : 0;

    /// <summary>
    /// Appends a layer's new keys/values [B, KV, T, Dh] and returns the full keys/values [B, KV, L + T, Dh]. The
    /// returned tensors are the cache's own: callers must not dispose them.
    /// </summary>
    public (Tensor Key, Tensor Value) Append(int layer, Tensor key, Tensor value)
    {
        if (_layers[layer] is not { } old)
        {
            var k = key.alias().DetachFromDisposeScope();
            var v = value.alias().DetachFromDisposeScope();
            _layers[layer] = (k, v);
            return (k, v);
        }

        if (old.Key.shape[0] != key.shape[0] || old.Key.shape[1] != key.shape[1] || old.Key.shape[3] != key.shape[3])
        {
            throw new ArgumentException(
                $"Layer {layer} of the KV cache holds keys [{string.Join(", ", old.Key.shape)}] but the new keys are [{string.Join(", ", key.shape)}]; batch, heads and head width must match.");
        }

        var keys = torch.cat([old.Key, key], 2).DetachFromDisposeScope();   // [B, KV, L + T, Dh]
        var values = torch.cat([old.Value, value], 2).DetachFromDisposeScope(); // [B, KV, L + T, Dh]
        old.Key.Dispose();
        old.Value.Dispose();
        _layers[layer] = (keys, values);
        return (keys, values);
    }

    /// <summary>Keeps only the first <paramref name="length"/> positions (e.g. a shared text before each label suffix).</summary>
    public void Truncate(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        for (var i = 0; i < _layers.Length; i++)
        {
            if (_layers[i] is not { } kv || kv.Key.shape[2] <= length)
            {
                continue;
            }

            if (length == 0)
            {
                kv.Key.Dispose();
                kv.Value.Dispose();
                _layers[i] = null;
                continue;
            }

            var k = kv.Key.narrow(2, 0, length).DetachFromDisposeScope();
            var v = kv.Value.narrow(2, 0, length).DetachFromDisposeScope();
            kv.Key.Dispose();
            kv.Value.Dispose();
            _layers[i] = (k, v);
        }
    }

    /// <summary>
    /// A new cache holding the batch rows <paramref name="batchIndices"/> (int64 [N]) of this one, e.g. [0, 0, 0]
    /// to score one cached text against three label suffixes in one batch.
    /// </summary>
    public LlamaKvCache Select(Tensor batchIndices)
    {
        var result = new LlamaKvCache(_layers.Length);
        for (var i = 0; i < _layers.Length; i++)
        {
            if (_layers[i] is { } kv)
            {
                using var idx = batchIndices.to(kv.Key.device);
                result._layers[i] = (
                    kv.Key.index_select(0, idx).DetachFromDisposeScope(),
                    kv.Value.index_select(0, idx).DetachFromDisposeScope());
            }
        }

        return result;
    }

    /// <summary>Empties every layer.</summary>
    public void Clear() => Truncate(0);

    public void Dispose() => Clear();
}
