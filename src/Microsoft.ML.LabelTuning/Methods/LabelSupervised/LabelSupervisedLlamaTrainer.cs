using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.LabelSupervised;

/// <summary>
/// LS-LLaMA as an ML.NET multiclass trainer: LoRA on a frozen LLaMA and a label head on the pooled final hidden state,
/// trained with cross-entropy. Reached as <c>mlContext.MulticlassClassification.Trainers.LabelSupervisedLlama(...)</c>.
/// </summary>
public sealed class LabelSupervisedLlamaTrainer : MulticlassLabelTuningTrainer
{
    private readonly LabelSupervisedLlamaOptions _options;

    internal LabelSupervisedLlamaTrainer(IHostEnvironment env, LabelSupervisedLlamaOptions options)
        : base(env, options)
    {
        _options = options;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => (TuningMethod.LabelSupervised, JsonSerializer.SerializeToElement(_options.ToSettings(tokenLevel: false), SettingsJson.Options));
}

/// <summary>
/// LS-LLaMA as an ML.NET binary trainer (Boolean label). Reached as
/// <c>mlContext.BinaryClassification.Trainers.LabelSupervisedLlama(...)</c>.
/// </summary>
public sealed class LabelSupervisedLlamaBinaryTrainer : BinaryLabelTuningTrainer
{
    private readonly LabelSupervisedLlamaOptions _options;

    internal LabelSupervisedLlamaBinaryTrainer(IHostEnvironment env, LabelSupervisedLlamaOptions options)
        : base(env, options)
    {
        _options = options;
    }

    private protected override (TuningMethod Method, JsonElement Settings) Describe()
        => (TuningMethod.LabelSupervised, JsonSerializer.SerializeToElement(_options.ToSettings(tokenLevel: false), SettingsJson.Options));
}
