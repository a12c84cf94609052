using Microsoft.Extensions.AI;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>
/// GPTA (Liu and Zhang 2024): a chat model writes a text prefix for a label-tuning trainer. Each round the chat
/// model proposes prefixes from the task description and class names; the inner trainer trains briefly with each;
/// each is scored on the validation set; only aggregate feedback goes back to the chat model, which revises. The
/// best prefix wins, and the final model is the inner trainer's ordinary transformer with that prefix saved in it.
/// No training or validation text is ever sent to the chat model.
/// </summary>
/// <typeparam name="TTransformer">The inner trainer's transformer.</typeparam>
public abstract class LlmPrefixAssistantTrainerBase<TTransformer> : IEstimator<TTransformer>
    where TTransformer : LabelTuningTransformerBase
{
    private readonly IHostEnvironment _env;
    private readonly LabelTuningTrainerBase<TTransformer> _inner;
    private readonly IChatClient _chatClient;
    private readonly LlmPrefixAssistantOptions _options;

    private protected LlmPrefixAssistantTrainerBase(IHostEnvironment env, LabelTuningTrainerBase<TTransformer> inner, IChatClient chatClient, LlmPrefixAssistantOptions options)
    {
        _env = env ?? throw new ArgumentNullException(nameof(env));
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        _chatClient = chatClient ?? throw new ArgumentNullException(nameof(chatClient));
        _options = options ?? throw new ArgumentNullException(nameof(options));
        options.Validate();
        if (options.ValidationSet is null && inner.SharedOptions.ValidationSet is null)
        {
            throw new ArgumentException("GPTA scores each prefix on validation data: set LlmPrefixAssistantOptions.ValidationSet or the inner trainer's ValidationSet.", nameof(options));
        }
    }

    /// <summary>Gets what the last <see cref="Fit"/> searched and found; null before the first fit.</summary>
    public PrefixSearchResult? LastSearch { get; private set; }

    private protected abstract LabelKind Kind { get; }

    /// <summary>Searches for the best prefix and returns the inner trainer's model trained with it.</summary>
    /// <param name="input">The training data.</param>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var shared = _inner.SharedOptions;
        var validation = _options.ValidationSet ?? shared.ValidationSet!;
        var host = _env.Register("LabelTuning.Gpta");
        using var channel = host.Start("Prefix search");

        var validRows = ReadLabeled(validation, shared).Where(r => r.Label >= 0).ToList();
        if (validRows.Count == 0)
        {
            throw new ArgumentException($"The validation set has no rows with a label in column '{shared.LabelColumnName}'; GPTA cannot score prefixes.", nameof(input));
        }

        var classNames = ClassNames(input.Schema, shared);
        var guard = new DataGuard();
        foreach (var view in new[] { input, validation })
        {
            guard.AddRange(ColumnReader.ReadTexts(view, shared.TextColumnName, shared.SecondTextColumnName).SelectMany(t => new[] { t.Text, t.SecondText }));
        }

        var transcript = new PrefixTranscript(_options.TranscriptPath);
        channel.Info($"GPTA: {_options.Rounds} round(s) of {_options.CandidatesPerRound} candidate(s); transcript at {transcript.Path}");
        var assistant = new LlmPrefixAssistant(_chatClient, _options, classNames, guard, transcript);
        var inputs = validRows.Select(r => r.Input).ToList();
        var truth = validRows.Select(r => r.Label).ToList();
        using var linked = shared.CancellationToken.CanBeCanceled && _options.CancellationToken.CanBeCanceled
            ? CancellationTokenSource.CreateLinkedTokenSource(shared.CancellationToken, _options.CancellationToken)
            : null;
        var token = linked?.Token ?? (shared.CancellationToken.CanBeCanceled ? shared.CancellationToken : _options.CancellationToken);

        (TTransformer Model, PrefixEvaluation Evaluation) TrainAndEvaluate(string? prefix)
        {
            var model = _inner.FitWith(input, o =>
            {
                var copy = o.WithTextPrefix(prefix);
                copy.Epochs = _options.CandidateEpochs ?? o.Epochs;
                copy.CheckpointFolder = null; // candidates differ only in prefix: never resume one from another's checkpoint
                copy.CancellationToken = token;
                return copy;
            });
            try
            {
                return (model, Evaluate(model, inputs, truth));
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }

        var (bestModel, result) = PrefixSearch.Run<TTransformer>(assistant, _options, shared.TextPrefix, TrainAndEvaluate, transcript);
        LastSearch = result;
        channel.Info($"GPTA: best prefix {(result.BestPrefix is null ? "(none)" : $"\"{result.BestPrefix}\"")} scored {result.BestScore:F4} of {result.Candidates.Count} candidate(s)");
        // Retraining is only needed when the candidates trained for fewer epochs than the inner trainer asks for.
        var briefer = _options.CandidateEpochs is { } candidateEpochs && candidateEpochs != shared.Epochs;
        if (bestModel is not null && (!_options.RetrainBest || !briefer))
        {
            return bestModel;
        }

        bestModel?.Dispose();
        return _inner.FitWith(input, o =>
        {
            var copy = o.WithTextPrefix(result.BestPrefix);
            copy.CancellationToken = token;
            return copy;
        });
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema) => _inner.GetOutputSchema(inputSchema);

    private List<(TextInput Input, int Label)> ReadLabeled(IDataView data, LabelTuningOptions shared)
        => Kind == LabelKind.Key
            ? ColumnReader.ReadKeyLabeled(data, shared.TextColumnName, shared.SecondTextColumnName, shared.LabelColumnName)
            : ColumnReader.ReadBooleanLabeled(data, shared.TextColumnName, shared.SecondTextColumnName, shared.LabelColumnName);

    private IReadOnlyList<string> ClassNames(DataViewSchema schema, LabelTuningOptions shared)
    {
        var names = Kind == LabelKind.Key ? ColumnReader.RequireKeyLabel(schema, shared.LabelColumnName).Names : ["False", "True"];
        if (Kind == LabelKind.Boolean)
        {
            ColumnReader.RequireBooleanLabel(schema, shared.LabelColumnName);
        }

        if (_options.ClassNames is { } given)
        {
            if (given.Count != names.Count)
            {
                throw new ArgumentException(
                    $"LlmPrefixAssistantOptions.ClassNames has {given.Count} name(s) but column '{shared.LabelColumnName}' has {names.Count} class(es).", nameof(schema));
            }

            return given;
        }

        return names;
    }

    private static PrefixEvaluation Evaluate(TTransformer model, IReadOnlyList<TextInput> inputs, IReadOnlyList<int> truth)
    {
        var probabilities = model.Runtime.PredictProbabilities(inputs);
        var predicted = probabilities.Select(p => Array.IndexOf(p, p.Max())).ToList();
        return PrefixEvaluation.From(truth, predicted, model.Runtime.ClassCount);
    }
}

