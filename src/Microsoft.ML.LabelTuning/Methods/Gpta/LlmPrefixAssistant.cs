using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>
/// GPTA's side of the conversation with the chat model: it asks for candidate prefixes, turns validation results into
/// the "dialogue gradient" (aggregate feedback only: scores, per-class recall, the confusion matrix, the prefixes
/// tried), checks and retries replies, and logs every exchange. Every outgoing message is checked against the data
/// guard before it is sent.
/// </summary>
internal sealed class LlmPrefixAssistant
{
    private static readonly JsonSerializerOptions _json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
    private readonly IChatClient _client;
    private readonly LlmPrefixAssistantOptions _options;
    private readonly IReadOnlyList<string> _classNames;
    private readonly DataGuard _guard;
    private readonly PrefixTranscript _transcript;
    private readonly ChatMessage _system;
    private readonly List<(ChatMessage Request, ChatMessage Answer)> _exchanges = [];

    public LlmPrefixAssistant(IChatClient client, LlmPrefixAssistantOptions options, IReadOnlyList<string> classNames, DataGuard guard, PrefixTranscript transcript)
    {
        _client = client;
        _options = options;
        _classNames = classNames;
        _guard = guard;
        _transcript = transcript;
        _system = new ChatMessage(ChatRole.System, SystemPrompt());
        if (_guard.Leaks(_system.Text))
        {
            throw new InvalidOperationException(
                "TaskDescription or the class names share 20 or more characters with the training or validation text; GPTA never sends data to the chat model. Describe the task in your own words.");
        }
    }

    /// <summary>Gets the number of unusable replies so far.</summary>
    public int FailedReplies { get; private set; }

    /// <summary>Gets the number of candidates dropped before training so far.</summary>
    public int RejectedCandidates { get; private set; }

    /// <summary>The first request: candidates from the task alone.</summary>
    public string FirstRequest()
        => $"Write {_options.CandidatesPerRound} different prefixes for this task. Reply with only a JSON array of {_options.CandidatesPerRound} strings.";

    /// <summary>The dialogue gradient: what the last round's prefixes scored, and the request for revisions.</summary>
    public string FeedbackRequest(int round, IReadOnlyList<PrefixCandidateResult> lastRound, IReadOnlyList<PrefixCandidateResult> all, string? lastFailure)
    {
        var k = _options.CandidatesPerRound;
        var metric = MetricName;
        var text = new StringBuilder();
        if (lastRound.Count == 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"No prefix from round {round} could be tried");
            text.Append(lastFailure is null ? "." : $" ({lastFailure}).").Append('\n');
        }
        else
        {
            var count = lastRound[0].Evaluation.Count;
            text.Append(CultureInfo.InvariantCulture, $"Results of round {round} on the validation set ({count} texts, {metric} ranks the prefixes):\n");
            for (var i = 0; i < lastRound.Count; i++)
            {
                var r = lastRound[i];
                text.Append(CultureInfo.InvariantCulture, $"{i + 1}. {Quote(r.Prefix)}: {metric} {r.Score:F3}, accuracy {r.Evaluation.Accuracy:F3}\n");
            }

            var best = lastRound.MaxBy(r => r.Score)!;
            text.Append(CultureInfo.InvariantCulture, $"\nRecall per class with {Quote(best.Prefix)}: ");
            text.Append(string.Join(", ", _classNames.Select((name, c) => $"{name} {Format(best.Evaluation.Recall[c])}"))).Append('\n');
            text.Append("Confusion matrix of that prefix (rows: true class, columns: predicted class):\n");
            text.Append(ConfusionTable(best.Evaluation));
        }

        text.Append("\nAll prefixes tried so far, best first:\n");
        foreach (var r in all.OrderByDescending(r => r.Score))
        {
            text.Append(CultureInfo.InvariantCulture, $"- {metric} {r.Score:F3}: {Quote(r.Prefix)}\n");
        }

