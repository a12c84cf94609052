using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>What every attention layer of one forward pass shares: rotary tables, the mask, prefixes, the cache.</summary>
/// <param name="Cos">Rotary cosines, [B or 1, 1, T, Dh].</param>
/// <param name="Sin">Rotary sines, [B or 1, 1, T, Dh].</param>
/// <param name="Mask">Additive mask [B, 1, T, K] (0 = attend, dtype minimum = blocked), or null.</param>
/// <param name="UseCausalFlag">True when no mask is needed beyond plain causality over K = T keys.</param>
/// <param name="Prefix">Per-layer prefix keys/values [B, KvHeads, P, Dh], or null.</param>
/// <param name="Cache">The KV cache to read and extend, or null.</param>
internal sealed record AttentionContext(
    Tensor Cos,
    Tensor Sin,
    Tensor? Mask,
    bool UseCausalFlag,
    IReadOnlyList<(Tensor Key, Tensor Value)>? Prefix,
    LlamaKvCache? Cache);

/// <summary>
/// Multi-head self-attention with grouped key/value heads and rotary positions. Keys of one call are, in order:
/// the layer's prefix (no rotary), the cached past (rotated when it was computed), then the current tokens.
/// State-dict keys: <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>; each can be swapped (LoRA) with
/// <see cref="ReplaceProjection"/>. While q/k/v are all plain <see cref="Linear"/>, they run as one fused matmul.
/// </summary>
internal sealed class LlamaAttention : nn.Module<Tensor, AttentionContext, Tensor>
{
    /// <summary>The names of the projections, in Hugging Face order.</summary>
    public static readonly IReadOnlyList<string> ProjectionNames = ["q_proj", "k_proj", "v_proj", "o_proj"];

    [TorchSharp.Utils.ComponentName(Name = "q_proj")]
    private nn.Module<Tensor, Tensor> _qProj;

    [TorchSharp.Utils.ComponentName(Name = "k_proj")]
    private nn.Module<Tensor, Tensor> _kProj;

    [TorchSharp.Utils.ComponentName(Name = "v_proj")]
    private nn.Module<Tensor, Tensor> _vProj;

    [TorchSharp.Utils.ComponentName(Name = "o_proj")]
    private nn.Module<Tensor, Tensor> _oProj;

    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;

    public LlamaAttention(LlamaConfig config, int layerIndex, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(LlamaAttention))
    {
        LayerIndex = layerIndex;
        _heads = config.NumAttentionHeads;
        _kvHeads = config.KeyValueHeadCount;
        _headDim = config.HeadDimension;
        var d = config.HiddenSize;
        _qProj = LlamaInit.Linear(d, _heads * _headDim, config.AttentionBias, device, dtype);
        _kProj = LlamaInit.Linear(d, _kvHeads * _headDim, config.AttentionBias, device, dtype);
        _vProj = LlamaInit.Linear(d, _kvHeads * _headDim, config.AttentionBias, device, dtype);
        _oProj = LlamaInit.Linear(_heads * _headDim, d, config.AttentionBias, device, dtype);
        RegisterComponents();
    }

    /// <summary>Gets the index of the decoder layer this attention belongs to (selects its prefix and cache slot).</summary>
    public int LayerIndex { get; }

    /// <summary>Gets or sets a value indicating whether q/k/v run as one matmul while all three are plain Linear.</summary>
    public bool FuseQkv { get; set; } = true;

    /// <summary>Gets the projections under their state-dict names (the current modules, replaced or not).</summary>
    public IEnumerable<(string Name, nn.Module<Tensor, Tensor> Module)> Projections
    {
        get
        {
            yield return ("q_proj", _qProj);
            yield return ("k_proj", _kProj);
            yield return ("v_proj", _vProj);
            yield return ("o_proj", _oProj);
        }
    }

