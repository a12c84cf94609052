using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Sweep;

namespace Microsoft.ML.LabelTuning.Tests.Sweep;

/// <summary>The search space, the tuners and the trial log, without training anything.</summary>
[TestClass]
public sealed class SearchSpaceTests
{
    [TestMethod]
    public void TheDefaultSpaceHasEveryRegisteredMethodAndEveryRegisteredOption()
    {
        var space = LabelTuningSearchSpace.Default();
        CollectionAssert.AreEqual(TuningMethodRegistry.Registered.ToArray(), space.Methods.Select(m => m.Method).ToArray(), "registration order");
        foreach (var method in space.Methods)
        {
            var registered = TuningMethodRegistry.Get(method.Method).SearchSpace.Select(d => d.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray();
            CollectionAssert.AreEqual(registered, method.Parameters.Select(p => p.Name).ToArray(), $"{method.Method}: the descriptor's search space alone puts an option in the sweep");
            CollectionAssert.Contains(registered, "Epochs");
            CollectionAssert.Contains(registered, "LearningRate");
        }
    }

    [TestMethod]
    public void TheLearningRateRangeIsCentredOnEachMethodsDefault()
    {
        var lora = (RangeParameter)MethodSearchSpace.For(TuningMethod.LabelSupervised)["LearningRate"]!;
        var prompt = (RangeParameter)MethodSearchSpace.For(TuningMethod.PromptTuning)["LearningRate"]!;
        Assert.AreEqual(1e-4, lora.Init, 1e-12);
        Assert.AreEqual(1e-5, lora.Min, 1e-12);
        Assert.AreEqual(1e-3, lora.Max, 1e-12);
        Assert.AreEqual(3e-2, prompt.Init, 1e-12);
        Assert.IsTrue(prompt.LogBase);
        var rank = (RangeParameter)MethodSearchSpace.For(TuningMethod.LabelSupervised)["LoraRank"]!;
        Assert.IsTrue(rank.IsInteger);
        Assert.AreEqual(12, rank.Default);
        var decomposed = (ChoiceParameter)MethodSearchSpace.For(TuningMethod.PromptTuning)["DecomposedRank"]!;
        Assert.AreEqual(0, decomposed.Default, "the default trial is plain prompt tuning; DePT ranks are sampled");
    }

    [TestMethod]
    public void SampledValuesStayInRangeAndApplyToTheOptions()
    {
        var space = LabelTuningSearchSpace.For(TuningMethod.LabelSupervised, TuningMethod.PromptTuning);
        var sampler = new ConfigurationSampler(space, seed: 5);
        for (var i = 0; i < 50; i++)
        {
            var (_, method, parameters) = sampler.Next();
            var options = (Training.LabelTuningOptions)Activator.CreateInstance(MethodSearchSpace.OptionsTypeOf(method))!;
            foreach (var (name, value) in parameters)
            {
                MethodSearchSpace.Apply(options, name, value);
            }

            Assert.IsTrue(options.Epochs is >= 1 and <= 8);
            if (options is LabelSupervisedLlamaOptions lora)
            {
                Assert.IsTrue(lora.LoraRank is >= 2 and <= 64 && lora.LearningRate is >= 1e-5 and <= 1e-3, string.Join(' ', parameters));
            }
            else
            {
                var prompt = (PromptTuningOptions)options;
                Assert.IsTrue(prompt.VirtualTokenCount is >= 4 and <= 64 && prompt.DecomposedRank is 0 or 4 or 16, string.Join(' ', parameters));
            }
        }
    }

    [TestMethod]
    public void TheSeedFixesTheProposals()
    {
        static string Draw(int seed)
        {
            var sampler = new ConfigurationSampler(LabelTuningSearchSpace.Default(), seed);
            return string.Join('\n', Enumerable.Range(0, 20).Select(_ => sampler.Next()).Select(c => $"{c.Method} {TrialLog.Key(c.Method, c.Parameters)}"));
        }

        Assert.AreEqual(Draw(1), Draw(1));
        Assert.AreNotEqual(Draw(1), Draw(2));
    }

    [TestMethod]
    public void BadNamesAndValuesAreRejectedWithTheirNames()
    {
        var space = MethodSearchSpace.For(TuningMethod.PrefixTuning);
        var e = Assert.ThrowsExactly<ArgumentException>(() => space.SetRange("LoraRank", 1, 8));
        StringAssert.Contains(e.Message, "PrefixTuningOptions has no settable property 'LoraRank'");
        e = Assert.ThrowsExactly<ArgumentException>(() => space.SetChoice("Pooling", "Sideways"));
        StringAssert.Contains(e.Message, "PrefixTuningOptions.Pooling");
        e = Assert.ThrowsExactly<ArgumentException>(() => space.SetRange("LearningRate", 0, 1, logBase: true));
        StringAssert.Contains(e.Message, "log scale");
        e = Assert.ThrowsExactly<ArgumentException>(() => space.SetRange("Pooling", 0, 1));
        StringAssert.Contains(e.Message, "int or double");
        Assert.ThrowsExactly<ArgumentException>(() => LabelTuningSearchSpace.For(TuningMethod.PromptTuning, TuningMethod.PromptTuning));
    }

    [TestMethod]
    public void SuccessiveHalvingKeepsTheTopThirdAndTriplesTheEpochs()
    {
        CollectionAssert.AreEqual(new[] { 1, 3, 9 }, SuccessiveHalvingTuner.RungEpochs(1, 9, 3));
        CollectionAssert.AreEqual(new[] { 1, 3, 5 }, SuccessiveHalvingTuner.RungEpochs(1, 5, 3));
        Assert.AreEqual(13, SuccessiveHalvingTuner.BracketCost(9, 3, 3));

        var tuner = new SuccessiveHalvingTuner(LabelTuningSearchSpace.For(TuningMethod.PrefixTuning), seed: 1, minEpochs: 1, maxEpochs: 9, eta: 3, LabelTuningMetric.MacroAccuracy);
        var id = 0;
        List<TrialProposal> Rung(int count)
        {
            var proposals = Enumerable.Range(0, count).Select(_ => tuner.Propose(100)!).ToList();
            foreach (var p in proposals)
            {
                // Configuration 4 fails; otherwise a higher configuration id scores better.
                tuner.Update(new TrialResult
                {
                    Id = ++id,
                    ConfigurationId = p.ConfigurationId,
                    Rung = p.Rung,
                    Method = p.Method,
                    Parameters = p.Parameters,
                    Status = p.ConfigurationId == 4 ? TrialStatus.Failed : TrialStatus.Completed,
                    Metric = p.ConfigurationId == 4 ? double.NaN : p.ConfigurationId / 100.0,
                });
            }

            return proposals;
        }

        var first = Rung(9);
        Assert.IsTrue(first.All(p => p.Rung == 0 && (int)p.Parameters["Epochs"] == 1));
        CollectionAssert.AreEqual(Enumerable.Range(1, 9).ToArray(), first.Select(p => p.ConfigurationId).ToArray());
        var second = Rung(3);
        CollectionAssert.AreEqual(new[] { 9, 8, 7 }, second.Select(p => p.ConfigurationId).ToArray());
        Assert.IsTrue(second.All(p => p.Rung == 1 && (int)p.Parameters["Epochs"] == 3));
        Assert.AreEqual(TrialLog.Key(first[8].Method, WithoutEpochs(first[8].Parameters)), TrialLog.Key(second[0].Method, WithoutEpochs(second[0].Parameters)), "a promotion keeps its settings");
        var third = Rung(1);
        Assert.AreEqual(9, third[0].ConfigurationId);
        Assert.AreEqual(9, (int)third[0].Parameters["Epochs"]);
        var next = tuner.Propose(5)!;
        Assert.AreEqual(0, next.Rung, "a new bracket starts");
        Assert.AreEqual(10, next.ConfigurationId);
    }

    [TestMethod]
    public void TheBracketShrinksToFitTheTrialsLeft()
    {
        var tuner = new SuccessiveHalvingTuner(LabelTuningSearchSpace.For(TuningMethod.PrefixTuning), seed: 1, minEpochs: 1, maxEpochs: 9, eta: 3, LabelTuningMetric.LogLoss);
        var proposals = new List<TrialProposal> { tuner.Propose(6)! };
        for (var i = 1; i < 4; i++)
        {
            proposals.Add(tuner.Propose(6 - i)!);
        }

        // 4 + 2 + 1 = 7 > 6, so the bracket holds 3 (3 + 1 + 1 = 5); the fourth proposal is the next rung.
        CollectionAssert.AreEqual(new[] { 0, 0, 0 }, proposals.Take(3).Select(p => p.Rung).ToArray());
    }

    [TestMethod]
    public void TheTrialLogRoundTripsResultsAndTheirKeys()
    {
        var folder = Directory.CreateTempSubdirectory("lt-sweep-log-").FullName;
        try
        {
            var log = new TrialLog(folder);
            var parameters = new SortedDictionary<string, object>(StringComparer.Ordinal)
            {
                ["Epochs"] = 3, ["LearningRate"] = 1.0, ["LoraDropout"] = 0.0513, ["LoraTargets"] = "AllLinear", ["Unmasked"] = true,
            };
            var trial = new TrialResult
            {
                Id = 7, ConfigurationId = 5, Rung = 1, Method = TuningMethod.LabelSupervised, MethodName = "LS-LLaMA", Parameters = parameters,
                Status = TrialStatus.Completed, Metric = 0.75, Metrics = new Dictionary<LabelTuningMetric, double> { [LabelTuningMetric.MacroAccuracy] = 0.75, [LabelTuningMetric.LogLoss] = double.PositiveInfinity },
                TrainingTime = TimeSpan.FromSeconds(1.5), TrainableParameters = 1234, PeakMemoryBytes = 1 << 30, MemoryIncreaseBytes = 1 << 20,
            };
            log.Append(trial);
            File.AppendAllText(Path.Combine(folder, TrialLog.FileName), "{\"id\": 8, \"torn");
            var warnings = new List<string>();
            var read = log.Read(warnings.Add);
            Assert.AreEqual(1, read.Count);
            Assert.AreEqual(1, warnings.Count, "the torn last line is reported and skipped");
            var back = read[0];
            Assert.IsTrue(back.FromCheckpoint);
            Assert.AreEqual(TrialLog.Key(trial.Method, parameters), TrialLog.Key(back.Method, back.Parameters));
            Assert.AreEqual(trial.ParametersText, back.ParametersText);
            Assert.AreEqual(double.PositiveInfinity, back.Metrics[LabelTuningMetric.LogLoss]);
            Assert.AreEqual((trial.Id, trial.ConfigurationId, trial.Rung, trial.Status, trial.Metric, trial.TrainingTime, trial.TrainableParameters, trial.PeakMemoryBytes),
                (back.Id, back.ConfigurationId, back.Rung, back.Status, back.Metric, back.TrainingTime, back.TrainableParameters, back.PeakMemoryBytes));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static SortedDictionary<string, object> WithoutEpochs(SortedDictionary<string, object> parameters)
        => new(parameters.Where(p => p.Key != "Epochs").ToDictionary(), StringComparer.Ordinal);
}
