namespace Microsoft.ML.LabelTuning.Methods;

/// <content>LS-LLaMA's name, declared in its own folder.</content>
public readonly partial struct TuningMethod
{
    /// <summary>Gets LS-LLaMA / LS-unLLaMA: LoRA on the frozen decoder plus a label head on the pooled state.</summary>
    public static TuningMethod LabelSupervised { get; } = new(nameof(LabelSupervised));
}
