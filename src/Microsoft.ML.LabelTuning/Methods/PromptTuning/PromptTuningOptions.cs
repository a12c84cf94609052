using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods.PromptTuning;

/// <summary>How the virtual-token embeddings of a soft prompt start; the values of PEFT's <c>PromptTuningInit</c>.</summary>
public enum PromptTuningInit
{
    /// <summary>PEFT's RANDOM: each entry drawn from N(0, 1), as a fresh <c>torch.nn.Embedding</c> is.</summary>
    Random,

    /// <summary>PEFT's SAMPLE_VOCAB: rows of the model's token-embedding table at uniformly drawn token ids.</summary>
    SampleVocab,

    /// <summary>PEFT's TEXT: the embeddings of <see cref="PromptTuningOptions.InitText"/>'s tokens, cut or repeated to the prompt length.</summary>
    Text,
}

/// <summary>
/// Options of the soft-prompt family on a frozen LLaMA, trained with a label head on the pooled final hidden state:
/// prompt tuning (Lester et al. 2021), DePT (Shi and Lipani 2023) when <see cref="DecomposedRank"/> &gt; 0, and EPT
/// (Lan et al. 2024) when in addition <see cref="ProjectionSpaces"/> &gt; 1.
/// </summary>
public sealed class PromptTuningOptions : LabelTuningOptions
{
    /// <summary>Creates options with a learning rate suited to soft prompts (3e-2; prompts need far larger steps than LoRA).</summary>
    public PromptTuningOptions()
    {
        LearningRate = 3e-2;
    }

    /// <summary>Number of virtual tokens n prepended to every input. 1 to 4096. Default 20.</summary>
    public int VirtualTokenCount { get; set; } = 20;

    /// <summary>How the virtual tokens start. Default <see cref="PromptTuningInit.Random"/>.</summary>
    public PromptTuningInit Init { get; set; } = PromptTuningInit.Random;

    /// <summary>
    /// The text whose token embeddings start the prompt when <see cref="Init"/> is <see cref="PromptTuningInit.Text"/>
    /// (cut or repeated to <see cref="VirtualTokenCount"/>); must be null otherwise. Default null.
    /// </summary>
    public string? InitText { get; set; }

    /// <summary>
    /// DePT's rank r: 0 is plain prompt tuning; r &gt; 0 adds a low-rank update A·B (A is MaxSequenceLength × r,
    /// B is r × hidden) to the input token embeddings, position by position. 0 to 1024. Default 0.
    /// </summary>
    public int DecomposedRank { get; set; }

    /// <summary>DePT's learning rate for A and B (the prompt and the head use <see cref="LabelTuningOptions.LearningRate"/>). Positive. Default 1e-3.</summary>
    public double DecomposedLearningRate { get; set; } = 1e-3;

    /// <summary>DePT's alpha: the low-rank update is scaled by alpha / sqrt(r), as in DePT's code. Positive. Default 8 (DePT's default).</summary>
    public double DecomposedAlpha { get; set; } = 8;

    /// <summary>
    /// EPT's number of subspaces k: 1 is off; k &gt; 1 projects the prompt into k rank-r subspaces combined by a
    /// gating network (needs <see cref="DecomposedRank"/> &gt; 0). 1 to 64. Default 1.
    /// </summary>
    public int ProjectionSpaces { get; set; } = 1;

    /// <summary>
    /// Pooling of the final hidden states over [virtual tokens, real tokens]. <see cref="Methods.Pooling.Last"/> takes the
    /// last real token, so padding never changes a score. Default Last.
    /// </summary>
    public Pooling Pooling { get; set; } = Pooling.Last;

    internal override void Validate()
    {
        base.Validate();
        Require(VirtualTokenCount is >= 1 and <= 4096, nameof(VirtualTokenCount), VirtualTokenCount, "must be between 1 and 4096");
        Require(Enum.IsDefined(Init), nameof(Init), Init, "must be Random, SampleVocab or Text");
        if (Init == PromptTuningInit.Text && string.IsNullOrWhiteSpace(InitText))
        {
            throw new ArgumentException("InitText must hold the text whose token embeddings start the prompt when Init is Text, but it is empty.", nameof(InitText));
        }

        if (Init != PromptTuningInit.Text && InitText is not null)
        {
            throw new ArgumentException($"InitText is set but Init is {Init}; set Init = PromptTuningInit.Text to start from the text, or leave InitText null.", nameof(InitText));
        }

        Require(DecomposedRank is >= 0 and <= 1024, nameof(DecomposedRank), DecomposedRank, "must be between 0 (plain prompt tuning) and 1024");
        Require(DecomposedLearningRate > 0 && double.IsFinite(DecomposedLearningRate), nameof(DecomposedLearningRate), DecomposedLearningRate, "must be a positive finite number");
        Require(DecomposedAlpha > 0 && double.IsFinite(DecomposedAlpha), nameof(DecomposedAlpha), DecomposedAlpha, "must be a positive finite number");
        Require(ProjectionSpaces is >= 1 and <= 64, nameof(ProjectionSpaces), ProjectionSpaces, "must be between 1 (off) and 64");
        if (ProjectionSpaces > 1 && DecomposedRank == 0)
        {
            throw new ArgumentException(
                $"ProjectionSpaces is {ProjectionSpaces} (EPT) but DecomposedRank is 0; EPT builds on DePT, so set DecomposedRank > 0.", nameof(ProjectionSpaces));
        }

        Require(Enum.IsDefined(Pooling), nameof(Pooling), Pooling, "must be Last, Mean or Max");
    }

    /// <summary>DePT trains A and B at their own rate: a multiplier of the scheduled rate for the adapter's lora_embedding_* parameters.</summary>
    internal override IReadOnlyDictionary<string, double>? LearningRateScales()
        => DecomposedRank > 0
            ? new Dictionary<string, double> { [PromptTuningAdapter.DecomposedParameterPrefix] = DecomposedLearningRate / LearningRate }
            : null;

    /// <summary>The settings saved with the model; <paramref name="initTokenIds"/> are InitText's token ids (Text init only).</summary>
    internal PromptTuningSettings ToSettings(int[]? initTokenIds)
        => new(VirtualTokenCount, Init, initTokenIds, DecomposedRank, DecomposedAlpha, MaxSequenceLength, ProjectionSpaces, Pooling);
}

/// <summary>What a saved prompt-tuning model needs to rebuild itself.</summary>
/// <param name="VirtualTokenCount">Virtual tokens n.</param>
/// <param name="Init">How the prompt started (only matters before training).</param>
/// <param name="InitTokenIds">For Text init: the init text's token ids.</param>
/// <param name="DecomposedRank">DePT's rank r (0 = plain prompt tuning).</param>
/// <param name="DecomposedAlpha">DePT's alpha; the update is scaled by alpha / sqrt(r).</param>
/// <param name="MaxSequenceLength">Rows of DePT's A: one per input position.</param>
/// <param name="ProjectionSpaces">EPT's subspaces k (1 = off).</param>
/// <param name="Pooling">Pooling of the final hidden states.</param>
internal sealed record PromptTuningSettings(
    int VirtualTokenCount,
    PromptTuningInit Init,
    int[]? InitTokenIds,
    int DecomposedRank,
    double DecomposedAlpha,
    int MaxSequenceLength,
    int ProjectionSpaces,
    Pooling Pooling);
