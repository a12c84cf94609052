namespace Microsoft.ML.LabelTuning.Methods;

/// <content>Prompt tuning's name, declared in its own folder.</content>
public readonly partial struct TuningMethod
{
    /// <summary>Gets soft prompt tuning, DePT and EPT: trainable virtual-token embeddings before the text.</summary>
    public static TuningMethod PromptTuning { get; } = new(nameof(PromptTuning));
}
