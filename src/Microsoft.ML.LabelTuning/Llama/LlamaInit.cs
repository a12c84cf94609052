using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>Construction helpers shared by the LLaMA modules: parameters, initialisation, projection swapping.</summary>
internal static class LlamaInit
{
    /// <summary>A bias-optional <see cref="Linear"/> whose weight is allocated but not initialised (see <see cref="InitializeWeights"/>).</summary>
    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias, Device? device, ScalarType dtype)
    {
        var weight = new Parameter(torch.empty(outFeatures, inFeatures, dtype: dtype, device: device));
        var bias = hasBias ? new Parameter(torch.zeros(outFeatures, dtype: dtype, device: device)) : null;
        return nn.Linear(weight, bias);
    }

    /// <summary>
    /// Hugging Face's <c>_init_weights</c> for LLaMA: Linear and Embedding weights ~ N(0, std), biases zero, the
    /// padding row of the embedding zero, RMSNorm scales one. Uses torch's global generator (seed it with
    /// <c>torch.manual_seed</c>).
    /// </summary>
    public static void InitializeWeights(nn.Module module, double std, long? paddingIdx)
    {
        using var noGrad = torch.no_grad();
        // named_modules() lists descendants only, so the module itself comes first.
        foreach (var child in module.named_modules().Select(m => m.module).Prepend(module))
        {
            switch (child)
            {
                case Linear linear:
                    nn.init.normal_(linear.weight!, 0.0, std);
                    if (linear.bias is { } b)
                    {
                        nn.init.zeros_(b);
                    }

                    break;
                case Embedding embedding:
                    nn.init.normal_(embedding.weight!, 0.0, std);
                    if (paddingIdx is { } p && embedding.weight!.device_type != DeviceType.META)
                    {
                        using var row = embedding.weight![p];
                        row.zero_();
                    }

                    break;
                case RmsNorm norm:
                    nn.init.ones_(norm.Weight);
                    break;
            }
        }
    }

    /// <summary>Swaps a registered projection for the module <paramref name="factory"/> builds from it.</summary>
    public static nn.Module<Tensor, Tensor> Replace(
        nn.Module owner, string name, nn.Module<Tensor, Tensor> current, Func<Linear, nn.Module<Tensor, Tensor>> factory)
    {
        if (current is not Linear linear)
        {
            throw new InvalidOperationException(
                $"Projection '{name}' of {owner.GetName()} is already a {current.GetType().Name}, not a Linear; it cannot be replaced twice.");
        }

        var replacement = factory(linear)
            ?? throw new InvalidOperationException($"The factory for projection '{name}' returned null.");
        owner.register_module(name, null!); // removes the old registration
        owner.register_module(name, replacement);
        return replacement;
    }
}
