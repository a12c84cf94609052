namespace Microsoft.ML.LabelTuning.Methods;

/// <content>L-Tuning's two names, declared in its own folder.</content>
public readonly partial struct TuningMethod
{
    /// <summary>Gets L-Tuning prefix: label-specific prefixes computed from the label texts.</summary>
    public static TuningMethod LTuningPrefix { get; } = new(nameof(LTuningPrefix));

    /// <summary>Gets L-Tuning prompt: label-specific prompts computed from the label texts.</summary>
    public static TuningMethod LTuningPrompt { get; } = new(nameof(LTuningPrompt));
}
