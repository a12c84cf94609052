using System.Globalization;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.TestHost;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Training killed with SIGKILL in the middle of an epoch resumes from its last checkpoint, losing at most the steps
/// since that checkpoint, and ends with the scores of an uninterrupted run under the same seed, bit for bit. Training
/// runs in a child process (TestHost <c>train-checkpointed</c>) so that the kill is real: no finally block, no
/// flush, no cancellation handler runs.
/// </summary>
[TestClass]
public sealed class KillAndResumeTests
{
    private const int StepsPerEpoch = ReliabilityCommands.TrainRows / ReliabilityCommands.BatchSize; // 12
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(4);
    private static readonly Dictionary<string, string[]> _references = [];
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 11);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    /// <summary>
    /// Killed at step 17 (epoch 2 of 3, two steps after the checkpoint at step 15), the next run resumes at step 16 and
    /// ends on the reference scores. <c>ls-llama</c> uses LoRA dropout, so the dropout RNG must resume too;
    /// <c>ls-llama-best</c> validates on rotated labels, so epoch 1 is the best and the early-stopping weights must come
    /// back from the checkpoint; <c>prompt-tuning</c> is the prompt family.
    /// </summary>
    [TestMethod]
    [DataRow("ls-llama")]
    [DataRow("ls-llama-best")]
    [DataRow("prompt-tuning")]
    public void SigkillInTheMiddleOfAnEpochResumesFromTheLastCheckpointToTheUninterruptedScores(string method)
    {
        const int killAt = 17;
        var reference = Reference(method, out var referenceLines);
        using var work = new TempFolder("lt-kill-resume-");
        var checkpoints = work.Sub("checkpoints");
        var scores = work.File("scores.txt");

        using (var doomed = KillableHost.Start("train-checkpointed", method, _model, checkpoints, scores, "--pause-at-step", killAt.ToString(CultureInfo.InvariantCulture)))
        {
            doomed.WaitForLine(l => l == $"paused {killAt}", _timeout);
            doomed.Kill();
            Assert.AreEqual($"step {killAt}", doomed.Lines.Last(l => l.StartsWith("step ", StringComparison.Ordinal)));
        }

        Assert.IsFalse(File.Exists(scores), "the killed run must not have finished");
        var committed = CommittedStep(checkpoints);
        Assert.AreEqual(15, committed, "the last checkpoint before step 17 is step 15 (every 5 steps)");
        Assert.AreNotEqual(0, committed % StepsPerEpoch, "the kill must fall inside an epoch for this test to mean anything");

        // As if the kill had come between the commit of checkpoint.safetensors and the rewrite of checkpoint.json: the
        // readable copy names an older step. Resume must trust the committed file, not the copy.
        var json = Path.Combine(checkpoints, "checkpoint.json");
        var stale = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(json))!;
        stale["step"] = committed - ReliabilityCommands.CheckpointEverySteps;
        File.WriteAllText(json, stale.ToJsonString());

        var (resumedScores, resumedLines) = RunToEnd(method, checkpoints, scores);
        Assert.AreEqual($"done first-step {committed + 1}", resumedLines.Last(), "the resumed run starts right after its checkpoint: no step before it is redone");
        Assert.AreEqual(ReliabilityCommands.Epochs * StepsPerEpoch - committed, resumedLines.Count(l => l.StartsWith("step ", StringComparison.Ordinal)),
            "the resumed run runs exactly the steps after its checkpoint");
        CollectionAssert.AreEqual(reference, resumedScores, $"{method}: scores after kill and resume differ from the uninterrupted run");

        if (method == "ls-llama-best")
        {
            // The case tests the early-stopping snapshot only if a later epoch really is worse than the first.
            var losses = ValidationLosses(referenceLines);
            Assert.AreEqual(ReliabilityCommands.Epochs, losses.Count);
            Assert.IsTrue(losses.Skip(1).All(l => l > losses[0]), $"epoch 1 should be the best: validation losses {string.Join(", ", losses)}");
        }
    }

    /// <summary>
    /// Killed twice at moments the test does not choose (somewhere in a step, a save, or a checkpoint write), the run
    /// resumes from whatever checkpoint was committed, loses at most the steps since it, leaves no temporary files
    /// behind once resumed, and ends on the reference scores.
    /// </summary>
    [TestMethod]
    public void SigkillAtUnchosenMomentsResumesFromTheCommittedCheckpointToTheUninterruptedScores()
    {
        const string method = "ls-llama";
        var reference = Reference(method, out _);
        using var work = new TempFolder("lt-kill-random-");
        var checkpoints = work.Sub("checkpoints");
        var scores = work.File("scores.txt");
        var random = new Random(2024);
        long expectedFirst = 1;
        foreach (var killAfter in new[] { 6 + random.Next(4), 19 + random.Next(4) })
        {
            long lastPrinted;
            using (var doomed = KillableHost.Start("train-checkpointed", method, _model, checkpoints, scores, "--slow-ms", "15"))
            {
                doomed.WaitForLine(l => l == $"step {killAfter}", _timeout);
                doomed.Kill();
                var steps = doomed.Lines.Where(l => l.StartsWith("step ", StringComparison.Ordinal)).Select(l => long.Parse(l[5..], CultureInfo.InvariantCulture)).ToList();
                Assert.AreEqual(expectedFirst, steps[0], "each run starts right after the checkpoint the previous kill left");
                lastPrinted = steps[^1];
            }

            var committed = CommittedStep(checkpoints);
            Assert.IsTrue(committed <= lastPrinted && lastPrinted - committed <= ReliabilityCommands.CheckpointEverySteps,
                $"killed after step {lastPrinted} with the last checkpoint at step {committed}: more than {ReliabilityCommands.CheckpointEverySteps} steps lost");
            expectedFirst = committed + 1;
        }

        var (resumedScores, lines) = RunToEnd(method, checkpoints, scores);
        Assert.AreEqual($"done first-step {expectedFirst}", lines.Last());
        CollectionAssert.AreEqual(reference, resumedScores, "scores after two kills and resumes differ from the uninterrupted run");
        var leftovers = Directory.GetFiles(checkpoints, "*.tmp");
        Assert.AreEqual(0, leftovers.Length, $"temporary files left in the checkpoint folder: {string.Join(", ", leftovers)}");
    }

    /// <summary>The step of the committed checkpoint: the one the training state in checkpoint.safetensors names.</summary>
    internal static long CommittedStep(string checkpoints)
    {
        using var reader = SafeTensorsReader.Open(Path.Combine(checkpoints, "checkpoint.safetensors"));
        return long.Parse(reader.Metadata["step"], CultureInfo.InvariantCulture);
    }

    private static string[] Reference(string method, out IReadOnlyList<string> lines)
    {
        lock (_references)
        {
            if (_references.TryGetValue(method, out var cached) && _references.TryGetValue(method + "#lines", out var cachedLines))
            {
                lines = cachedLines;
                return cached;
            }

            using var work = new TempFolder("lt-kill-reference-");
            var (scores, output) = RunToEnd(method, work.Sub("checkpoints"), work.File("scores.txt"));
            Assert.AreEqual("done first-step 1", output.Last());
            _references[method] = scores;
            _references[method + "#lines"] = output.ToArray();
            lines = output;
            return scores;
        }
    }

    private static (string[] Scores, IReadOnlyList<string> Lines) RunToEnd(string method, string checkpoints, string scores)
    {
        using var host = KillableHost.Start("train-checkpointed", method, _model, checkpoints, scores);
        host.WaitForExit(_timeout);
        var values = File.ReadAllLines(scores);
        Assert.AreEqual(12, values.Length);
        Assert.IsTrue(values.Distinct().Count() > 1, "different texts should score differently");
        return (values, host.Lines);
    }

    private static List<double> ValidationLosses(IEnumerable<string> lines)
        => lines.Where(l => l.StartsWith("validation epoch ", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split(' ')[^1], CultureInfo.InvariantCulture)).ToList();
}

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempFolder(string prefix) : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory(prefix).FullName;

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A killed child may still be closing a handle; the OS temp cleaner takes it.
        }
    }
}
