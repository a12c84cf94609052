using System.Globalization;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// The memory estimate made before training: close to what a run really uses, and a warning (or, if asked, an
/// error) naming the numbers when a run would not fit.
/// </summary>
[TestClass]
public sealed class MemoryEstimateTests
{
    private const int BaselineBatch = 2;
    private const int BaselineSequence = 8;
    private static string _model = string.Empty;
    private static (long Estimate, long Measured)? _baseline;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 17);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        MemoryBudget.AvailableBytesOverride = null;
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    /// <summary>
    /// Fresh processes train one step of B × T tokens. What the step adds to the process's peak resident memory, over
    /// a 2 × 8 run that measures the fixed costs (runtime, JIT, ML.NET, the model), must be within a factor of two of
    /// what the estimate adds over the same run. 16 × 256 is balanced, 8 × 512 dominated by T², 128 × 64 by B × T.
    /// </summary>
    [TestMethod]
    [DataRow(16, 256)]
    [DataRow(8, 512)]
    [DataRow(128, 64)]
    public void TheEstimateIsWithinAFactorOfTwoOfAMeasuredRun(int batch, int sequence)
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Inconclusive("Peak resident memory is read from /proc/self/status, which only Linux has.");
        }

        _baseline ??= Probe(BaselineBatch, BaselineSequence);
        var (estimate, measured) = Probe(batch, sequence);
        var estimated = estimate - _baseline.Value.Estimate;
        var grown = measured - _baseline.Value.Measured;
        var ratio = (double)grown / estimated;
        var line = $"batch {batch} x {sequence} tokens: estimate {MemoryEstimate.FormatBytes(estimated)}, measured {MemoryEstimate.FormatBytes(grown)} " +
            $"(peak growth {MemoryEstimate.FormatBytes(measured)} less {MemoryEstimate.FormatBytes(_baseline.Value.Measured)} for 2 x 8), measured/estimate {ratio:F2}";
        Directory.CreateDirectory(Fuzz.ResultsFolder);
        File.AppendAllText(Path.Combine(Fuzz.ResultsFolder, "memory-estimate.txt"), line + "\n");
        Assert.IsTrue(ratio is >= 0.5 and <= 2.0, line);
    }

    /// <summary>Batch 4096 × 4096 tokens of even a tiny model is terabytes: more than this machine has, and the message says so in numbers.</summary>
    [TestMethod]
    public void AHugeBatchAndSequenceDoNotFitAndTheMessageNamesTheNumbers()
    {
        var config = TinyModels.Config();
        var estimate = MemoryEstimate.For(config, parameterCount: 150_000, trainableCount: 5_000, elementBytes: 4, batchSize: 4096, sequenceLength: 4096);
        var available = MemoryBudget.AvailableBytes(torch.CPU);
        Assert.IsNotNull(available, "available memory is known on CPU");
        Assert.IsTrue(estimate.TrainingBytes > available.Value, $"{estimate} should exceed {MemoryEstimate.FormatBytes(available.Value)}");
        var tokens = 4096.0 * 4096;
        var perLayer = (tokens * ((6 * 64) + (4 * 32) + (4 * 128))) + (4.6 * 64 * 64);
        Assert.AreEqual((long)(((config.NumHiddenLayers * perLayer) + (tokens * ((64 * 4) + 1800))) * 4), estimate.ActivationBytes);
        Assert.AreEqual(4096L * 4096 * 4096 * 2 * 4, estimate.AttentionBytes);

        var message = MemoryBudget.Check(estimate, available, MemoryCheck.Warn, channel: null);
        Assert.IsNotNull(message);
        Directory.CreateDirectory(Fuzz.ResultsFolder);
        File.WriteAllText(Path.Combine(Fuzz.ResultsFolder, "memory-warning.txt"), message + "\n");
        StringAssert.Contains(message, "4096 rows × 4096 positions");
        StringAssert.Contains(message, MemoryEstimate.FormatBytes(estimate.TrainingBytes));
        StringAssert.Contains(message, MemoryEstimate.FormatBytes(available.Value));
        StringAssert.Contains(message, $"activations {MemoryEstimate.FormatBytes(estimate.ActivationBytes)}");
        StringAssert.Contains(message, "BatchSize");

        var error = Assert.ThrowsExactly<InvalidOperationException>(() => MemoryBudget.Check(estimate, available, MemoryCheck.Fail, channel: null));
        Assert.AreEqual(message, error.Message);
        Assert.IsNull(MemoryBudget.Check(estimate, available, MemoryCheck.Off, channel: null));

        // The same run fits when the machine is big enough: the check is a comparison, not a constant.
        Assert.IsNull(MemoryBudget.Check(estimate, estimate.TrainingBytes, MemoryCheck.Fail, channel: null));
    }

    /// <summary>Through the trainer, on a machine made to look small: Warn logs the warning and trains; Fail throws before the first step; Off trains silently.</summary>
    [TestMethod]
    public void TheTrainerWarnsOrFailsBeforeTrainingWhenTheRunDoesNotFit()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.Rows(24, seed: 1));
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train).Transform(train);
        var warnings = new List<string>();
        ml.Log += (_, e) =>
        {
            if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning)
            {
                lock (warnings)
                {
                    warnings.Add(e.Message);
                }
            }
        };

        LabelSupervisedLlamaOptions Options(MemoryCheck check, List<long> steps) => new()
        {
            ModelPath = _model,
            Epochs = 1,
            BatchSize = 8,
            MaxSequenceLength = 32,
            LoraRank = 4,
            Seed = 5,
            MemoryCheck = check,
            Progress = new Methods.LabelSupervised.LabelSupervisedLlamaTests.SyncProgress(p => { if (p.IsStep) { steps.Add(p.Step); } }),
        };

        MemoryBudget.AvailableBytesOverride = 1024;
        try
        {
            var warnSteps = new List<long>();
            ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(MemoryCheck.Warn, warnSteps)).Fit(keyed);
            var warning = warnings.SingleOrDefault(w => w.Contains("only 1 KB is available", StringComparison.Ordinal));
            Assert.IsNotNull(warning, $"no memory warning among: {string.Join(" | ", warnings)}");
            StringAssert.Contains(warning, "for a micro-batch of 8 rows × ");
            Assert.AreEqual(3, warnSteps.Count, "with Warn, training goes on");

            var failSteps = new List<long>();
            var error = Assert.ThrowsExactly<InvalidOperationException>(
                () => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(MemoryCheck.Fail, failSteps)).Fit(keyed));
            StringAssert.Contains(error.Message, "only 1 KB is available");
            Assert.AreEqual(0, failSteps.Count, "with Fail, no step runs");

            warnings.Clear();
            ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(MemoryCheck.Off, [])).Fit(keyed);
            Assert.IsFalse(warnings.Any(w => w.Contains("available", StringComparison.Ordinal)), "Off does not estimate");
        }
        finally
        {
            MemoryBudget.AvailableBytesOverride = null;
        }
    }

    private static (long Estimate, long Measured) Probe(int batch, int sequence)
    {
        using var host = KillableHost.Start("memory-probe", _model, batch.ToString(CultureInfo.InvariantCulture), sequence.ToString(CultureInfo.InvariantCulture));
        host.WaitForExit(TimeSpan.FromMinutes(4));
        var parts = host.Lines.Single(l => l.StartsWith("estimate ", StringComparison.Ordinal)).Split(' ');
        return (long.Parse(parts[1], CultureInfo.InvariantCulture), long.Parse(parts[3], CultureInfo.InvariantCulture));
    }
}
