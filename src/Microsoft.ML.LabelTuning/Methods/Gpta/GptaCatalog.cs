using Microsoft.Extensions.AI;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.Gpta;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning;

/// <summary>
/// GPTA: a chat model writes the text prefix of any label-tuning trainer, from aggregate validation feedback only.
/// Like ML.NET's <c>OneVersusAll(binaryEstimator)</c>, it wraps an inner trainer and returns that trainer's transformer.
/// </summary>
public static class GptaCatalog
{
    /// <summary>GPTA around a multiclass label-tuning trainer, with the common settings.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="innerTrainer">Any multiclass label-tuning trainer (LS-LLaMA, prompt tuning, prefix tuning, L-Tuning); its options are not modified.</param>
    /// <param name="chatClient">The chat model that writes prefixes, e.g. a <see cref="Generation.LlamaChatClient"/>.</param>
    /// <param name="taskDescription">What the classifier does, in your own words (never quote the data).</param>
    /// <param name="validationSet">The data prefixes are scored on.</param>
    /// <param name="rounds">Rounds of proposal and feedback; null keeps the options' default.</param>
    /// <param name="candidatesPerRound">Prefixes asked for per round; null keeps the options' default.</param>
    public static LlmPrefixAssistantTrainer WithLlmPrefixAssistant(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        MulticlassLabelTuningTrainer innerTrainer,
        IChatClient chatClient,
        string taskDescription,
        IDataView validationSet,
        int? rounds = null,
        int? candidatesPerRound = null)
        => WithLlmPrefixAssistant(catalog, innerTrainer, chatClient, CommonOptions(taskDescription, validationSet, rounds, candidatesPerRound));

    /// <summary>GPTA around a multiclass label-tuning trainer, with every option.</summary>
    /// <param name="catalog">The multiclass trainers catalog.</param>
    /// <param name="innerTrainer">Any multiclass label-tuning trainer; its options are not modified.</param>
    /// <param name="chatClient">The chat model that writes prefixes.</param>
    /// <param name="options">The assistant's options; validated here and not modified.</param>
    public static LlmPrefixAssistantTrainer WithLlmPrefixAssistant(
        this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        MulticlassLabelTuningTrainer innerTrainer,
        IChatClient chatClient,
        LlmPrefixAssistantOptions options)
        => new(Env(catalog), innerTrainer, chatClient, options);

    /// <summary>GPTA around a binary label-tuning trainer, with the common settings.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="innerTrainer">Any binary label-tuning trainer; its options are not modified.</param>
    /// <param name="chatClient">The chat model that writes prefixes.</param>
    /// <param name="taskDescription">What the classifier does, in your own words (never quote the data).</param>
    /// <param name="validationSet">The data prefixes are scored on.</param>
    /// <param name="rounds">Rounds of proposal and feedback; null keeps the options' default.</param>
    /// <param name="candidatesPerRound">Prefixes asked for per round; null keeps the options' default.</param>
    public static LlmPrefixAssistantBinaryTrainer WithLlmPrefixAssistant(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        BinaryLabelTuningTrainer innerTrainer,
        IChatClient chatClient,
        string taskDescription,
        IDataView validationSet,
        int? rounds = null,
        int? candidatesPerRound = null)
        => WithLlmPrefixAssistant(catalog, innerTrainer, chatClient, CommonOptions(taskDescription, validationSet, rounds, candidatesPerRound));

    /// <summary>GPTA around a binary label-tuning trainer, with every option.</summary>
    /// <param name="catalog">The binary trainers catalog.</param>
    /// <param name="innerTrainer">Any binary label-tuning trainer; its options are not modified.</param>
    /// <param name="chatClient">The chat model that writes prefixes.</param>
    /// <param name="options">The assistant's options; validated here and not modified.</param>
    public static LlmPrefixAssistantBinaryTrainer WithLlmPrefixAssistant(
        this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        BinaryLabelTuningTrainer innerTrainer,
        IChatClient chatClient,
        LlmPrefixAssistantOptions options)
        => new(Env(catalog), innerTrainer, chatClient, options);

    private static LlmPrefixAssistantOptions CommonOptions(string taskDescription, IDataView validationSet, int? rounds, int? candidatesPerRound)
    {
        var options = new LlmPrefixAssistantOptions { TaskDescription = taskDescription, ValidationSet = validationSet };
        options.Rounds = rounds ?? options.Rounds;
        options.CandidatesPerRound = candidatesPerRound ?? options.CandidatesPerRound;
        return options;
    }

    private static IHostEnvironment Env(TrainCatalogBase.CatalogInstantiatorBase catalog) => catalog.GetEnvironment();
}
