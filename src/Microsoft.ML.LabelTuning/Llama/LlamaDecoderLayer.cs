using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// One pre-norm decoder block: <c>h = x + attn(norm₁(x))</c>, <c>out = h + mlp(norm₂(h))</c>. State-dict keys:
/// <c>input_layernorm</c>, <c>self_attn</c>, <c>post_attention_layernorm</c>, <c>mlp</c>.
/// </summary>
internal sealed class LlamaDecoderLayer : nn.Module<Tensor, AttentionContext, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "input_layernorm")]
    private readonly RmsNorm _inputLayerNorm;

    [TorchSharp.Utils.ComponentName(Name = "self_attn")]
    private readonly LlamaAttention _selfAttn;

    [TorchSharp.Utils.ComponentName(Name = "post_attention_layernorm")]
    private readonly RmsNorm _postAttentionLayerNorm;

    [TorchSharp.Utils.ComponentName(Name = "mlp")]
    private readonly LlamaMlp _mlp;

    public LlamaDecoderLayer(LlamaConfig config, int layerIndex, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(LlamaDecoderLayer))
    {
        _inputLayerNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        _selfAttn = new LlamaAttention(config, layerIndex, device, dtype);
        _postAttentionLayerNorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        _mlp = new LlamaMlp(config, device, dtype);
        RegisterComponents();
    }

    /// <summary>Gets the attention block.</summary>
    public LlamaAttention SelfAttention => _selfAttn;

    /// <summary>Gets the feed-forward block.</summary>
    public LlamaMlp Mlp => _mlp;

    /// <summary>Gets the norm before attention.</summary>
    public RmsNorm InputLayerNorm => _inputLayerNorm;

    /// <summary>Gets the norm before the MLP.</summary>
    public RmsNorm PostAttentionLayerNorm => _postAttentionLayerNorm;

    public override Tensor forward(Tensor x, AttentionContext context) // [B, T, D] -> [B, T, D]
    {
        using var scope = torch.NewDisposeScope();
        var h = x + _selfAttn.call(_inputLayerNorm.call(x), context);
        var output = h + _mlp.call(_postAttentionLayerNorm.call(h));
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The block's output at one position per row: keys and values come from every token of x [B, T, D], the rest
    /// runs on the selected rows only. [B, T, D] and positions [B] -> [B, 1, D].
    /// </summary>
    public Tensor ForwardAt(Tensor x, AttentionContext context, Tensor positions)
    {
        using var scope = torch.NewDisposeScope();
        var index = positions.view(-1, 1, 1).expand(-1, 1, x.shape[2]); // [B, 1, D]
        var h = x.gather(1, index) + _selfAttn.ForwardAt(_inputLayerNorm.call(x), context, positions); // [B, 1, D]
        var output = h + _mlp.call(_postAttentionLayerNorm.call(h));
        return output.MoveToOuterDisposeScope();
    }
}
