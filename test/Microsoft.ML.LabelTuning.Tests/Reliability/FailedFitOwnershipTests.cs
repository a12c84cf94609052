using System.Diagnostics;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Every way out of Fit that is not success (a validation error, the memory refusal, cancellation, an exception in a
/// step) and every failed sweep trial leaves no tensor and no loaded base model behind.
/// </summary>
[TestClass]
public sealed class FailedFitOwnershipTests
{
    [TestMethod]
    public void TwentyFailedFitsAndTwentyFailedTrialsLeaveNothingBehind()
    {
        // Hidden size 256 makes each base model about 6 MB, so leaking forty of them would show in the RSS too.
        var model = TinyModels.CreateFolder(seed: 43, config: TinyModels.Config(hidden: 256, intermediate: 512, heads: 4, kvHeads: 2));
        try
        {
            var ml = new MLContext(seed: 1);
            var rows = ml.Data.LoadFromEnumerable(ToyData.Rows(24, seed: 2));
            var keyMap = ml.Transforms.Conversion.MapValueToKey("Label").Fit(rows);
            var keyed = keyMap.Transform(rows);
            var unseen = keyMap.Transform(ml.Data.LoadFromEnumerable(ToyData.Rows(8, seed: 3).Select(r => new ToyData.Row { Text = r.Text, Label = "unseen" })));

            var failures = new (string What, Func<LabelSupervisedLlamaOptions, LabelSupervisedLlamaOptions> Change, IDataView Data, Type Error)[]
            {
                ("validation error (no labelled rows)", o => o, unseen, typeof(ArgumentException)),
                ("memory refusal", o => { o.MemoryCheck = MemoryCheck.Fail; return o; }, keyed, typeof(InvalidOperationException)),
                ("cancellation", o => { o.CancellationToken = new CancellationToken(canceled: true); return o; }, keyed, typeof(OperationCanceledException)),
                ("exception in a step", o => { o.Progress = new ThrowingProgress(); return o; }, keyed, typeof(InvalidOperationException)),
            };

            void FailingFit(int i)
            {
                var (what, change, data, error) = failures[i % failures.Length];
                var options = change(LabelSupervisedLlamaTests.FastOptions(model));
                options.Epochs = 1;
                var thrown = Assert.Throws<Exception>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(data), what);
                Assert.IsInstanceOfType(thrown, error, $"{what}: {thrown.GetType().Name}: {thrown.Message}");
            }

            void FailingSweep(int trials)
            {
                // Every method of the default space, each trial failing in its first training step.
                var settings = new LabelTuningExperimentSettings
                {
                    ModelPath = model,
                    MaxSequenceLength = 32,
                    Seed = 3,
                    ConfigureOptions = o => { o.Progress = new ThrowingProgress(); o.Epochs = 1; },
                };
                var experiment = new LabelTuningExperiment(ml, settings).SetDataset(rows, rows).SetMaxTrials(trials);
                var error = Assert.ThrowsExactly<InvalidOperationException>(() => experiment.Run(CancellationToken.None));
                StringAssert.Contains(error.Message, $"({trials} ran)");
            }

            var available = MemoryBudget.AvailableBytesOverride;
            MemoryBudget.AvailableBytesOverride = 1 << 20; // 1 MiB: the estimate is always refused under MemoryCheck.Fail
            try
            {
                void Round()
                {
                    for (var i = 0; i < 20; i++)
                    {
                        FailingFit(i);
                    }

                    FailingSweep(20);
                }

                Round(); // warm-up: lazily created caches, and the native allocator's and the GC's pools settle
                var (liveBefore, rssBefore) = Measure();
                Round();
                var (liveAfter, rssAfter) = Measure();
                Console.WriteLine($"live tensors {liveBefore} -> {liveAfter}; RSS {rssBefore / 1e6:F1} MB -> {rssAfter / 1e6:F1} MB");
                Assert.AreEqual(liveBefore, liveAfter, "live tensors after 20 failed fits and 20 failed sweep trials");
                Assert.IsTrue(rssAfter <= rssBefore * 1.05, $"RSS grew from {rssBefore / 1e6:F1} MB to {rssAfter / 1e6:F1} MB (more than 5%)");
            }
            finally
            {
                MemoryBudget.AvailableBytesOverride = available;
            }
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    private static (long LiveTensors, long Rss) Measure()
    {
        for (var i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return (DisposeScopeManager.Statistics.ThreadTotalLiveCount, process.WorkingSet64);
    }

    private sealed class ThrowingProgress : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => throw new InvalidOperationException("A progress receiver failed during a training step.");
    }
}