/// <summary>
/// GPTA over a multiclass label-tuning trainer. Reached as
/// <c>mlContext.MulticlassClassification.Trainers.WithLlmPrefixAssistant(innerTrainer, chatClient, options)</c>.
/// </summary>
public sealed class LlmPrefixAssistantTrainer : LlmPrefixAssistantTrainerBase<LabelTuningMulticlassTransformer>
{
    internal LlmPrefixAssistantTrainer(IHostEnvironment env, MulticlassLabelTuningTrainer inner, IChatClient chatClient, LlmPrefixAssistantOptions options)
        : base(env, inner, chatClient, options)
    {
    }

    private protected override LabelKind Kind => LabelKind.Key;
}

/// <summary>
/// GPTA over a binary label-tuning trainer. Reached as
/// <c>mlContext.BinaryClassification.Trainers.WithLlmPrefixAssistant(innerTrainer, chatClient, options)</c>.
/// </summary>
public sealed class LlmPrefixAssistantBinaryTrainer : LlmPrefixAssistantTrainerBase<LabelTuningBinaryTransformer>
{
    internal LlmPrefixAssistantBinaryTrainer(IHostEnvironment env, BinaryLabelTuningTrainer inner, IChatClient chatClient, LlmPrefixAssistantOptions options)
        : base(env, inner, chatClient, options)
    {
    }

    private protected override LabelKind Kind => LabelKind.Boolean;
}
