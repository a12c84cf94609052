using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// The SwiGLU feed-forward block: <c>down(silu(gate(x)) * up(x))</c>. State-dict keys: <c>gate_proj</c>,
/// <c>up_proj</c>, <c>down_proj</c>. The projections can be swapped (LoRA) with <see cref="ReplaceProjection"/>.
/// </summary>
internal sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    /// <summary>The names of the projections, in Hugging Face order.</summary>
    public static readonly IReadOnlyList<string> ProjectionNames = ["gate_proj", "up_proj", "down_proj"];

    [TorchSharp.Utils.ComponentName(Name = "gate_proj")]
    private nn.Module<Tensor, Tensor> _gateProj;

    [TorchSharp.Utils.ComponentName(Name = "up_proj")]
    private nn.Module<Tensor, Tensor> _upProj;

    [TorchSharp.Utils.ComponentName(Name = "down_proj")]
    private nn.Module<Tensor, Tensor> _downProj;

    public LlamaMlp(LlamaConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : base(nameof(LlamaMlp))
    {
        _gateProj = LlamaInit.Linear(config.HiddenSize, config.IntermediateSize, config.MlpBias, device, dtype);
        _upProj = LlamaInit.Linear(config.HiddenSize, config.IntermediateSize, config.MlpBias, device, dtype);
        _downProj = LlamaInit.Linear(config.IntermediateSize, config.HiddenSize, config.MlpBias, device, dtype);
        RegisterComponents();
    }

    /// <summary>Gets the projections under their state-dict names (the current modules, replaced or not).</summary>
    public IEnumerable<(string Name, nn.Module<Tensor, Tensor> Module)> Projections
    {
        get
        {
            yield return ("gate_proj", _gateProj);
            yield return ("up_proj", _upProj);
            yield return ("down_proj", _downProj);
        }
    }

    /// <summary>
    /// Replaces one projection (<c>gate_proj</c>, <c>up_proj</c> or <c>down_proj</c>) by the module the factory
    /// builds from the current <see cref="Linear"/>; it is registered under the same name and used from then on.
    /// </summary>
    public void ReplaceProjection(string name, Func<Linear, nn.Module<Tensor, Tensor>> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        switch (name)
        {
            case "gate_proj":
                _gateProj = LlamaInit.Replace(this, name, _gateProj, factory);
                break;
            case "up_proj":
                _upProj = LlamaInit.Replace(this, name, _upProj, factory);
                break;
            case "down_proj":
                _downProj = LlamaInit.Replace(this, name, _downProj, factory);
                break;
            default:
                throw new ArgumentException(
                    $"LlamaMlp has no projection '{name}'; expected one of {string.Join(", ", ProjectionNames)}.", nameof(name));
        }
    }

    public override Tensor forward(Tensor x) // [B, T, D] -> [B, T, D]
    {
        using var scope = torch.NewDisposeScope();
        if (torch.is_grad_enabled())
        {
            var hidden = nn.functional.silu(_gateProj.call(x)) * _upProj.call(x); // [B, T, I]
            return _downProj.call(hidden).MoveToOuterDisposeScope();
        }

        // Without autograd the activation and the product can be computed in place, and up(x) freed at once: the block
        // then holds two MLP-width buffers at its peak instead of four (the same values; scoring a 1B model's batch
        // keeps ~46 MB less per layer resident).
        var gated = nn.functional.silu(_gateProj.call(x), inplace: true); // [B, T, I]
        using (var up = _upProj.call(x))
        {
            gated.mul_(up);
        }

        return _downProj.call(gated).MoveToOuterDisposeScope();
    }
}
