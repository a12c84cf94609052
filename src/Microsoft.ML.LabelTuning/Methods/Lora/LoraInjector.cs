using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;

namespace Microsoft.ML.LabelTuning.Methods.Lora;

/// <summary>Replaces the targeted linear layers of every decoder layer with <see cref="LoraLinear"/>.</summary>
internal static class LoraInjector
{
    private static readonly HashSet<string> _attention = ["q_proj", "k_proj", "v_proj", "o_proj"];

    public static void Apply(LlamaModel model, LoraSettings settings)
    {
        foreach (var layer in model.Layers)
        {
            foreach (var name in settings.TargetModules)
            {
                TorchSharp.Modules.Linear? replaced = null;
                Func<TorchSharp.Modules.Linear, TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> factory = linear =>
                {
                    replaced = linear;
                    return new LoraLinear(linear, settings.Rank, settings.Alpha, settings.Dropout, settings.UseRsLora);
                };
                if (_attention.Contains(name))
                {
                    layer.SelfAttention.ReplaceProjection(name, factory);
                }
                else
                {
                    layer.Mlp.ReplaceProjection(name, factory);
                }

                // LoraLinear holds its own handle to the base weight's storage; the replaced module's handles go.
                replaced?.Dispose();
            }
        }
    }
}
