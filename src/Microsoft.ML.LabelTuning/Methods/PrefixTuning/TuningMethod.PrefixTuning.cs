namespace Microsoft.ML.LabelTuning.Methods;

/// <content>Prefix tuning's name, declared in its own folder.</content>
public readonly partial struct TuningMethod
{
    /// <summary>Gets prefix tuning / P-tuning v2: trainable key and value prefixes in every layer.</summary>
    public static TuningMethod PrefixTuning { get; } = new(nameof(PrefixTuning));
}
