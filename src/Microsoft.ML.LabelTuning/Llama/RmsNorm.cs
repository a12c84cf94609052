using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// Root-mean-square layer norm: <c>weight * x / sqrt(mean(x²) + eps)</c>, computed in float32 whatever the input
/// dtype (as Hugging Face and Meta do), then cast back. State-dict key: <c>weight</c>.
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "weight")]
    private readonly Parameter _weight;
    private readonly double _eps;

    public RmsNorm(long size, double eps, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(RmsNorm))
    {
        _eps = eps;
        _weight = new Parameter(torch.ones(size, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <summary>Gets the scale vector [D].</summary>
    public Parameter Weight => _weight;

    public override Tensor forward(Tensor x) // [..., D] -> [..., D]
    {
        using var scope = torch.NewDisposeScope();
        var h = x.to(ScalarType.Float32);
        var variance = h.square().mean([-1L], keepdim: true);
        var normed = (h * torch.rsqrt(variance + _eps)).to(x.dtype);
        return (_weight * normed).MoveToOuterDisposeScope();
    }
}
