using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.LabelSupervised;

/// <summary>
/// LS-LLaMA as an ML.NET multiclass trainer: LoRA on a frozen LLaMA and a label head on the pooled final hidden state,
/// trained with cross-entropy. Reached as <c>mlContext.MulticlassClassification.Trainers.LabelSupervisedLlama(...)</c>.
/// </summary>
public sealed class LabelSupervisedLlamaTrainer : IEstimator<LabelTuningMulticlassTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly LabelSupervisedLlamaOptions _options;

    internal LabelSupervisedLlamaTrainer(IHostEnvironment env, LabelSupervisedLlamaOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
    }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer.</summary>
    public LabelTuningMulticlassTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var settings = JsonSerializer.SerializeToElement(_options.ToSettings(tokenLevel: false), SettingsJson.Options);
        var runtime = ClassifierFactory.Fit(_env, _options, TuningMethod.LabelSupervised, settings, input, LabelKind.Key);
        return new LabelTuningMulticlassTransformer(_env, runtime);
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Multiclass(inputSchema, _options);
}

/// <summary>
/// LS-LLaMA as an ML.NET binary trainer (Boolean label). Reached as
/// <c>mlContext.BinaryClassification.Trainers.LabelSupervisedLlama(...)</c>.
/// </summary>
public sealed class LabelSupervisedLlamaBinaryTrainer : IEstimator<LabelTuningBinaryTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly LabelSupervisedLlamaOptions _options;

    internal LabelSupervisedLlamaBinaryTrainer(IHostEnvironment env, LabelSupervisedLlamaOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
    }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer.</summary>
    public LabelTuningBinaryTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var settings = JsonSerializer.SerializeToElement(_options.ToSettings(tokenLevel: false), SettingsJson.Options);
        var runtime = ClassifierFactory.Fit(_env, _options, TuningMethod.LabelSupervised, settings, input, LabelKind.Boolean);
        return new LabelTuningBinaryTransformer(_env, runtime);
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Binary(inputSchema, _options);
}
