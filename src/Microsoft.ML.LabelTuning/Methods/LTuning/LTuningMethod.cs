namespace Microsoft.ML.LabelTuning.Methods.LTuning;

/// <summary>L-Tuning's two variants as the registry knows them. PEFT has no label-conditioned adapter type, so neither maps to PEFT.</summary>
internal static class LTuningMethod
{
    public static TuningMethodDescriptor Prefix { get; } = Describe(LTuningVariant.Prefix);

    public static TuningMethodDescriptor Prompt { get; } = Describe(LTuningVariant.Prompt);

    private static TuningMethodDescriptor Describe(LTuningVariant variant) => new()
    {
        Method = variant == LTuningVariant.Prefix ? TuningMethod.LTuningPrefix : TuningMethod.LTuningPrompt,
        OptionsType = typeof(LTuningOptions),
        Factory = new LTuningFactory(variant),
        Multiclass = (env, options) => new LTuningTrainer(env, (LTuningOptions)options, variant),
        Binary = (env, options) => new LTuningBinaryTrainer(env, (LTuningOptions)options, variant),
        SearchSpace =
        [
            .. SearchDimension.Shared,
            new SearchRange(nameof(LTuningOptions.NegativesPerExample), 1, 4, 1, IsInteger: true),
            new SearchChoice(nameof(LTuningOptions.MatchingRank), [16, 64, 256]),
        ],
        DisplayName = _ => variant == LTuningVariant.Prefix ? "L-Tuning prefix" : "L-Tuning prompt",
    };
}
