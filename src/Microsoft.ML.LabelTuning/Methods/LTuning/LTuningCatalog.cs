using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>The L-Tuning trainers on <c>mlContext.MulticlassClassification.Trainers</c> and <c>mlContext.BinaryClassification.Trainers</c>.</summary>
public static class LTuningCatalog
{
    /// <summary>L-Tuning prefix: label-specific key/value prefixes made from the label texts by the frozen model.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelTexts">One text per class in key order; null uses the key values.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    public static LTuningTrainer LTuningPrefix(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        IReadOnlyList<string>? labelTexts = null,
        string? labelColumnName = null,
        string? textColumnName = null,
        int? epochs = null)
    {
        var options = LabelTuningOptions.WithDefaults<LTuningOptions>(modelPath, labelColumnName, textColumnName, epochs, null, null, null);
        options.LabelTexts = labelTexts;
        return LTuningPrefix(catalog, options);
    }

    /// <summary>L-Tuning prefix with every option.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; validated here, never modified.</param>
    public static LTuningTrainer LTuningPrefix(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, LTuningOptions options)
        => new(Env(catalog), options, LTuningVariant.Prefix);

    /// <summary>L-Tuning prompt: label-specific prompt embeddings made from the label texts by the frozen model.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="modelPath">A Hugging Face LLaMA-family model folder.</param>
    /// <param name="labelTexts">One text per class in key order; null uses the key values.</param>
    /// <param name="labelColumnName">The Key&lt;UInt32&gt; label column; null keeps the options' default.</param>
    /// <param name="textColumnName">The text column; null keeps the options' default.</param>
    /// <param name="epochs">Passes over the data; null keeps the options' default.</param>
    public static LTuningTrainer LTuningPrompt(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string modelPath,
        IReadOnlyList<string>? labelTexts = null,
        string? labelColumnName = null,
        string? textColumnName = null,
        int? epochs = null)
    {
        var options = LabelTuningOptions.WithDefaults<LTuningOptions>(modelPath, labelColumnName, textColumnName, epochs, null, null, null);
        options.LabelTexts = labelTexts;
        return LTuningPrompt(catalog, options);
    }

    /// <summary>L-Tuning prompt with every option (including <see cref="LTuningOptions.LabelPlacement"/>).</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="options">The options; validated here, never modified.</param>
    public static LTuningTrainer LTuningPrompt(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, LTuningOptions options)
        => new(Env(catalog), options, LTuningVariant.Prompt);

    /// <summary>Binary L-Tuning prefix (Boolean label; label texts for false then true).</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="options">The options.</param>
    public static LTuningBinaryTrainer LTuningPrefix(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, LTuningOptions options)
        => new(Env(catalog), options, LTuningVariant.Prefix);

    /// <summary>Binary L-Tuning prompt (Boolean label; label texts for false then true).</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="options">The options.</param>
    public static LTuningBinaryTrainer LTuningPrompt(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, LTuningOptions options)
        => new(Env(catalog), options, LTuningVariant.Prompt);

    private static IHostEnvironment Env(TrainCatalogBase.CatalogInstantiatorBase catalog) => catalog.GetEnvironment();
}
