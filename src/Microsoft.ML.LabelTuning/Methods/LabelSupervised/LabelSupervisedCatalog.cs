using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>LS-LLaMA, LS-unLLaMA and the LS-unLLaMA token classifier on <c>mlContext.MulticlassClassification.Trainers</c> and <c>mlContext.BinaryClassification.Trainers</c>.</summary>
public static class LabelSupervisedCatalog
{
    /// <summary>
    /// LS-LLaMA: LoRA (r = 12, alpha = 32, q and v) on the LLaMA model in <paramref name="modelPath"/> plus a label head on
    /// the last token's final hidden state. The label column must be Key&lt;UInt32&gt; (use MapValueToKey).
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Examples per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated; null keeps the options' default.</param>
    public static LabelSupervisedLlamaTrainer LabelSupervisedLlama(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string? labelColumnName = null,
        string? textColumnName = null,
        int? epochs = null,
        int? batchSize = null,
        double? learningRate = null,
        int? maxSequenceLength = null)
    {
        var options = LabelTuningOptions.WithDefaults<LabelSupervisedLlamaOptions>(modelPath, labelColumnName, textColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        return LabelSupervisedLlama(catalog, options);
    }

    /// <summary>LS-LLaMA (or LS-unLLaMA with <see cref="LabelSupervisedLlamaOptions.Unmasked"/>) with every option.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static LabelSupervisedLlamaTrainer LabelSupervisedLlama(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LabelSupervisedLlamaOptions options)
        => new(Environment(catalog), options);

    /// <summary>Binary LS-LLaMA: the label column must be Boolean; outputs Score, Probability and PredictedLabel.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Boolean label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Examples per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated; null keeps the options' default.</param>
    public static LabelSupervisedLlamaBinaryTrainer LabelSupervisedLlama(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string modelPath,
        string? labelColumnName = null,
        string? textColumnName = null,
        int? epochs = null,
        int? batchSize = null,
        double? learningRate = null,
        int? maxSequenceLength = null)
    {
        var options = LabelTuningOptions.WithDefaults<LabelSupervisedLlamaOptions>(modelPath, labelColumnName, textColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        return LabelSupervisedLlama(catalog, options);
    }

    /// <summary>Binary LS-LLaMA with every option.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static LabelSupervisedLlamaBinaryTrainer LabelSupervisedLlama(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        LabelSupervisedLlamaOptions options)
        => new(Environment(catalog), options);

    /// <summary>
    /// LS-unLLaMA token classification (NER): <paramref name="sentenceColumnName"/> holds space-separated words and
    /// <paramref name="labelColumnName"/> a vector of Key&lt;UInt32&gt; tags, one per word. Outputs PredictedLabel, a
    /// vector of keys per word.
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The vector-of-keys tag column; null keeps the options' default.</param>
    /// <param name="sentenceColumnName">The sentence column (words separated by spaces).</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    /// <param name="batchSize">Sentences per batch; null keeps the options' default.</param>
    /// <param name="learningRate">Peak learning rate; null keeps the options' default.</param>
    /// <param name="maxSequenceLength">Tokens per sentence; words past it are not tagged; null keeps the options' default.</param>
    public static LabelSupervisedLlamaNerTrainer LabelSupervisedLlamaNer(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string? labelColumnName = null,
        string sentenceColumnName = "Sentence",
        int? epochs = null,
        int? batchSize = null,
        double? learningRate = null,
        int? maxSequenceLength = null)
    {
        var options = LabelTuningOptions.WithDefaults<LabelSupervisedLlamaOptions>(modelPath, labelColumnName, sentenceColumnName, epochs, batchSize, learningRate, maxSequenceLength);
        return LabelSupervisedLlamaNer(catalog, options);
    }

    /// <summary>LS-unLLaMA token classification with every option (attention is always bidirectional).</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; TextColumnName names the sentence column.</param>
    public static LabelSupervisedLlamaNerTrainer LabelSupervisedLlamaNer(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LabelSupervisedLlamaOptions options)
        => new(Environment(catalog), options);

    private static IHostEnvironment Environment(TrainCatalogBase.CatalogInstantiatorBase catalog)
        => catalog.GetEnvironment();
}