    /// <summary>
    /// Replaces one projection (<c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c> or <c>o_proj</c>) by the module the
    /// factory builds from the current <see cref="Linear"/>; it is registered under the same name and used from then on.
    /// </summary>
    public void ReplaceProjection(string name, Func<Linear, nn.Module<Tensor, Tensor>> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        switch (name)
        {
            case "q_proj":
                _qProj = LlamaInit.Replace(this, name, _qProj, factory);
                break;
            case "k_proj":
                _kProj = LlamaInit.Replace(this, name, _kProj, factory);
                break;
            case "v_proj":
                _vProj = LlamaInit.Replace(this, name, _vProj, factory);
                break;
            case "o_proj":
                _oProj = LlamaInit.Replace(this, name, _oProj, factory);
                break;
            default:
                throw new ArgumentException(
                    $"LlamaAttention has no projection '{name}'; expected one of {string.Join(", ", ProjectionNames)}.", nameof(name));
        }
    }

    public override Tensor forward(Tensor x, AttentionContext context) // [B, T, D] -> [B, T, D]
    {
        using var scope = torch.NewDisposeScope();
        var b = x.shape[0];
        var t = x.shape[1];
        var (q, k, v) = Project(x);
        q = q.view(b, t, _heads, _headDim).transpose(1, 2);   // [B, H, T, Dh]
        k = k.view(b, t, _kvHeads, _headDim).transpose(1, 2); // [B, KV, T, Dh]
        v = v.view(b, t, _kvHeads, _headDim).transpose(1, 2); // [B, KV, T, Dh]

        q = RotaryEmbedding.Apply(q, context.Cos, context.Sin);
        k = RotaryEmbedding.Apply(k, context.Cos, context.Sin);

        if (context.Cache is { } cache)
        {
            (k, v) = cache.Append(LayerIndex, k, v); // [B, KV, L + T, Dh]
        }

        if (context.Prefix is { } prefix && prefix[LayerIndex].Key.shape[2] > 0)
        {
            var (pk, pv) = prefix[LayerIndex];
            if (pk.shape[0] != b)
            {
                pk = pk.expand(b, -1, -1, -1); // [B, KV, P, Dh] from a batch-shared [1, KV, P, Dh]
                pv = pv.expand(b, -1, -1, -1);
            }

            k = torch.cat([pk, k], 2); // [B, KV, P + L + T, Dh]
            v = torch.cat([pv, v], 2); // [B, KV, P + L + T, Dh]
        }

        k = RepeatKv(k); // [B, H, K, Dh]
        v = RepeatKv(v); // [B, H, K, Dh]

        var attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask: context.Mask, is_casual: context.UseCausalFlag); // [B, H, T, Dh]
        var merged = attended.transpose(1, 2).reshape(b, t, _heads * _headDim); // [B, T, H·Dh]
        return _oProj.call(merged).MoveToOuterDisposeScope();
    }

    private (Tensor Q, Tensor K, Tensor V) Project(Tensor x)
    {
        if (FuseQkv && _qProj is Linear q && _kProj is Linear k && _vProj is Linear v)
        {
            var weight = torch.cat([q.weight!, k.weight!, v.weight!], 0); // [(H + 2·KV)·Dh, D]
            var bias = q.bias is null ? null : torch.cat([q.bias, k.bias!, v.bias!], 0);
            var qkv = nn.functional.linear(x, weight, bias);             // [B, T, (H + 2·KV)·Dh]
            var qSize = _heads * _headDim;
            var kvSize = _kvHeads * _headDim;
            return (qkv.narrow(-1, 0, qSize), qkv.narrow(-1, qSize, kvSize), qkv.narrow(-1, qSize + kvSize, kvSize));
        }

        return (_qProj.call(x), _kProj.call(x), _vProj.call(x));
    }

    private Tensor RepeatKv(Tensor kv) // [B, KV, K, Dh] -> [B, H, K, Dh]; head h reads kv head h / (H / KV)
    {
        var groups = _heads / _kvHeads;
        if (groups == 1)
        {
            return kv;
        }

        var (b, keys) = (kv.shape[0], kv.shape[2]);
        return kv.unsqueeze(2).expand(b, _kvHeads, groups, keys, _headDim).reshape(b, _heads, keys, _headDim);
    }
}
