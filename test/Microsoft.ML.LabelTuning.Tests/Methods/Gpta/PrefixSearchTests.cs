using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.ML.LabelTuning.Methods.Gpta;

namespace Microsoft.ML.LabelTuning.Tests.Methods.Gpta;

/// <summary>GPTA's loop driven by a scripted chat client and a fake trainer whose scores are known in advance.</summary>
[TestClass]
public sealed class PrefixSearchTests
{
    private static readonly string[] _classes = ["positive", "negative"];
    private string _transcript = string.Empty;

    [TestInitialize]
    public void Setup() => _transcript = Path.Combine(Path.GetTempPath(), $"gpta-test-{Guid.NewGuid():N}.jsonl");

    [TestCleanup]
    public void Cleanup()
    {
        if (File.Exists(_transcript))
        {
            File.Delete(_transcript);
        }
    }

    [TestMethod]
    public void TheBestPrefixWinsAndEveryOtherModelIsDisposed()
    {
        var chat = new ScriptedChatClient("""["Prefix A", "Prefix B", "Prefix C"]""", """Here you go: ["Prefix D", "Prefix E"]""");
        var scores = new Dictionary<string, double> { ["(none)"] = 0.5, ["Prefix A"] = 0.6, ["Prefix B"] = 0.9, ["Prefix C"] = 0.7, ["Prefix D"] = 0.8, ["Prefix E"] = 0.85 };
        var (best, result, models) = Search(chat, Options(rounds: 2), scores);

        Assert.AreEqual("Prefix B", result.BestPrefix);
        Assert.AreEqual(0.9, result.BestScore, 1e-12);
        Assert.AreSame(models.Single(m => m.Prefix == "Prefix B"), best);
        Assert.IsFalse(best!.Disposed);
        Assert.IsTrue(models.Where(m => m != best).All(m => m.Disposed), "every losing model is disposed");
        CollectionAssert.AreEqual(new string?[] { null, "Prefix A", "Prefix B", "Prefix C", "Prefix D", "Prefix E" }, result.Candidates.Select(c => c.Prefix).ToArray());
        CollectionAssert.AreEqual(new[] { 0, 1, 1, 1, 2, 2 }, result.Candidates.Select(c => c.Round).ToArray());
        Assert.AreEqual(2, result.RoundsCompleted);
        Assert.AreEqual(0, result.FailedReplies);
    }

    [TestMethod]
    public void FeedbackArrivesInTheNextPrompt()
    {
        var chat = new ScriptedChatClient("""["Prefix A", "Prefix B"]""", """["Prefix C"]""");
        var scores = new Dictionary<string, double> { ["(none)"] = 0.4, ["Prefix A"] = 0.55, ["Prefix B"] = 0.75, ["Prefix C"] = 0.6 };
        var (_, result, _) = Search(chat, Options(rounds: 2, candidates: 2), scores);

        Assert.AreEqual(2, chat.Requests.Count);
        var system = chat.Requests[0][0];
        Assert.AreEqual(ChatRole.System, system.Role);
        StringAssert.Contains(system.Text, "Decide whether a review likes the film.");
        StringAssert.Contains(system.Text, "positive, negative");
        Assert.IsFalse(chat.LastUserText(0).Contains("0.750"), "the first request has no feedback yet");

        var feedback = chat.LastUserText(1);
        StringAssert.Contains(feedback, "1. \"Prefix A\": macro-F1 0.550");
        StringAssert.Contains(feedback, "2. \"Prefix B\": macro-F1 0.750");
        StringAssert.Contains(feedback, "Recall per class with \"Prefix B\": positive 0.75, negative 0.75");
        StringAssert.Contains(feedback, "Confusion matrix");
        StringAssert.Contains(feedback, "(no prefix)");
        var bestFirst = feedback.IndexOf("- macro-F1 0.750: \"Prefix B\"", StringComparison.Ordinal);
        var baseline = feedback.IndexOf("- macro-F1 0.400: (no prefix)", StringComparison.Ordinal);
        Assert.IsTrue(bestFirst > 0 && baseline > bestFirst, "all prefixes tried, best first");

        // The dialogue keeps the earlier exchange: request, then the accepted candidates as the assistant's turn.
        var second = chat.Requests[1];
        Assert.AreEqual(4, second.Count);
        Assert.AreEqual(ChatRole.Assistant, second[2].Role);
        CollectionAssert.AreEqual(new[] { "Prefix A", "Prefix B" }, JsonSerializer.Deserialize<string[]>(second[2].Text));
        Assert.AreEqual("Prefix B", result.BestPrefix);
    }

