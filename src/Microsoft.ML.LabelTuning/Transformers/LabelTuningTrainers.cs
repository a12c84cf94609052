using System.Text.Json;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// What every label-tuning trainer shares: it validates its options once, fits through the shared classifier
/// factory, and wraps the result in the transformer of its task. A method's trainer only says which method it is and
/// what settings it saves.
/// </summary>
/// <typeparam name="TTransformer">The transformer the trainer produces.</typeparam>
public abstract class LabelTuningTrainerBase<TTransformer> : IEstimator<TTransformer>
    where TTransformer : LabelTuningTransformerBase
{
    private protected LabelTuningTrainerBase(IHostEnvironment env, LabelTuningOptions options)
    {
        Environment = env ?? throw new ArgumentNullException(nameof(env));
        Options = options ?? throw new ArgumentNullException(nameof(options));
        options.Validate();
    }

    private protected IHostEnvironment Environment { get; }

    private protected LabelTuningOptions Options { get; }

    /// <summary>Trains on <paramref name="input"/> and returns the scoring transformer.</summary>
    /// <param name="input">The training data.</param>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var (method, settings) = Describe();
        return Train(input, method, settings, Options);
    }

    /// <summary>
    /// Trains as <see cref="Fit"/> does, with the shared options replaced by <paramref name="change"/>'s copy (GPTA
    /// varies the text prefix and the epochs). The method's own settings stay those of this trainer.
    /// </summary>
    internal TTransformer FitWith(IDataView input, Func<LabelTuningOptions, LabelTuningOptions> change)
    {
        ArgumentNullException.ThrowIfNull(input);
        var options = change(Options);
        options.Validate();
        var (method, settings) = Describe();
        return Train(input, method, settings, options);
    }

    /// <summary>Gets the shared options this trainer was built with (read only: never written).</summary>
    internal LabelTuningOptions SharedOptions => Options;

    /// <inheritdoc/>
    public abstract SchemaShape GetOutputSchema(SchemaShape inputSchema);

    /// <summary>The method and the settings a saved model rebuilds it from.</summary>
    private protected abstract (TuningMethod Method, JsonElement Settings) Describe();

    private protected abstract TTransformer Train(IDataView input, TuningMethod method, JsonElement settings, LabelTuningOptions options);

    /// <summary>A method's last word on the trained model before it is wrapped (prefix tuning folds its MLP here).</summary>
    private protected virtual ClassifierRuntime AfterTraining(ClassifierRuntime runtime) => runtime;

    /// <summary>Finishes a trained runtime and wraps it; if either step throws, the runtime's tensors are released.</summary>
    private protected TTransformer Wrap(ClassifierRuntime runtime, Func<ClassifierRuntime, TTransformer> wrap)
    {
        try
        {
            return wrap(AfterTraining(runtime));
        }
        catch
        {
            runtime.Dispose();
            throw;
        }
    }
}

/// <summary>A multiclass label-tuning trainer: Key&lt;UInt32&gt; label in; Score and PredictedLabel out.</summary>
public abstract class MulticlassLabelTuningTrainer : LabelTuningTrainerBase<LabelTuningMulticlassTransformer>
{
    private protected MulticlassLabelTuningTrainer(IHostEnvironment env, LabelTuningOptions options)
        : base(env, options)
    {
    }

    /// <inheritdoc/>
    public override SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Multiclass(inputSchema, Options);

    private protected override LabelTuningMulticlassTransformer Train(IDataView input, TuningMethod method, JsonElement settings, LabelTuningOptions options)
        => Wrap(ClassifierFactory.Fit(Environment, options, method, settings, input, LabelKind.Key), runtime => new(Environment, runtime));
}

/// <summary>A binary label-tuning trainer: Boolean label in; Score, Probability and PredictedLabel out.</summary>
public abstract class BinaryLabelTuningTrainer : LabelTuningTrainerBase<LabelTuningBinaryTransformer>
{
    private protected BinaryLabelTuningTrainer(IHostEnvironment env, LabelTuningOptions options)
        : base(env, options)
    {
    }

    /// <inheritdoc/>
    public override SchemaShape GetOutputSchema(SchemaShape inputSchema) => EstimatorSchemas.Binary(inputSchema, Options);

    private protected override LabelTuningBinaryTransformer Train(IDataView input, TuningMethod method, JsonElement settings, LabelTuningOptions options)
        => Wrap(ClassifierFactory.Fit(Environment, options, method, settings, input, LabelKind.Boolean), runtime => new(Environment, runtime));
}
