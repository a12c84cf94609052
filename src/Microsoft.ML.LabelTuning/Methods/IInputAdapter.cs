using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>What an input adapter hands the decoder: its input, and which output positions hold the real tokens.</summary>
/// <param name="Input">The decoder input (ids or embeddings, mask, positions, prefixes).</param>
/// <param name="PoolingMask">[B, S] mask over the decoder's output positions that pooling uses (1 = pool over it).</param>
/// <param name="VirtualTokens">Positions prepended before the real tokens in the decoder's output (soft prompts), else 0.</param>
internal sealed record AdaptedInput(LlamaInput Input, Tensor PoolingMask, int VirtualTokens);

/// <summary>
/// A tuning method that changes what the decoder sees (soft prompts, prefixes). LoRA instead changes the decoder's
/// layers and needs no input adapter.
/// </summary>
internal interface IInputAdapter
{
    /// <summary>Builds the decoder input for a right-padded batch.</summary>
    AdaptedInput Adapt(LlamaModel model, Tensor inputIds, Tensor attentionMask, bool causal);

    /// <summary>Gets the adapter's trainable parameters with stable names.</summary>
    IEnumerable<(string Name, Parameter Parameter)> TrainableParameters { get; }

    /// <summary>Gets the positions the adapter adds before each text: soft-prompt tokens, or prefix keys and values.</summary>
    int VirtualTokenCount { get; }
}

/// <summary>The identity adapter: token ids as they are.</summary>
internal sealed class TokenInputAdapter : IInputAdapter
{
    public static readonly TokenInputAdapter Instance = new();

    public IEnumerable<(string Name, Parameter Parameter)> TrainableParameters => [];

    public int VirtualTokenCount => 0;

    public AdaptedInput Adapt(LlamaModel model, Tensor inputIds, Tensor attentionMask, bool causal)
        => new(new LlamaInput { InputIds = inputIds, AttentionMask = attentionMask, Causal = causal }, attentionMask, 0);
}
