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
/// A projection computed as a base linear map plus an update (LoRA): <c>y = W x + b + Update(x)</c>. Attention fuses
/// the base maps of q/k/v into one matmul and adds each update; when scoring, the module offers one merged weight.
/// </summary>
internal interface ILowRankProjection
{
    /// <summary>Gets the base weight W [out, in].</summary>
    Tensor BaseWeight { get; }

    /// <summary>Gets the base bias b [out], or null.</summary>
    Tensor? BaseBias { get; }

    /// <summary>Gets W + update as one weight and the bias in scoring mode (eval, no gradients), or null outside it.</summary>
    (Tensor Weight, Tensor? Bias)? ScoringWeights { get; }

    /// <summary>The update added to the base output: [..., in] -> [..., out].</summary>
    Tensor Update(Tensor x);
}

/// <summary>
/// Multi-head self-attention with grouped key/value heads and rotary positions. Keys of one call are, in order:
/// the layer's prefix (no rotary), the cached past (rotated when it was computed), then the current tokens.
/// State-dict keys: <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c>; each can be swapped (LoRA) with
/// <see cref="ReplaceProjection"/>. While q/k/v are plain <see cref="Linear"/> or <see cref="ILowRankProjection"/>
/// (LoRA), their base maps run as one matmul (the weights concatenated per call, so gradients reach each) and the
/// low-rank updates are added. When scoring (eval mode, no gradients) the concatenated weight, LoRA merged in, is
/// built once and dropped by <see cref="train"/>.
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
    private (Tensor Weight, Tensor? Bias)? _scoringQkv;
    private bool _cacheScoringWeights = true;

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

    /// <summary>The default of <see cref="MatmulAttentionMaxScores"/>: 2^20 scores, 4 MB per layer kept for the backward pass.</summary>
    internal const long DefaultMatmulAttentionMaxScores = 1 << 20;

    /// <summary>
    /// Gets or sets the most scores [B, H, T, K] for which attention under an explicit mask (padding, a prefix) runs
    /// as matmul, softmax, matmul instead of the fused kernel (0: never). On CPU the fused kernel's masked path is
    /// slower at these sizes (measured 1.3-1.8x at batch 8 x 128 with a 20-token prefix) and faster beyond them,
    /// where the scores no longer fit in cache; the unmasked causal path always stays fused.
    /// </summary>
    public long MatmulAttentionMaxScores { get; set; } = DefaultMatmulAttentionMaxScores;

    /// <summary>
    /// Gets or sets a value indicating whether scoring builds the concatenated (and LoRA-merged) q/k/v weight once and
    /// keeps it. Off for decoders over shared weights, where it would be a private copy of them per user; scoring then
    /// concatenates per call and adds the low-rank updates, as training does.
    /// </summary>
    public bool CacheScoringWeights
    {
        get => _cacheScoringWeights;
        set
        {
            DropScoringQkv();
            _cacheScoringWeights = value;
        }
    }

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
        => Attend(x, context, positions: null);

    /// <summary>
    /// Attention output at one query position per row, against the keys and values of all of x:
    /// [B, T, D] and positions [B] (int64) -> [B, 1, D]. Equals <see cref="forward"/> at those positions.
    /// </summary>
    public Tensor ForwardAt(Tensor x, AttentionContext context, Tensor positions)
        => Attend(x, context, positions);

    private Tensor Attend(Tensor x, AttentionContext context, Tensor? positions)
    {
        using var scope = torch.NewDisposeScope();
        var b = x.shape[0];
        var t = x.shape[1];
        Tensor q, k, v;
        if (positions is null)
        {
            var qkv = Project(x);
            (q, k, v) = (qkv[0], qkv[1], qkv[2]);
            q = q.view(b, t, _heads, _headDim).transpose(1, 2);               // [B, H, T, Dh]
            q = RotaryEmbedding.Apply(q, context.Cos, context.Sin);
        }
        else
        {
            // One query per row: project and rotate only the selected tokens' queries (keys and values are needed
            // for every token), which skips a third of the q/k/v matmul at this layer, forward and backward.
            var kv = Project(x, queries: false);
            (k, v) = (kv[0], kv[1]);
            var rows = positions.view(-1, 1, 1);
            var selected = x.gather(1, rows.expand(-1, 1, x.shape[2]));         // [B, 1, D]
            q = Project(selected, keysAndValues: false)[0].view(b, 1, _heads, _headDim).transpose(1, 2); // [B, H, 1, Dh]
            var at = rows.unsqueeze(1).expand(-1, 1, 1, _headDim);              // [B, 1, 1, Dh]
            var cos = context.Cos.expand(b, -1, -1, -1).gather(2, at);          // [B, 1, 1, Dh]
            var sin = context.Sin.expand(b, -1, -1, -1).gather(2, at);          // [B, 1, 1, Dh]
            q = RotaryEmbedding.Apply(q, cos, sin);
        }

        k = k.view(b, t, _kvHeads, _headDim).transpose(1, 2); // [B, KV, T, Dh]
        v = v.view(b, t, _kvHeads, _headDim).transpose(1, 2); // [B, KV, T, Dh]
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

        var (mask, causal, queries) = (context.Mask, context.UseCausalFlag, t);
        if (positions is not null)
        {
            mask = QueryMask(context, positions, k.shape[2], x.dtype); // [B, 1, 1, K] or null
            (causal, queries) = (false, 1);
        }

        var attended = mask is not null && UsesMatmulAttention(q.dtype, q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2])
            ? MatmulAttention(q, k, v, mask)
            : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask, is_casual: causal); // [B, H, T or 1, Dh]
        var merged = attended.transpose(1, 2).reshape(b, queries, _heads * _headDim); // [B, T or 1, H·Dh]
        return _oProj.call(merged).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Whether attention under an explicit mask runs as two batched matmuls and a softmax rather than the fused kernel:
    /// float32, and B·H·T·K scores within <see cref="MatmulAttentionMaxScores"/>.
    /// </summary>
    internal bool UsesMatmulAttention(ScalarType dtype, long scores)
        => dtype == ScalarType.Float32 && scores <= MatmulAttentionMaxScores;

    /// <summary>softmax(q·kᵀ/√Dh + mask)·v: [B, H, T, Dh], [B, H, K, Dh] ×2, [B, 1, T, K] -> [B, H, T, Dh].</summary>
    internal Tensor MatmulAttention(Tensor q, Tensor k, Tensor v, Tensor mask)
    {
        var scores = torch.matmul(q, k.transpose(-1, -2));                     // [B, H, T, K]
        var weights = torch.add(mask, scores, 1.0 / Math.Sqrt(_headDim)).softmax(-1); // [B, H, T, K]
        return torch.matmul(weights, v);                                       // [B, H, T, Dh]
    }

    /// <summary>The additive mask rows [B, 1, 1, K] of the selected queries (null when nothing is masked).</summary>
    private static Tensor? QueryMask(AttentionContext context, Tensor positions, long keys, ScalarType dtype)
    {
        if (context.Mask is { } full)
        {
            return full.gather(2, positions.view(-1, 1, 1, 1).expand(-1, 1, 1, keys)); // [B, 1, 1, K]
        }

        if (!context.UseCausalFlag)
        {
            return null; // bidirectional without padding
        }

        // Plain causality over K = T keys: query p sees keys 0..p.
        var blocked = torch.arange(keys, dtype: ScalarType.Int64, device: positions.device).unsqueeze(0) > positions.unsqueeze(1); // [B, K]
        return torch.zeros(1, dtype: dtype, device: positions.device)
            .masked_fill(blocked, torch.finfo(dtype).min)
            .view(-1, 1, 1, keys); // [B, 1, 1, K]
    }

    /// <summary>Sets training mode; either way the fused scoring weight is dropped (the weights may change next).</summary>
    public override void train(bool on = true)
    {
        DropScoringQkv();
        base.train(on);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            DropScoringQkv();
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// Projects x [B, n, D] with q/k/v, or with the queries only or the keys and values only: the selected outputs in
    /// that order, each [B, n, ·]. Scoring with cached weights runs the selected rows of the concatenated (LoRA-merged)
    /// weight; otherwise the selected base maps run as one matmul (concatenated per call, so gradients reach each weight
    /// that has them) and each projection's low-rank update is added; else each projection runs on its own.
    /// </summary>
    private Tensor[] Project(Tensor x, bool queries = true, bool keysAndValues = true)
    {
        var qSize = _heads * _headDim;
        var kvSize = _kvHeads * _headDim;
        var projections = new List<nn.Module<Tensor, Tensor>>(3);
        var sizes = new List<long>(3);
        if (queries)
        {
            projections.Add(_qProj);
            sizes.Add(qSize);
        }

        if (keysAndValues)
        {
            projections.AddRange([_kProj, _vProj]);
            sizes.AddRange([kvSize, kvSize]);
        }

        // split, not narrow: its backward is one concatenation rather than zero-filled full-width gradients.
        if (FuseQkv && CacheScoringWeights && !training && !torch.is_grad_enabled() && ScoringQkv() is ({ } fusedWeight, var fusedBias))
        {
            var first = queries ? 0 : qSize; // the selection is a contiguous block of the cached [q; k; v] rows
            var rows = sizes.Sum();
            return nn.functional.linear(x, fusedWeight.narrow(0, first, rows), fusedBias?.narrow(0, first, rows)).split([.. sizes], -1);
        }

        var bases = projections.Select(BaseWeights).ToArray();
        if (FuseQkv && bases.All(w => w is not null) && bases.Select(w => w!.Value.Bias is null).Distinct().Count() == 1)
        {
            var maps = bases.Select(w => w!.Value).ToArray();
            var weight = maps.Length == 1 ? maps[0].Weight : torch.cat(maps.Select(w => w.Weight).ToArray(), 0); // [Σ·, D]
            var bias = maps[0].Bias is null ? null : maps.Length == 1 ? maps[0].Bias : torch.cat(maps.Select(w => w.Bias!).ToArray(), 0);
            var parts = nn.functional.linear(x, weight, bias).split([.. sizes], -1);
            return parts.Select((part, i) => WithUpdate(projections[i], part, x)).ToArray();
        }

        return projections.Select(projection => projection.call(x)).ToArray();
    }

    private static Tensor WithUpdate(nn.Module<Tensor, Tensor> projection, Tensor baseOutput, Tensor x)
        => projection is ILowRankProjection lowRank ? baseOutput + lowRank.Update(x) : baseOutput;

    /// <summary>The q/k/v weights concatenated once for scoring, or null when a projection is not a plain linear map.</summary>
    private (Tensor Weight, Tensor? Bias)? ScoringQkv()
    {
        if (_scoringQkv is not null)
        {
            return _scoringQkv;
        }

        if (ScoringWeights(_qProj) is not ({ } qw, var qb) || ScoringWeights(_kProj) is not ({ } kw, var kb)
            || ScoringWeights(_vProj) is not ({ } vw, var vb) || (qb is null) != (kb is null) || (qb is null) != (vb is null))
        {
            return null;
        }

        using var scope = torch.NewDisposeScope();
        var weight = torch.cat([qw, kw, vw], 0).DetachFromDisposeScope();                     // [(H + 2·KV)·Dh, D]
        var bias = qb is null ? null : torch.cat([qb, kb!, vb!], 0).DetachFromDisposeScope(); // [(H + 2·KV)·Dh]
        _scoringQkv = (weight, bias);
        return _scoringQkv;
    }

    private static (Tensor Weight, Tensor? Bias)? ScoringWeights(nn.Module<Tensor, Tensor> projection) => projection switch
    {
        Linear linear => (linear.weight!, linear.bias),
        ILowRankProjection lowRank => lowRank.ScoringWeights,
        _ => null,
    };

    private static (Tensor Weight, Tensor? Bias)? BaseWeights(nn.Module<Tensor, Tensor> projection) => projection switch
    {
        Linear linear => (linear.weight!, linear.bias),
        ILowRankProjection lowRank => (lowRank.BaseWeight, lowRank.BaseBias),
        _ => null,
    };

    private void DropScoringQkv()
    {
        if (_scoringQkv is ({ } weight, var bias))
        {
            weight.Dispose();
            bias?.Dispose();
            _scoringQkv = null;
        }
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
