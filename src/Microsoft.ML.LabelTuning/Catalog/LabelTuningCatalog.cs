using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>The trainers this library adds to <c>mlContext.MulticlassClassification.Trainers</c> and <c>mlContext.BinaryClassification.Trainers</c>.</summary>
public static class LabelTuningCatalog
{
    /// <summary>
    /// LS-LLaMA: LoRA (r = 12, alpha = 32, q and v) on the LLaMA model in <paramref name="modelPath"/> plus a label head on
    /// the last token's final hidden state. The label column must be Key&lt;UInt32&gt; (use MapValueToKey).
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column.</param>
    /// <param name="textColumnName">The text column.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="learningRate">Peak learning rate.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated.</param>
    public static LabelSupervisedLlamaTrainer LabelSupervisedLlama(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string textColumnName = "Text",
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 1e-4,
        int maxSequenceLength = 256)
        => LabelSupervisedLlama(catalog, new LabelSupervisedLlamaOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = textColumnName,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

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
    /// <param name="labelColumnName">The Boolean label column.</param>
    /// <param name="textColumnName">The text column.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="learningRate">Peak learning rate.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated.</param>
    public static LabelSupervisedLlamaBinaryTrainer LabelSupervisedLlama(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string textColumnName = "Text",
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 1e-4,
        int maxSequenceLength = 256)
        => LabelSupervisedLlama(catalog, new LabelSupervisedLlamaOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = textColumnName,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

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
    /// <param name="labelColumnName">The vector-of-keys tag column.</param>
    /// <param name="sentenceColumnName">The sentence column (words separated by spaces).</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Sentences per batch.</param>
    /// <param name="learningRate">Peak learning rate.</param>
    /// <param name="maxSequenceLength">Tokens per sentence; words past it are not tagged.</param>
    public static LabelSupervisedLlamaNerTrainer LabelSupervisedLlamaNer(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string sentenceColumnName = "Sentence",
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 1e-4,
        int maxSequenceLength = 256)
        => LabelSupervisedLlamaNer(catalog, new LabelSupervisedLlamaOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = sentenceColumnName,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

    /// <summary>LS-unLLaMA token classification with every option (attention is always bidirectional).</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; TextColumnName names the sentence column.</param>
    public static LabelSupervisedLlamaNerTrainer LabelSupervisedLlamaNer(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        LabelSupervisedLlamaOptions options)
        => new(Environment(catalog), options);

    /// <summary>Entity-level precision, recall and F1 of BIO tags (CoNLL-style exact span and type match).</summary>
    /// <param name="catalog">The multiclass catalog.</param>
    /// <param name="data">Scored data with the true and predicted tag vectors.</param>
    /// <param name="labelColumnName">The true tags (vector of keys).</param>
    /// <param name="predictedLabelColumnName">The predicted tags (vector of keys).</param>
    public static Evaluation.EntityMetrics EvaluateEntities(
        this MulticlassClassificationCatalog catalog,
        IDataView data,
        string labelColumnName = DefaultColumnNames.Label,
        string predictedLabelColumnName = DefaultColumnNames.PredictedLabel)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return Evaluation.EntityEvaluator.Evaluate(data, labelColumnName, predictedLabelColumnName);
    }

    private static IHostEnvironment Environment(TrainCatalogBase.CatalogInstantiatorBase catalog)
        => catalog.GetEnvironment();
}
