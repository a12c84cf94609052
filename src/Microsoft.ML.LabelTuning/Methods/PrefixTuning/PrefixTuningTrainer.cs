using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.PrefixTuning;

/// <summary>
/// Prefix tuning / P-tuning v2 as an ML.NET multiclass trainer: trainable key and value prefixes in every layer of a
/// frozen LLaMA and a label head on the pooled final hidden state, trained with cross-entropy. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.PrefixTuning(...)</c>.
/// </summary>
public sealed class PrefixTuningTrainer : MulticlassLabelTuningTrainer
{
    private readonly PrefixTuningOptions _options;

    internal PrefixTuningTrainer(IHostEnvironment env, PrefixTuningOptions options)
        : base(env, options)
    {
        _options = options;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => (TuningMethod.PrefixTuning, JsonSerializer.SerializeToElement(_options.ToSettings(), SettingsJson.Options));

    private protected override ClassifierRuntime AfterTraining(ClassifierRuntime runtime) => PrefixTuningFactory.Fold(runtime);
}

/// <summary>
/// Prefix tuning / P-tuning v2 as an ML.NET binary trainer (Boolean label). Reached as
/// <c>mlContext.BinaryClassification.Trainers.PrefixTuning(...)</c>.
/// </summary>
public sealed class PrefixTuningBinaryTrainer : BinaryLabelTuningTrainer
{
    private readonly PrefixTuningOptions _options;

    internal PrefixTuningBinaryTrainer(IHostEnvironment env, PrefixTuningOptions options)
        : base(env, options)
    {
        _options = options;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => (TuningMethod.PrefixTuning, JsonSerializer.SerializeToElement(_options.ToSettings(), SettingsJson.Options));

    private protected override ClassifierRuntime AfterTraining(ClassifierRuntime runtime) => PrefixTuningFactory.Fold(runtime);
}