    [TestMethod]
    public void HistoryRoundsZeroSendsOnlyTheSystemPromptAndTheLatestFeedback()
    {
        var chat = new ScriptedChatClient("""["Prefix A"]""", """["Prefix B"]""", """["Prefix C"]""");
        var options = Options(rounds: 3, candidates: 1);
        options.HistoryRounds = 0;
        var (_, result, _) = Search(chat, options, new Dictionary<string, double> { ["(none)"] = 0.1, ["Prefix A"] = 0.2, ["Prefix B"] = 0.3, ["Prefix C"] = 0.4 });
        Assert.IsTrue(chat.Requests.All(r => r.Count == 2));
        StringAssert.Contains(chat.LastUserText(2), "\"Prefix A\"", "earlier prefixes still reach the model through the feedback list");
        Assert.AreEqual("Prefix C", result.BestPrefix);
    }

    [TestMethod]
    public void MalformedEmptyAndRefusedRepliesAreRetriedThenTheRoundIsSkipped()
    {
        var chat = new ScriptedChatClient(
            "Sure! I would suggest telling the model to focus on tone.", // malformed
            "   ",                                                    // empty
            "I'm sorry, but I cannot help with that.",                // refusal: attempts exhausted, round 1 skipped
            """["Prefix A"]""");                                      // round 2 works
        var options = Options(rounds: 2, candidates: 1);
        var (_, result, _) = Search(chat, options, new Dictionary<string, double> { ["(none)"] = 0.5, ["Prefix A"] = 0.7 });

        Assert.AreEqual(4, chat.Requests.Count);
        Assert.AreEqual(3, result.FailedReplies);
        StringAssert.Contains(chat.LastUserText(1), "could not be used: the reply was malformed");
        StringAssert.Contains(chat.LastUserText(2), "could not be used: the reply was empty");
        StringAssert.Contains(chat.LastUserText(3), "No prefix from round 1 could be tried (the reply was a refusal)");
        CollectionAssert.AreEqual(new string?[] { null, "Prefix A" }, result.Candidates.Select(c => c.Prefix).ToArray());
        Assert.AreEqual("Prefix A", result.BestPrefix);

        var events = File.ReadAllLines(_transcript).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("event").GetString()).ToList();
        Assert.AreEqual(3, events.Count(e => e == "unusable"));
        Assert.AreEqual(1, events.Count(e => e == "skipped"));
        Assert.AreEqual(4, events.Count(e => e == "request"));
        Assert.AreEqual(4, events.Count(e => e == "reply"));
        Assert.AreEqual("result", events[^1]);
    }

    [TestMethod]
    public void OverLongRepliesAndBadCandidatesAreSkipped()
    {
        var chat = new ScriptedChatClient(
            "[\"" + new string('x', 9000) + "\"]",
            $$"""["", "{{new string('y', 250)}}", "I cannot write that.", "Prefix A", "Prefix A", "the movie was really very good"]""");
        var options = Options(rounds: 1, candidates: 5);
        var guard = new DataGuard();
        guard.AddRange(["so the movie was really very good and"]);
        var (_, result, _) = Search(chat, options, new Dictionary<string, double> { ["(none)"] = 0.5, ["Prefix A"] = 0.6 }, guard);

        StringAssert.Contains(chat.LastUserText(1), "the reply was over-long");
        CollectionAssert.AreEqual(new string?[] { null, "Prefix A" }, result.Candidates.Select(c => c.Prefix).ToArray());
        Assert.AreEqual(5, result.RejectedCandidates, "empty, too long, refusal, duplicate, quotes the data");
        var rejected = File.ReadAllLines(_transcript).Where(l => l.Contains("\"event\":\"rejected\"", StringComparison.Ordinal)).ToList();
        Assert.AreEqual(5, rejected.Count);
        Assert.IsFalse(rejected.Any(l => l.Contains("the movie was really very good", StringComparison.Ordinal)), "a candidate quoting the data is not echoed in the rejection log");
    }

    [TestMethod]
    public void AFailingChatClientIsRetried()
    {
        var calls = 0;
        var chat = new ScriptedChatClient(new Func<string>[]
        {
            () => throw new HttpRequestException("connection reset"),
            () => { calls++; return """["Prefix A"]"""; },
        });
        var (_, result, _) = Search(chat, Options(rounds: 1, candidates: 1), new Dictionary<string, double> { ["(none)"] = 0.5, ["Prefix A"] = 0.6 });
        Assert.AreEqual(1, calls);
        Assert.AreEqual(1, result.FailedReplies);
        StringAssert.Contains(chat.LastUserText(1), "the chat client failed (HttpRequestException: connection reset)");
        Assert.AreEqual("Prefix A", result.BestPrefix);
    }

    [TestMethod]
    public void TheTimeBudgetStopsNewCandidates()
    {
        var chat = new ScriptedChatClient("""["Prefix A", "Prefix B"]""");
        var options = Options(rounds: 3, candidates: 2);
        options.TimeBudget = TimeSpan.FromMilliseconds(50);
        var (_, result, _) = Search(chat, options, new Dictionary<string, double> { ["(none)"] = 0.5, ["Prefix A"] = 0.6, ["Prefix B"] = 0.7 }, delay: TimeSpan.FromMilliseconds(80));
        Assert.IsTrue(result.StoppedByTimeBudget);
        Assert.AreEqual(1, result.Candidates.Count, "only the baseline ran before the budget was spent");
        Assert.AreEqual(0, chat.Requests.Count);
        Assert.IsNull(result.BestPrefix);
    }

    [TestMethod]
    public void AccuracyCanRankInsteadOfMacroF1()
    {
        var evaluation = PrefixEvaluation.From([0, 0, 0, 1], [0, 0, 0, 0], 2);
        Assert.AreEqual(0.75, evaluation.Accuracy, 1e-12);
        Assert.AreEqual((6.0 / 7.0 + 0) / 2, evaluation.MacroF1, 1e-12);
        CollectionAssert.AreEqual(new[] { 1.0, 0.0 }, evaluation.Recall.ToArray());
        Assert.AreEqual(3, evaluation.ConfusionMatrix[0][0]);
        Assert.AreEqual(1, evaluation.ConfusionMatrix[1][0]);
    }

    [TestMethod]
    public void InvalidOptionsAreRejected()
    {
        Assert.ThrowsExactly<ArgumentException>(() => new LlmPrefixAssistantOptions().Validate());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LlmPrefixAssistantOptions { TaskDescription = "t", Rounds = 0 }.Validate());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LlmPrefixAssistantOptions { TaskDescription = "t", CandidatesPerRound = 21 }.Validate());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LlmPrefixAssistantOptions { TaskDescription = "t", TimeBudget = TimeSpan.Zero }.Validate());
    }

    private LlmPrefixAssistantOptions Options(int rounds = 2, int candidates = 3) => new()
    {
        TaskDescription = "Decide whether a review likes the film.",
        Rounds = rounds,
        CandidatesPerRound = candidates,
        TranscriptPath = _transcript,
    };

    private static (FakeModel? Best, PrefixSearchResult Result, List<FakeModel> Models) Search(
        ScriptedChatClient chat, LlmPrefixAssistantOptions options, Dictionary<string, double> scores, DataGuard? guard = null, TimeSpan? delay = null)
    {
        options.Validate();
        var transcript = new PrefixTranscript(options.TranscriptPath);
        var assistant = new LlmPrefixAssistant(chat, options, _classes, guard ?? new DataGuard(), transcript);
        var models = new List<FakeModel>();
        var (best, result) = PrefixSearch.Run<FakeModel>(assistant, options, null, prefix =>
        {
            if (delay is { } d)
            {
                Thread.Sleep(d);
            }

            var model = new FakeModel(prefix);
            models.Add(model);
            var score = scores[prefix ?? "(none)"];
            // A symmetric confusion matrix of 200 balanced rows whose macro-F1 and accuracy equal the scripted score.
            var right = (int)Math.Round(score * 100);
            var evaluation = PrefixEvaluation.From(
                Enumerable.Repeat(0, 100).Concat(Enumerable.Repeat(1, 100)).ToArray(),
                Enumerable.Repeat(0, right).Concat(Enumerable.Repeat(1, 100 - right)).Concat(Enumerable.Repeat(1, right)).Concat(Enumerable.Repeat(0, 100 - right)).ToArray(),
                2);
            return (model, evaluation);
        }, transcript);
        return (best, result, models);
    }

    private sealed class FakeModel(string? prefix) : IDisposable
    {
        public string? Prefix { get; } = prefix;

        public bool Disposed { get; private set; }

        public void Dispose() => Disposed = true;
    }
}
