using Microsoft.Extensions.AI;

namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>The validation metric GPTA maximises when it compares prefixes.</summary>
public enum PrefixSelectionMetric
{
    /// <summary>The unweighted mean of the classes' F1 scores (robust to class imbalance).</summary>
    MacroF1,

    /// <summary>The fraction of validation rows classified correctly.</summary>
    Accuracy,
}

/// <summary>
/// Options of GPTA's LLM prefix assistant: what the assistant is told about the task, its budgets, how replies are
/// checked, and where the conversation is logged. The assistant never receives training or validation text.
/// </summary>
public sealed class LlmPrefixAssistantOptions
{
    /// <summary>
    /// What the classifier does, in plain words (e.g. "Decide whether a movie review is positive or negative."). Sent to
    /// the chat model, so it must not quote the data. Required.
    /// </summary>
    public string TaskDescription { get; set; } = string.Empty;

    /// <summary>Class names to show the chat model, in key order; null uses the label column's key values ("False"/"True" for binary). Default null.</summary>
    public IReadOnlyList<string>? ClassNames { get; set; }

    /// <summary>Data each candidate is scored on; null uses the inner trainer's ValidationSet (one of them is required). Default null.</summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>Rounds of proposal and feedback (the first proposes from the task alone). Positive. Default 3.</summary>
    public int Rounds { get; set; } = 3;

    /// <summary>Prefixes asked for in each round. 1 to 20. Default 3.</summary>
    public int CandidatesPerRound { get; set; } = 3;

    /// <summary>Wall-clock budget for the search; no new candidate starts after it. Null for none. Default null.</summary>
    public TimeSpan? TimeBudget { get; set; }

    /// <summary>Epochs each candidate trains for (brief training); null uses the inner trainer's Epochs. Positive. Default 1.</summary>
    public int? CandidateEpochs { get; set; } = 1;

    /// <summary>Also score the inner trainer's own prefix (usually none) as a baseline the assistant has to beat. Default true.</summary>
    public bool IncludeBaseline { get; set; } = true;

    /// <summary>
    /// When true, the final model retrains with the best prefix for the inner trainer's full Epochs; when false, the
    /// best candidate's briefly trained model is returned. Default true.
    /// </summary>
    public bool RetrainBest { get; set; } = true;

    /// <summary>The metric that ranks prefixes. Default <see cref="PrefixSelectionMetric.MacroF1"/>.</summary>
    public PrefixSelectionMetric Metric { get; set; } = PrefixSelectionMetric.MacroF1;

    /// <summary>Longest accepted prefix, in characters. 1 to 2000. Default 200.</summary>
    public int MaxPrefixLength { get; set; } = 200;

    /// <summary>Longest accepted reply, in characters; longer replies are rejected unread. Positive. Default 8000.</summary>
    public int MaxReplyLength { get; set; } = 8000;

    /// <summary>Requests per round before the round's candidates are skipped (malformed, empty, over-long or refused replies are retried). Positive. Default 3.</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>
    /// Earlier rounds kept in the conversation (each is the request and the accepted candidates); null keeps them
    /// all. Every feedback message lists all prefixes tried and their scores, so 0 loses nothing but the dialogue
    /// form, and suits models with a short context. Non-negative. Default null.
    /// </summary>
    public int? HistoryRounds { get; set; }

    /// <summary>
    /// Accept plain lines as candidates when a reply has no JSON array and no numbered list (for base models that
    /// do not follow the format). Default false.
    /// </summary>
    public bool AcceptPlainLines { get; set; }

    /// <summary>Options passed with every chat request (temperature, token limit, seed); null sends none. Default null.</summary>
    public ChatOptions? ChatOptions { get; set; }

    /// <summary>
    /// JSON Lines file every exchange is appended to (requests, replies, rejections, scores); null writes to a new
    /// file under the temp folder, whose path <see cref="PrefixSearchResult.TranscriptPath"/> gives. Default null.
    /// </summary>
    public string? TranscriptPath { get; set; }

    /// <summary>Receives each candidate's result as soon as it is scored. Default null.</summary>
    public IProgress<PrefixCandidateResult>? Progress { get; set; }

    /// <summary>Stops the search (and the training in progress) at the next step. Default none.</summary>
    public CancellationToken CancellationToken { get; set; }

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(TaskDescription))
        {
            throw new ArgumentException("TaskDescription must say what the classifier does; the assistant writes prefixes from it.", nameof(TaskDescription));
        }

        Require(Rounds > 0, nameof(Rounds), Rounds, "must be positive");
        Require(CandidatesPerRound is >= 1 and <= 20, nameof(CandidatesPerRound), CandidatesPerRound, "must be between 1 and 20");
        Require(CandidateEpochs is null or > 0, nameof(CandidateEpochs), CandidateEpochs ?? 0, "must be positive or null");
        Require(MaxPrefixLength is >= 1 and <= 2000, nameof(MaxPrefixLength), MaxPrefixLength, "must be between 1 and 2000");
        Require(MaxReplyLength > 0, nameof(MaxReplyLength), MaxReplyLength, "must be positive");
        Require(MaxAttempts > 0, nameof(MaxAttempts), MaxAttempts, "must be positive");
        Require(HistoryRounds is null or >= 0, nameof(HistoryRounds), HistoryRounds ?? 0, "must be non-negative or null");
        if (TimeBudget is { } budget && budget <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(TimeBudget), budget, $"TimeBudget must be positive or null but is {budget}.");
        }

        if (ClassNames is not null && ClassNames.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException("ClassNames must not contain empty names.", nameof(ClassNames));
        }
    }

    private static void Require(bool condition, string name, object value, string rule)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} {rule} but is {value}.");
        }
    }
}
