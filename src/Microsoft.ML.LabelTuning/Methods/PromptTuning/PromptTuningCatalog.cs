using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>
/// Soft prompt tuning (with DePT and EPT) on <c>mlContext.MulticlassClassification.Trainers</c> and
/// <c>mlContext.BinaryClassification.Trainers</c>.
/// </summary>
public static class PromptTuningCatalog
{
    /// <summary>
    /// Soft prompt tuning: <paramref name="virtualTokenCount"/> trainable virtual tokens before the text of the frozen
    /// LLaMA model in <paramref name="modelPath"/>, plus a label head on the last real token's final hidden state. The
    /// label column must be Key&lt;UInt32&gt; (use MapValueToKey). DePT and EPT are options of <see cref="PromptTuningOptions"/>.
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="virtualTokenCount">Virtual tokens in the soft prompt; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Examples per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate of the prompt and the head; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per example (virtual tokens not counted); longer texts are truncated; null keeps the options' default.</param>
    public static PromptTuningTrainer PromptTuning(
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
        var options = LabelTuningOptions.WithDefaults<PromptTuningOptions>(modelPath, labelColumnName, textColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        options.VirtualTokenCount = virtualTokenCount ?? options.VirtualTokenCount;
        return PromptTuning(catalog, options);
    }

    /// <summary>Soft prompt tuning, DePT (<see cref="PromptTuningOptions.DecomposedRank"/> &gt; 0) or EPT (also <see cref="PromptTuningOptions.ProjectionSpaces"/> &gt; 1) with every option.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static PromptTuningTrainer PromptTuning(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        PromptTuningOptions options)
        => new(Environment(catalog), options);

    /// <summary>Binary soft prompt tuning: the label column must be Boolean; outputs Score, Probability and PredictedLabel.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Boolean label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="virtualTokenCount">Virtual tokens in the soft prompt; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Examples per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate of the prompt and the head; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per example (virtual tokens not counted); longer texts are truncated; null keeps the options' default.</param>
    public static PromptTuningBinaryTrainer PromptTuning(
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
        var options = LabelTuningOptions.WithDefaults<PromptTuningOptions>(modelPath, labelColumnName, textColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        options.VirtualTokenCount = virtualTokenCount ?? options.VirtualTokenCount;
        return PromptTuning(catalog, options);
    }

    /// <summary>Binary soft prompt tuning, DePT or EPT with every option.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static PromptTuningBinaryTrainer PromptTuning(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        PromptTuningOptions options)
        => new(Environment(catalog), options);

    private static IHostEnvironment Environment(TrainCatalogBase.CatalogInstantiatorBase catalog)
        => catalog.GetEnvironment();
}
