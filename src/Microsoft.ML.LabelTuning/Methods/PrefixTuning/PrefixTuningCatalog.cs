using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>
/// Prefix tuning / P-tuning v2 on <c>mlContext.MulticlassClassification.Trainers</c> and
/// <c>mlContext.BinaryClassification.Trainers</c>.
/// </summary>
public static class PrefixTuningCatalog
{
    /// <summary>
    /// Prefix tuning / P-tuning v2: <paramref name="virtualTokenCount"/> trainable keys and values in every layer of the
    /// frozen LLaMA model in <paramref name="modelPath"/>, plus a label head on the last real token's final hidden state.
    /// The label column must be Key&lt;UInt32&gt; (use MapValueToKey).
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="virtualTokenCount">Prefix length per layer; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Examples per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated; null keeps the options' default.</param>
    public static PrefixTuningTrainer PrefixTuning(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string? labelColumnName = null,
        string? textColumnName = null,
        int? virtualTokenCount = null,
        int? epochs = null,
        int? batchSize = null,
        double? learningRate = null,
        int? maxSequenceLength = null)
    {
        var options = LabelTuningOptions.WithDefaults<PrefixTuningOptions>(modelPath, labelColumnName, textColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        options.VirtualTokenCount = virtualTokenCount ?? options.VirtualTokenCount;
        return PrefixTuning(catalog, options);
    }

    /// <summary>Prefix tuning with every option (<see cref="PrefixTuningOptions.ProjectionHiddenSize"/> &gt; 0 trains through PEFT's MLP).</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static PrefixTuningTrainer PrefixTuning(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        PrefixTuningOptions options)
        => new(Environment(catalog), options);

    /// <summary>Binary prefix tuning: the label column must be Boolean; outputs Score, Probability and PredictedLabel.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Boolean label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="virtualTokenCount">Prefix length per layer; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Examples per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated; null keeps the options' default.</param>
    public static PrefixTuningBinaryTrainer PrefixTuning(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string modelPath,
        string? labelColumnName = null,
        string? textColumnName = null,
        int? virtualTokenCount = null,
        int? epochs = null,
        int? batchSize = null,
        double? learningRate = null,
        int? maxSequenceLength = null)
    {
        var options = LabelTuningOptions.WithDefaults<PrefixTuningOptions>(modelPath, labelColumnName, textColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        options.VirtualTokenCount = virtualTokenCount ?? options.VirtualTokenCount;
        return PrefixTuning(catalog, options);
    }

    /// <summary>Binary prefix tuning with every option.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static PrefixTuningBinaryTrainer PrefixTuning(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        PrefixTuningOptions options)
        => new(Environment(catalog), options);

    private static IHostEnvironment Environment(TrainCatalogBase.CatalogInstantiatorBase catalog)
        => catalog.GetEnvironment();
}
