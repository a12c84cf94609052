using Microsoft.ML.LabelTuning.Methods.Gpta;

namespace Microsoft.ML.LabelTuning.Tests.Methods.Gpta;

[TestClass]
public sealed class PrefixReplyParserTests
{
    private static ParsedReply Parse(string? reply, bool plain = false, DataGuard? guard = null, ISet<string>? tried = null)
        => PrefixReplyParser.Parse(reply, 8000, 200, plain, guard ?? new DataGuard(), tried ?? new HashSet<string>());

    [TestMethod]
    public void ReadsAJsonArrayInsideProseOrACodeFence()
    {
        var parsed = Parse("Here are my ideas:\n```json\n[\"Classify the tone:\", \"  'Is it positive?'  \"]\n```\nGood luck [really].");
        CollectionAssert.AreEqual(new[] { "Classify the tone:", "Is it positive?" }, parsed.Candidates.ToArray());
        Assert.IsNull(parsed.Failure);
    }

    [TestMethod]
    public void ReadsANumberedOrBulletedList()
    {
        var parsed = Parse("Options:\n1. Decide the sentiment.\n2) \"Judge the review's tone.\"\n- Read carefully:");
        CollectionAssert.AreEqual(new[] { "Decide the sentiment.", "Judge the review's tone.", "Read carefully:" }, parsed.Candidates.ToArray());
    }

    [TestMethod]
    public void PlainLinesCountOnlyWhenAllowed()
    {
        Assert.IsNotNull(Parse("Decide the sentiment\nJudge the tone").Failure);
        CollectionAssert.AreEqual(new[] { "Decide the sentiment", "Judge the tone" }, Parse("Decide the sentiment\nJudge the tone", plain: true).Candidates.ToArray());
    }

    [TestMethod]
    [DataRow(null, "empty")]
    [DataRow("", "empty")]
    [DataRow("I'm sorry, I can't help with that request.", "refusal")]
    [DataRow("{\"prefixes\": 3}", "malformed")]
    [DataRow("[1, 2, 3]", "malformed")]
    public void UnusableRepliesSayWhy(string? reply, string reason)
        => StringAssert.Contains(Parse(reply).Failure, reason);

    [TestMethod]
    public void CandidatesThatQuoteTheDataOrWereTriedAreDropped()
    {
        var guard = new DataGuard();
        guard.AddRange(["An utterly Forgettable Sequel with no heart at all."]);
        var parsed = Parse("""["Rate this: an utterly forgettable sequel?", "Old one", "New one"]""", guard: guard, tried: new HashSet<string> { "Old one" });
        CollectionAssert.AreEqual(new[] { "New one" }, parsed.Candidates.ToArray());
        Assert.AreEqual(2, parsed.Rejected.Count);
        StringAssert.Contains(parsed.Rejected[0].Reason, "shares 20+ characters");
        StringAssert.Contains(parsed.Rejected[0].Candidate, "withheld");
        Assert.AreEqual("already tried", parsed.Rejected[1].Reason);
    }

    [TestMethod]
    public void TheGuardFindsEverySharedTwentyCharacterWindowAndNothingShorter()
    {
        var guard = new DataGuard();
        guard.AddRange(["0123456789abcdefghijKLMNOP", "short"]);
        Assert.IsTrue(guard.Leaks("xx0123456789ABCDEFGHIJyy"), "case-folded match");
        Assert.IsTrue(guard.Leaks("6789abcdefghijKLMNOP"));
        Assert.IsFalse(guard.Leaks("789abcdefghijKLMNOP"), "19 characters are allowed");
        Assert.IsFalse(guard.Leaks("short"));
        Assert.IsFalse(guard.Leaks(null));
    }
}
