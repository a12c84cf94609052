using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>
/// The prompt-learning trainers this library adds to <c>mlContext.MulticlassClassification.Trainers</c> and
/// <c>mlContext.BinaryClassification.Trainers</c>: soft prompt tuning (with DePT and EPT) and prefix tuning.
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
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column.</param>
    /// <param name="textColumnName">The text column.</param>
    /// <param name="virtualTokenCount">Virtual tokens in the soft prompt.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="learningRate">Peak learning rate of the prompt and the head.</param>
    /// <param name="maxSequenceLength">Tokens per example (virtual tokens not counted); longer texts are truncated.</param>
    public static PromptTuningTrainer PromptTuning(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string textColumnName = "Text",
        int virtualTokenCount = 20,
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 3e-2,
        int maxSequenceLength = 256)
        => PromptTuning(catalog, new PromptTuningOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = textColumnName,
            VirtualTokenCount = virtualTokenCount,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

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
    /// <param name="labelColumnName">The Boolean label column.</param>
    /// <param name="textColumnName">The text column.</param>
    /// <param name="virtualTokenCount">Virtual tokens in the soft prompt.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="learningRate">Peak learning rate of the prompt and the head.</param>
    /// <param name="maxSequenceLength">Tokens per example (virtual tokens not counted); longer texts are truncated.</param>
    public static PromptTuningBinaryTrainer PromptTuning(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string textColumnName = "Text",
        int virtualTokenCount = 20,
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 3e-2,
        int maxSequenceLength = 256)
        => PromptTuning(catalog, new PromptTuningOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = textColumnName,
            VirtualTokenCount = virtualTokenCount,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

    /// <summary>Binary soft prompt tuning, DePT or EPT with every option.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="options">The options; they are validated here and not modified.</param>
    public static PromptTuningBinaryTrainer PromptTuning(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        PromptTuningOptions options)
        => new(Environment(catalog), options);

    /// <summary>
    /// Prefix tuning / P-tuning v2: <paramref name="virtualTokenCount"/> trainable keys and values in every layer of the
    /// frozen LLaMA model in <paramref name="modelPath"/>, plus a label head on the last real token's final hidden state.
    /// The label column must be Key&lt;UInt32&gt; (use MapValueToKey).
    /// </summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column.</param>
    /// <param name="textColumnName">The text column.</param>
    /// <param name="virtualTokenCount">Prefix length per layer.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="learningRate">Peak learning rate.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated.</param>
    public static PrefixTuningTrainer PrefixTuning(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string textColumnName = "Text",
        int virtualTokenCount = 20,
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 1e-2,
        int maxSequenceLength = 256)
        => PrefixTuning(catalog, new PrefixTuningOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = textColumnName,
            VirtualTokenCount = virtualTokenCount,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

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
    /// <param name="labelColumnName">The Boolean label column.</param>
    /// <param name="textColumnName">The text column.</param>
    /// <param name="virtualTokenCount">Prefix length per layer.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="learningRate">Peak learning rate.</param>
    /// <param name="maxSequenceLength">Tokens per example; longer texts are truncated.</param>
    public static PrefixTuningBinaryTrainer PrefixTuning(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string modelPath,
        string labelColumnName = DefaultColumnNames.Label,
        string textColumnName = "Text",
        int virtualTokenCount = 20,
        int epochs = 3,
        int batchSize = 8,
        double learningRate = 1e-2,
        int maxSequenceLength = 256)
        => PrefixTuning(catalog, new PrefixTuningOptions
        {
            ModelPath = modelPath,
            LabelColumnName = labelColumnName,
            TextColumnName = textColumnName,
            VirtualTokenCount = virtualTokenCount,
            Epochs = epochs,
            BatchSize = batchSize,
            LearningRate = learningRate,
            MaxSequenceLength = maxSequenceLength,
        });

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
