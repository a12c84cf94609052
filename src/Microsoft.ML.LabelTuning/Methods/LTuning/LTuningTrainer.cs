using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.LTuning;

/// <summary>
/// L-Tuning as an ML.NET multiclass trainer, prefix or prompt variant. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.LTuningPrefix(...)</c> or <c>.LTuningPrompt(...)</c>.
/// </summary>
public sealed class LTuningTrainer : MulticlassLabelTuningTrainer
{
    private readonly LTuningOptions _options;
    private readonly LTuningVariant _variant;

    internal LTuningTrainer(IHostEnvironment env, LTuningOptions options, LTuningVariant variant)
        : base(env, options)
    {
        _options = options;
        _variant = variant;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => Settings(_options, _variant);

    internal static (TuningMethod Method, JsonElement Settings) Settings(LTuningOptions options, LTuningVariant variant)
    {
        var settings = new LTuningSettings(variant, options.LabelTexts?.ToArray(), options.NegativesPerExample, options.LabelPlacement, Pooling: options.Pooling, Head: options.Head,
            MatchingRank: options.Head == LTuningHead.Matching ? options.MatchingRank : new LTuningOptions().MatchingRank); // unused by the paper's head
        return (variant == LTuningVariant.Prefix ? TuningMethod.LTuningPrefix : TuningMethod.LTuningPrompt,
            JsonSerializer.SerializeToElement(settings, SettingsJson.Options));
    }
}

/// <summary>L-Tuning as an ML.NET binary trainer (Boolean label; label texts for false, then true).</summary>
public sealed class LTuningBinaryTrainer : BinaryLabelTuningTrainer
{
    private readonly LTuningOptions _options;
    private readonly LTuningVariant _variant;

    internal LTuningBinaryTrainer(IHostEnvironment env, LTuningOptions options, LTuningVariant variant)
        : base(env, options)
    {
        _options = options;
        _variant = variant;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => LTuningTrainer.Settings(_options, _variant);
}
