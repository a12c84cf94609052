using System.Diagnostics;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.ML.LabelTuning.Tests.Methods.PromptTuning;

namespace Microsoft.ML.LabelTuning.Tests.Sweep;

/// <summary>End-to-end sweeps on a tiny random model and the separable toy task; each trial takes about a second.</summary>
[TestClass]
public sealed class LabelTuningExperimentTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 41);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    /// <summary>LS-LLaMA and prompt tuning at settings that learn the toy task, with a sampled learning rate around them.</summary>
    internal static LabelTuningSearchSpace FastSpace(int epochs = 8)
    {
        var space = LabelTuningSearchSpace.For(TuningMethod.LabelSupervised, TuningMethod.PromptTuning);
        space[TuningMethod.LabelSupervised].SetRange("LearningRate", 3e-3, 3e-2, init: 1e-2, logBase: true).Fix("LoraRank", 4).Fix("LoraDropout", 0.0);
        space[TuningMethod.PromptTuning].SetRange("LearningRate", 3e-2, 3e-1, init: 1e-1, logBase: true).Fix("VirtualTokenCount", 4).Fix("DecomposedRank", 0);
        return space.Fix("Epochs", epochs);
    }

    private static (MLContext Ml, LabelTuningExperiment Experiment) NewExperiment(int seed = 3, int train = 48, int validation = 30)
    {
        var ml = new MLContext(seed: 1);
        var experiment = new LabelTuningExperiment(ml, new LabelTuningExperimentSettings
        {
            ModelPath = _model,
            MaxSequenceLength = 32,
            BatchSize = 16,
            Seed = seed,
            ConfigureOptions = o => o.WarmupRatio = 0.05,
        });
        experiment.SetDataset(
            ml.Data.LoadFromEnumerable(PromptLearningTestKit.Rows(train, seed: 1)),
            ml.Data.LoadFromEnumerable(PromptLearningTestKit.Rows(validation, seed: 2)));
        return (ml, experiment);
    }

    private static string TempFolder() => Directory.CreateTempSubdirectory("lt-sweep-").FullName;

    [TestMethod]
    public async Task FindsAMethodAboveChanceAndExportsTheLeaderboard()
    {
        var (ml, experiment) = NewExperiment(train: 96, validation: 60);
        var reports = new List<SweepProgress>();
        var log = new List<string>();
        ml.Log += (_, e) =>
        {
            lock (log)
            {
                log.Add(e.Message);
            }
        };
        var result = await experiment.SetSearchSpace(FastSpace()).SetMetric(LabelTuningMetric.MacroAccuracy).SetMaxTrials(3)
            .SetProgress(new InlineProgress<SweepProgress>(reports.Add)).RunAsync();

        Console.WriteLine(result.Leaderboard.ToMarkdown());
        Assert.AreEqual(3, result.Leaderboard.Count);
        Assert.AreEqual(SweepStopReason.MaxTrials, result.StopReason);
        Assert.IsTrue(result.BestTrial.Metric > 0.6, $"best macro accuracy {result.BestTrial.Metric:F3} should beat chance (0.33) clearly");
        Assert.AreSame(result.BestTrial, result.Leaderboard[0]);
        CollectionAssert.AreEqual(new[] { "LS-LLaMA", "Prompt tuning" }, result.Leaderboard.OrderBy(t => t.Id).Take(2).Select(t => t.MethodName).ToArray(), "each method runs first at its defaults");
        foreach (var trial in result.Leaderboard)
        {
            Assert.AreEqual(TrialStatus.Completed, trial.Status, trial.ToString());
            Assert.IsTrue(trial.TrainableParameters > 0 && trial.TrainingTime > TimeSpan.Zero && trial.PeakMemoryBytes > 0, trial.ToString());
            Assert.AreEqual(8, trial.Epochs);
            Assert.AreEqual(4, trial.Metrics.Count);
        }

        // The fitted model scores with the label mapping included: string labels in, the same metric out.
        var validation = ml.Data.LoadFromEnumerable(PromptLearningTestKit.Rows(60, seed: 2));
        var metrics = ml.MulticlassClassification.Evaluate(result.Model.Transform(validation));
        Assert.AreEqual(result.BestTrial.Metric, metrics.MacroAccuracy, 1e-9);

        // Progress: trial n of N, with the best so far on end-of-trial reports and training steps in between.
        Assert.IsTrue(reports.Any(r => r.Training is not null));
        var ends = reports.Where(r => r.Finished is not null).ToList();
        CollectionAssert.AreEqual(new[] { 1, 2, 3 }, ends.Select(r => r.Trial).ToArray());
        Assert.IsTrue(ends.All(r => r.MaxTrials == 3 && r.Best is not null && r.Remaining is not null));
        StringAssert.Contains(ends[^1].ToString(), "trial 3 of 3");
        lock (log)
        {
            // The same report goes to ML.NET's log through the experiment's channel.
            Assert.IsTrue(log.Any(m => m.Contains("LabelTuningExperiment", StringComparison.Ordinal) && m.Contains("trial 3 of 3", StringComparison.Ordinal) && m.Contains("best", StringComparison.Ordinal)),
                string.Join('\n', log.Where(m => m.Contains("LabelTuningExperiment", StringComparison.Ordinal)).Take(20)));
        }

        var folder = TempFolder();
        try
        {
            result.Leaderboard.SaveCsv(Path.Combine(folder, "leaderboard.csv"));
            result.Leaderboard.SaveMarkdown(Path.Combine(folder, "leaderboard.md"));
            result.Leaderboard.SavePlot(Path.Combine(folder, "leaderboard.png"));
            var csv = File.ReadAllLines(Path.Combine(folder, "leaderboard.csv"));
            Assert.AreEqual(4, csv.Length);
            StringAssert.StartsWith(csv[0], "rank,trial,configuration,rung,method,status,metric,MacroAccuracy,MicroAccuracy,LogLoss,F1,epochs");
            Assert.AreEqual(5, File.ReadAllLines(Path.Combine(folder, "leaderboard.md")).Length);
            var png = File.ReadAllBytes(Path.Combine(folder, "leaderboard.png"));
            CollectionAssert.AreEqual(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png.Take(4).ToArray());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
            (result.Model as IDisposable)?.Dispose();
        }
    }

    [TestMethod]
    public async Task StopsAtTheTrialBudget()
    {
        var (_, experiment) = NewExperiment();
        var result = await experiment.SetSearchSpace(FastSpace(epochs: 1)).SetMaxTrials(2).RunAsync();
        Assert.AreEqual(2, result.Leaderboard.Count);
        Assert.AreEqual(2, result.TrialsTrained);
        Assert.AreEqual(SweepStopReason.MaxTrials, result.StopReason);
        (result.Model as IDisposable)?.Dispose();
    }

    [TestMethod]
    public async Task StopsAtTheTimeBudgetAndCancelsTheRunningTrial()
    {
        var (_, experiment) = NewExperiment();
        var clock = Stopwatch.StartNew();
        var result = await experiment.SetSearchSpace(FastSpace(epochs: 1)).SetMaxTrials(1000).SetTrainingTimeInSeconds(12).RunAsync();
        clock.Stop();
        Console.WriteLine($"{result.Leaderboard.Count} trials in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.AreEqual(SweepStopReason.TimeBudget, result.StopReason);
        Assert.IsTrue(result.Leaderboard.Count is >= 1 and < 1000);
        Assert.IsTrue(clock.Elapsed < TimeSpan.FromSeconds(12 + 5), $"the sweep took {clock.Elapsed.TotalSeconds:F1} s on a 12 s budget");
        (result.Model as IDisposable)?.Dispose();
    }

    [TestMethod]
    public async Task ATimeBudgetThatEndsBeforeAnyTrialThrowsTimeout()
    {
        var (_, experiment) = NewExperiment();
        await Assert.ThrowsExactlyAsync<TimeoutException>(() => experiment.SetSearchSpace(FastSpace(epochs: 200)).SetTrainingTimeInSeconds(1).RunAsync());
    }

    [TestMethod]
    public async Task ResumesAfterAnInterruptionWithoutRepeatingTrials()
    {
        var folder = TempFolder();
        try
        {
            // Interrupt during the third trial's training: two trials are recorded, the third is not.
            using var interrupt = new CancellationTokenSource();
            var (_, first) = NewExperiment();
            var firstResult = await first.SetSearchSpace(FastSpace(epochs: 2)).SetMaxTrials(4).SetCheckpointFolder(folder)
                .SetProgress(new InlineProgress<SweepProgress>(p =>
                {
                    if (p.Trial == 3 && p.Training is not null)
                    {
                        interrupt.Cancel();
                    }
                }))
                .RunAsync(interrupt.Token);
            Assert.AreEqual(SweepStopReason.Cancelled, firstResult.StopReason);
            Assert.AreEqual(2, firstResult.Leaderboard.Count);
            Assert.AreEqual(2, File.ReadAllLines(Path.Combine(folder, TrialLog.FileName)).Length);
            (firstResult.Model as IDisposable)?.Dispose();

            var started = new List<int>();
            var (ml, second) = NewExperiment();
            var result = await second.SetSearchSpace(FastSpace(epochs: 2)).SetMaxTrials(4).SetCheckpointFolder(folder)
                .SetProgress(new InlineProgress<SweepProgress>(p =>
                {
                    if (p.Training is not null && !started.Contains(p.Trial))
                    {
                        started.Add(p.Trial);
                    }
                }))
                .RunAsync();
            CollectionAssert.AreEqual(new[] { 3, 4 }, started, "only the unfinished trials train again");
            Assert.AreEqual(2, result.TrialsTrained);
            Assert.AreEqual(4, result.Leaderboard.Count);
            Assert.AreEqual(4, File.ReadAllLines(Path.Combine(folder, TrialLog.FileName)).Length);
            foreach (var before in firstResult.Leaderboard)
            {
                var after = result.Leaderboard.Single(t => t.Id == before.Id);
                Assert.IsTrue(after.FromCheckpoint);
                Assert.AreEqual(before.Metric, after.Metric);
                Assert.AreEqual(before.ParametersText, after.ParametersText);
            }

            // The best model comes back fitted, whether trained now or loaded from the checkpoint folder.
            var validation = ml.Data.LoadFromEnumerable(PromptLearningTestKit.Rows(30, seed: 2));
            Assert.AreEqual(result.BestTrial.Metric, ml.MulticlassClassification.Evaluate(result.Model.Transform(validation)).MacroAccuracy, 1e-9);
            (result.Model as IDisposable)?.Dispose();
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public async Task ContinuesPastATrialThatThrows()
    {
        var folder = TempFolder();
        try
        {
            var space = FastSpace(epochs: 2);
            space[TuningMethod.PromptTuning].Configure = _ => throw new InsufficientMemoryException("simulated out of memory");
            var (_, experiment) = NewExperiment();
            var result = await experiment.SetSearchSpace(space).SetMaxTrials(3).SetCheckpointFolder(folder).RunAsync();

            Assert.AreEqual(3, result.Leaderboard.Count);
            var failed = result.Leaderboard.Where(t => t.Status == TrialStatus.Failed).ToList();
            Assert.IsTrue(failed.Count >= 1, "the prompt-tuning trial (the second, at its defaults) fails");
            Assert.IsTrue(failed.All(t => t.Method == TuningMethod.PromptTuning && t.Error!.Contains("simulated out of memory", StringComparison.Ordinal)));
            Assert.AreEqual(2, result.Leaderboard.Single(t => t.Id == 2).Id);
            Assert.AreEqual(TrialStatus.Failed, result.Leaderboard.Single(t => t.Id == 2).Status);
            Assert.IsTrue(result.Leaderboard.Any(t => t.Id == 3), "the sweep goes on after the failure");
            Assert.AreEqual(TrialStatus.Completed, result.BestTrial.Status);
            Assert.AreSame(failed[^1], result.Leaderboard[^1], "failed trials rank last");
            StringAssert.Contains(File.ReadAllText(Path.Combine(folder, TrialLog.FileName)), "simulated out of memory");
            StringAssert.Contains(result.Leaderboard.ToMarkdown(), "failed: InsufficientMemoryException");
            (result.Model as IDisposable)?.Dispose();
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public async Task TheSameSeedGivesTheSameSweep()
    {
        static async Task<string[]> Sweep(int seed)
        {
            var (_, experiment) = NewExperiment(seed);
            var result = await experiment.SetSearchSpace(FastSpace(epochs: 2)).SetMaxTrials(3).RunAsync();
            (result.Model as IDisposable)?.Dispose();
            return result.Leaderboard.OrderBy(t => t.Id).Select(t => $"{t.MethodName} {t.ParametersText} {t.Metric:R} {t.TrainableParameters}").ToArray();
        }

        var first = await Sweep(seed: 11);
        var second = await Sweep(seed: 11);
        Console.WriteLine(string.Join('\n', first));
        CollectionAssert.AreEqual(first, second);
    }

    [TestMethod]
    public async Task SuccessiveHalvingPromotesTheBestConfigurationsToMoreEpochs()
    {
        var (_, experiment) = NewExperiment();
        var result = await experiment.SetSearchSpace(FastSpace()).SetSuccessiveHalvingTuner(minEpochs: 1, maxEpochs: 4, eta: 2).SetMaxTrials(4).RunAsync();
        Console.WriteLine(result.Leaderboard.ToMarkdown());
        var byId = result.Leaderboard.OrderBy(t => t.Id).ToList();
        CollectionAssert.AreEqual(new[] { 1, 1, 2, 4 }, byId.Select(t => t.Epochs).ToArray(), "two configurations at 1 epoch, the better at 2, then 4");
        CollectionAssert.AreEqual(new[] { 0, 0, 1, 2 }, byId.Select(t => t.Rung).ToArray());
        var winner = TrialResultRank(byId.Take(2)).ConfigurationId;
        Assert.AreEqual(winner, byId[2].ConfigurationId);
        Assert.AreEqual(winner, byId[3].ConfigurationId);
        (result.Model as IDisposable)?.Dispose();
    }

    private static TrialResult TrialResultRank(IEnumerable<TrialResult> trials) => TrialResult.Rank(trials, LabelTuningMetric.MacroAccuracy).First();
}
