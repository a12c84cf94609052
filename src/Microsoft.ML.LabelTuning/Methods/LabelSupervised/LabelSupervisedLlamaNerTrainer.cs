using System.Text.Json;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.LabelSupervised;

/// <summary>
/// LS-unLLaMA for token classification (NER), shaped like ML.NET's NamedEntityRecognition trainer: the text column
/// holds space-separated words and the label column a vector of keys, one per word. Attention is bidirectional, and
/// only each word's first sub-token carries its label. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.LabelSupervisedLlamaNer(...)</c>.
/// </summary>
public sealed class LabelSupervisedLlamaNerTrainer : IEstimator<LabelTuningNerTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly LabelSupervisedLlamaOptions _options;

    internal LabelSupervisedLlamaNerTrainer(IHostEnvironment env, LabelSupervisedLlamaOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _options.Validate();
        if (_options.SecondTextColumnName is not null)
        {
            throw new ArgumentException("Token classification reads one sentence column; SecondTextColumnName must be null.", nameof(options));
        }
    }

    /// <summary>Trains on <paramref name="input"/> and returns the tagging transformer.</summary>
    public LabelTuningNerTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var settings = JsonSerializer.SerializeToElement(_options.ToSettings(tokenLevel: true), SettingsJson.Options);
        return new LabelTuningNerTransformer(_env, ClassifierFactory.FitTokens(_env, _options, TuningMethod.LabelSupervised, settings, input));
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Tokens(inputSchema, _options);
}