        text.Append(CultureInfo.InvariantCulture,
            $"\nWrite {k} new prefixes that could score higher, for example by helping the classes with low recall. Do not repeat a prefix that was tried. Reply with only a JSON array of {k} strings.");
        return text.ToString();
    }

    /// <summary>
    /// Sends <paramref name="request"/> (after the kept history) and returns the usable candidates, retrying up to
    /// MaxAttempts times on unusable replies; an empty list means the round is skipped.
    /// </summary>
    public IReadOnlyList<string> Propose(int round, string request, ISet<string> tried, out string? failure, CancellationToken cancellationToken)
    {
        failure = null;
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var text = failure is null
                ? request
                : $"{request}\n\nYour previous reply could not be used: {failure}. Reply with only a JSON array of {_options.CandidatesPerRound} strings, each a prefix of at most {_options.MaxPrefixLength} characters.";
            var messages = Conversation(text);
            foreach (var message in messages)
            {
                if (_guard.Leaks(message.Text))
                {
                    throw new InvalidOperationException(
                        $"GPTA was about to send the chat model a {message.Role} message that shares 20 or more characters with the training or validation text; it refuses to. This is a bug unless TaskDescription or ClassNames quote the data.");
                }
            }

            _transcript.Write("request", round, new { attempt, messages = messages.Select(m => new { role = m.Role.Value, text = m.Text }) });
            string? reply;
            try
            {
                var response = Task.Run(() => _client.GetResponseAsync(messages, _options.ChatOptions, cancellationToken), cancellationToken).GetAwaiter().GetResult();
                reply = response.Text;
                _transcript.Write("reply", round, new { attempt, text = reply, finishReason = response.FinishReason?.Value });
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                FailedReplies++;
                failure = $"the chat client failed ({ex.GetType().Name}: {ex.Message})";
                _transcript.Write("failed", round, new { attempt, reason = failure });
                continue;
            }

            var parsed = PrefixReplyParser.Parse(reply, _options.MaxReplyLength, _options.MaxPrefixLength, _options.AcceptPlainLines, _guard, tried);
            RejectedCandidates += parsed.Rejected.Count;
            foreach (var (candidate, reason) in parsed.Rejected)
            {
                _transcript.Write("rejected", round, new { attempt, candidate, reason });
            }

            if (parsed.Failure is null)
            {
                var accepted = parsed.Candidates.Take(_options.CandidatesPerRound).ToList();
                // The history keeps the accepted candidates, not the raw reply: only text that passed the guard goes back.
                _exchanges.Add((new ChatMessage(ChatRole.User, request), new ChatMessage(ChatRole.Assistant, JsonSerializer.Serialize(accepted, _json))));
                return accepted;
            }

            FailedReplies++;
            failure = parsed.Failure;
            _transcript.Write("unusable", round, new { attempt, reason = failure });
        }

        _transcript.Write("skipped", round, new { reason = failure, attempts = _options.MaxAttempts });
        return [];
    }

    private string MetricName => _options.Metric == PrefixSelectionMetric.Accuracy ? "accuracy" : "macro-F1";

    private List<ChatMessage> Conversation(string request)
    {
        var kept = _options.HistoryRounds is { } rounds ? _exchanges.Skip(Math.Max(0, _exchanges.Count - rounds)) : _exchanges;
        var messages = new List<ChatMessage> { _system };
        foreach (var (question, answer) in kept)
        {
            messages.Add(question);
            messages.Add(answer);
        }

        messages.Add(new ChatMessage(ChatRole.User, request));
        return messages;
    }

    private string SystemPrompt()
        => "You help tune a small text classifier. A fixed instruction, the prefix, is put in front of every text the classifier reads, " +
           "in training and in use; a good prefix tells the classifier what to look for. You never see the data, only aggregate scores.\n" +
           $"Task: {_options.TaskDescription.Trim()}\n" +
           $"Classes: {string.Join(", ", _classNames)}\n" +
           $"Rules: each prefix is one line of plain text of at most {_options.MaxPrefixLength} characters; do not invent example texts. " +
           "Reply with only a JSON array of strings, for example [\"First prefix.\", \"Second prefix.\"].";

    private string ConfusionTable(PrefixEvaluation evaluation)
    {
        var width = Math.Max(6, _classNames.Max(n => n.Length));
        var text = new StringBuilder();
        text.Append(new string(' ', width));
        foreach (var name in _classNames)
        {
            text.Append(' ').Append(name.PadLeft(width));
        }

        text.Append('\n');
        for (var r = 0; r < _classNames.Count; r++)
        {
            text.Append(_classNames[r].PadRight(width));
            for (var c = 0; c < _classNames.Count; c++)
            {
                text.Append(' ').Append(evaluation.ConfusionMatrix[r][c].ToString(CultureInfo.InvariantCulture).PadLeft(width));
            }

            text.Append('\n');
        }

        return text.ToString();
    }

    private static string Quote(string? prefix) => prefix is null ? "(no prefix)" : JsonSerializer.Serialize(prefix, _json);

    private static string Format(double value) => double.IsNaN(value) ? "n/a" : value.ToString("F2", CultureInfo.InvariantCulture);
}
