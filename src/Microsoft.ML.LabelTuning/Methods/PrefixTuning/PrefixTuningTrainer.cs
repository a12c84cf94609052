using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.PrefixTuning;

/// <summary>
/// Prefix tuning / P-tuning v2 as an ML.NET multiclass trainer: trainable key and value prefixes in every layer of a
/// frozen LLaMA and a label head on the pooled final hidden state, trained with cross-entropy. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.PrefixTuning(...)</c>.
/// </summary>
public sealed class PrefixTuningTrainer : IEstimator<LabelTuningMulticlassTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly PrefixTuningOptions _options;

    internal PrefixTuningTrainer(IHostEnvironment env, PrefixTuningOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
    }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer (a projection MLP is folded into plain prefixes).</summary>
    public LabelTuningMulticlassTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var settings = JsonSerializer.SerializeToElement(_options.ToSettings(), SettingsJson.Options);
        var runtime = ClassifierFactory.Fit(_env, _options, TuningMethod.PrefixTuning, settings, input, LabelKind.Key);
        return new LabelTuningMulticlassTransformer(_env, PrefixTuningFactory.Fold(runtime));
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Multiclass(inputSchema, _options);
}

/// <summary>
/// Prefix tuning / P-tuning v2 as an ML.NET binary trainer (Boolean label). Reached as
/// <c>mlContext.BinaryClassification.Trainers.PrefixTuning(...)</c>.
/// </summary>
public sealed class PrefixTuningBinaryTrainer : IEstimator<LabelTuningBinaryTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly PrefixTuningOptions _options;

    internal PrefixTuningBinaryTrainer(IHostEnvironment env, PrefixTuningOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
    }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer (a projection MLP is folded into plain prefixes).</summary>
    public LabelTuningBinaryTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var settings = JsonSerializer.SerializeToElement(_options.ToSettings(), SettingsJson.Options);
        var runtime = ClassifierFactory.Fit(_env, _options, TuningMethod.PrefixTuning, settings, input, LabelKind.Boolean);
        return new LabelTuningBinaryTransformer(_env, PrefixTuningFactory.Fold(runtime));
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Binary(inputSchema, _options);
}
