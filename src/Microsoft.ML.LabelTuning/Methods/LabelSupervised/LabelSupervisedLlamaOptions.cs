using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods.LabelSupervised;

/// <summary>
/// Options of LS-LLaMA (Li et al. 2023): LoRA on the frozen decoder and a label head on the pooled final hidden
/// state, trained with cross-entropy. <see cref="Unmasked"/> gives LS-unLLaMA (bidirectional attention).
/// </summary>
public sealed class LabelSupervisedLlamaOptions : LabelTuningOptions
{
    /// <summary>Creates options with LS-LLaMA's reference defaults (r = 12, alpha = 32, dropout 0.1, q and v).</summary>
    public LabelSupervisedLlamaOptions()
    {
        LearningRate = 1e-4;
    }

    /// <summary>LoRA rank r. 1 to 1024. Default 12.</summary>
    public int LoraRank { get; set; } = 12;

    /// <summary>LoRA alpha; the update is scaled by alpha / r. Positive. Default 32.</summary>
    public double LoraAlpha { get; set; } = 32;

    /// <summary>Dropout on the LoRA input. 0 to below 1. Default 0.1.</summary>
    public double LoraDropout { get; set; } = 0.1;

    /// <summary>Layers LoRA adapts. Default q_proj and v_proj; <see cref="LoraTargets.AllLinear"/> adapts every linear layer.</summary>
    public LoraTargets LoraTargets { get; set; } = LoraTargets.QueryValue;

    /// <summary>Pooling of the final hidden states, over the attention mask. Default <see cref="Methods.Pooling.Last"/>.</summary>
    public Pooling Pooling { get; set; } = Pooling.Last;

    /// <summary>When true, attention is bidirectional (LS-unLLaMA). Default false. Token classification is always unmasked.</summary>
    public bool Unmasked { get; set; }

    internal override void Validate()
    {
        base.Validate();
        Require(LoraRank is >= 1 and <= 1024, nameof(LoraRank), LoraRank, "must be between 1 and 1024");
        Require(LoraAlpha > 0 && double.IsFinite(LoraAlpha), nameof(LoraAlpha), LoraAlpha, "must be positive");
        Require(LoraDropout is >= 0 and < 1, nameof(LoraDropout), LoraDropout, "must be in [0, 1)");
        Require(LoraTargets != 0 && (LoraTargets & ~LoraTargets.AllLinear) == 0, nameof(LoraTargets), LoraTargets, "must name at least one linear layer");
        Require(Enum.IsDefined(Pooling), nameof(Pooling), Pooling, "must be Last, Mean or Max");
    }

    internal LoraSettings ToSettings(bool tokenLevel)
        => new(LoraRank, LoraAlpha, LoraDropout, LoraTargetNames.ToNames(LoraTargets).ToArray(), Pooling, Unmasked || tokenLevel);
}

/// <summary>What a saved LS-LLaMA model needs to rebuild itself.</summary>
internal sealed record LoraSettings(int Rank, double Alpha, double Dropout, string[] TargetModules, Pooling Pooling, bool Unmasked, bool UseRsLora = false);
