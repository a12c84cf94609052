using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.LTuning;

/// <summary>
/// L-Tuning as an ML.NET multiclass trainer, prefix or prompt variant. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.LTuningPrefix(...)</c> or <c>.LTuningPrompt(...)</c>.
/// </summary>
public sealed class LTuningTrainer : IEstimator<LabelTuningMulticlassTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly LTuningOptions _options;
    private readonly LTuningVariant _variant;

    internal LTuningTrainer(IHostEnvironment env, LTuningOptions options, LTuningVariant variant)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
        _variant = variant;
    }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer.</summary>
    public LabelTuningMulticlassTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var (method, settings) = Settings(_options, _variant);
        return new LabelTuningMulticlassTransformer(_env, ClassifierFactory.Fit(_env, _options, method, settings, input, LabelKind.Key));
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Multiclass(inputSchema, _options);

    internal static (TuningMethod Method, JsonElement Settings) Settings(LTuningOptions options, LTuningVariant variant)
    {
        var settings = new LTuningSettings(variant, options.LabelTexts?.ToArray(), options.NegativesPerExample, options.LabelPlacement);
        return (variant == LTuningVariant.Prefix ? TuningMethod.LTuningPrefix : TuningMethod.LTuningPrompt,
            JsonSerializer.SerializeToElement(settings, SettingsJson.Options));
    }
}

/// <summary>L-Tuning as an ML.NET binary trainer (Boolean label; label texts for false, then true).</summary>
public sealed class LTuningBinaryTrainer : IEstimator<LabelTuningBinaryTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly LTuningOptions _options;
    private readonly LTuningVariant _variant;

    internal LTuningBinaryTrainer(IHostEnvironment env, LTuningOptions options, LTuningVariant variant)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
        _variant = variant;
    }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer.</summary>
    public LabelTuningBinaryTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var (method, settings) = LTuningTrainer.Settings(_options, _variant);
        return new LabelTuningBinaryTransformer(_env, ClassifierFactory.Fit(_env, _options, method, settings, input, LabelKind.Boolean));
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Binary(inputSchema, _options);
}
