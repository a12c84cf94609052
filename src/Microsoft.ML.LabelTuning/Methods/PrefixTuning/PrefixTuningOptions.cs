using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods.PrefixTuning;

/// <summary>
/// Options of prefix tuning / P-tuning v2 (Li and Liang 2021; Liu et al. 2022) on a frozen LLaMA: trainable key and
/// value prefixes in every layer, and a label head on the pooled final hidden state.
/// </summary>
public sealed class PrefixTuningOptions : LabelTuningOptions
{
    /// <summary>Creates options with a learning rate suited to prefixes (1e-2).</summary>
    public PrefixTuningOptions()
    {
        LearningRate = 1e-2;
    }

    /// <summary>Prefix length n: keys and values per layer that every token attends to. 1 to 4096. Default 20.</summary>
    public int VirtualTokenCount { get; set; } = 20;

    /// <summary>
    /// Hidden size of PEFT's reparameterisation MLP (Embedding, Linear, Tanh, Linear) that produces the prefixes during
    /// training; 0 trains the prefixes directly. After training the MLP folds into plain prefixes. 0 to 65536. Default 0.
    /// </summary>
    public int ProjectionHiddenSize { get; set; }

    /// <summary>Pooling of the final hidden states of the real tokens. Default <see cref="Methods.Pooling.Last"/> (the last real token).</summary>
    public Pooling Pooling { get; set; } = Pooling.Last;

    internal override void Validate()
    {
        base.Validate();
        Require(VirtualTokenCount is >= 1 and <= 4096, nameof(VirtualTokenCount), VirtualTokenCount, "must be between 1 and 4096");
        Require(ProjectionHiddenSize is >= 0 and <= 65536, nameof(ProjectionHiddenSize), ProjectionHiddenSize, "must be between 0 (no MLP) and 65536");
        Require(Enum.IsDefined(Pooling), nameof(Pooling), Pooling, "must be Last, Mean or Max");
    }

    internal PrefixTuningSettings ToSettings() => new(VirtualTokenCount, ProjectionHiddenSize, Pooling);
}

/// <summary>What a saved prefix-tuning model needs to rebuild itself.</summary>
/// <param name="VirtualTokenCount">Prefix length n.</param>
/// <param name="ProjectionHiddenSize">Hidden size of the reparameterisation MLP; 0 = plain prefixes (saved models are always folded to 0).</param>
/// <param name="Pooling">Pooling of the final hidden states.</param>
internal sealed record PrefixTuningSettings(int VirtualTokenCount, int ProjectionHiddenSize, Pooling Pooling);
