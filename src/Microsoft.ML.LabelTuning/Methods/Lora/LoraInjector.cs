using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Methods.Lora;

/// <summary>Replaces the targeted linear layers of every decoder layer with <see cref="LoraLinear"/>.</summary>
internal static class LoraInjector
{
    private static readonly HashSet<string> _attention = ["q_proj", "k_proj", "v_proj", "o_proj"];

    /// <summary>Wraps each layer's <paramref name="targetModules"/> (HF names such as q_proj) in LoRA of the given rank and scaling.</summary>
    public static void Apply(LlamaModel model, int rank, double alpha, double dropout, IReadOnlyList<string> targetModules, bool useRsLora)
    {
        foreach (var layer in model.Layers)
        {
            foreach (var name in targetModules)
            {
                TorchSharp.Modules.Linear? replaced = null;
                Func<TorchSharp.Modules.Linear, TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> factory = linear =>
                {
                    replaced = linear;
                    return new LoraLinear(linear, rank, alpha, dropout, useRsLora, mergeForScoring: !model.SharesBaseWeights);
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
