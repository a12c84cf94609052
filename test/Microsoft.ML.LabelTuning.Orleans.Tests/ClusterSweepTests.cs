using System.Diagnostics;
using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.ML.LabelTuning.Tests;
using Orleans.TestingHost;

namespace Microsoft.ML.LabelTuning.Orleans.Tests;

/// <summary>Sweeps on in-process Orleans clusters (TestingHost) against the same sweep run in this process.</summary>
[TestClass]
public sealed class ClusterSweepTests
{
    [TestMethod]
    public async Task ThreeSilosReproduceTheSingleProcessLeaderboard()
    {
        // Successive halving: three configurations at 1 epoch, the best promoted to 3 epochs, then a new bracket.
        static LabelTuningExperiment Sweep(MLContext ml) => ClusterFixture.Experiment(ml, ClusterFixture.Space(epochs: 1))
            .SetSuccessiveHalvingTuner(minEpochs: 1, maxEpochs: 3, eta: 3)
            .SetMaxTrials(5);

        var local = await Sweep(new MLContext(seed: 1)).RunAsync();
        var shared = ClusterFixture.TempFolder();
        var cluster = await ClusterFixture.StartAsync(silos: 3);
        try
        {
            var ml = new MLContext(seed: 1);
            var options = new ClusterSweepOptions { SharedFolder = shared, SweepId = "equality", PollInterval = TimeSpan.FromMilliseconds(100) };
            var clock = Stopwatch.StartNew();
            var remote = await Sweep(ml).RunOnCluster(cluster.Client, options).RunAsync();
            Console.WriteLine($"cluster sweep: {clock.Elapsed.TotalSeconds:F1} s; local {local.Elapsed.TotalSeconds:F1} s");
            Console.WriteLine(remote.Leaderboard.ToMarkdown());

            ClusterFixture.AssertSameLeaderboard(local.Leaderboard, remote.Leaderboard);
            Assert.AreEqual(local.BestTrial.Id, remote.BestTrial.Id);
            Assert.AreEqual(local.StopReason, remote.StopReason);
            Assert.AreEqual(5, remote.Leaderboard.Count);
            CollectionAssert.AreEqual(new[] { 0, 0, 0, 1, 0 }, remote.Leaderboard.OrderBy(t => t.Id).Select(t => t.Rung).ToArray(), "rungs: three at 1 epoch, one promotion, a new bracket");

            // The winning model came back from shared storage and scores as the local one does.
            var validation = ml.Data.LoadFromEnumerable(ToyData.Rows(30, seed: 2));
            var metrics = ml.MulticlassClassification.Evaluate(remote.Model.Transform(validation));
            Assert.AreEqual(local.BestTrial.Metric, metrics.MacroAccuracy, 1e-6);

            // The trials ran on more than one silo, each once.
            var snapshot = await cluster.Client.GetGrain<ISweepCoordinatorGrain>("equality").GetSnapshotAsync();
            Console.WriteLine(string.Join('\n', snapshot.Events));
            Assert.IsTrue(snapshot.Results.Select(r => r.Silo).Distinct().Count() >= 2, string.Join(", ", snapshot.Results.Select(r => r.Silo)));
            Assert.AreEqual(0, snapshot.FailedAttempts.Count);
            Assert.IsTrue(File.Exists(Path.Combine(shared, "equality", $"trial-{remote.BestTrial.Id:D4}.zip")), "the coordinator keeps the winning model");
        }
        finally
        {
            (local.Model as IDisposable)?.Dispose();
            await cluster.StopAllSilosAsync();
            await cluster.DisposeAsync();
            ClusterFixture.DeleteFolder(shared);
        }
    }

    [TestMethod]
    public async Task KillingASiloMidTrialReRunsItElsewhereAndLosesNothing()
    {
        // Six epochs of three steps: long enough to kill a silo while it trains; a checkpoint after every step.
        static LabelTuningExperiment Sweep(MLContext ml) => ClusterFixture.Experiment(ml, ClusterFixture.Space(epochs: 6)).SetMaxTrials(4);

        var local = await Sweep(new MLContext(seed: 1)).RunAsync();
        var shared = ClusterFixture.TempFolder();
        var cluster = await ClusterFixture.StartAsync(silos: 3);
        try
        {
            var options = new ClusterSweepOptions
            {
                SharedFolder = shared, SweepId = "kill", PollInterval = TimeSpan.FromMilliseconds(100), CheckpointEverySteps = 1, CoordinatorTimeout = TimeSpan.FromMinutes(2),
            };
            var run = Sweep(new MLContext(seed: 1)).RunOnCluster(cluster.Client, options).RunAsync();

            // Wait until a secondary silo (the primary holds the test cluster's membership table) is training a trial, then kill it.
            var coordinator = cluster.Client.GetGrain<ISweepCoordinatorGrain>("kill");
            SiloHandle? victim = null;
            RunningTrial? killed = null;
            var clock = Stopwatch.StartNew();
            while (victim is null && clock.Elapsed < TimeSpan.FromMinutes(2) && !run.IsCompleted)
            {
                await Task.Delay(50);
                var snapshot = await coordinator.GetSnapshotAsync();
                // Early in its training, so that it cannot finish before the kill lands.
                foreach (var running in snapshot.Running.Where(r => r.Step > 0 && r.Step < r.TotalSteps / 2))
                {
                    victim = cluster.SecondarySilos.FirstOrDefault(s => s.SiloAddress.ToParsableString() == running.Silo);
                    if (victim is not null)
                    {
                        killed = running;
                        break;
                    }
                }
            }

            Assert.IsNotNull(victim, "no trial trained on a secondary silo before the sweep ended");
            Console.WriteLine($"killing silo {victim.SiloAddress} during trial {killed!.TrialId} at step {killed.Step}/{killed.TotalSteps}");
            await cluster.KillSiloAsync(victim);

            var remote = await run.WaitAsync(TimeSpan.FromMinutes(4));
            var final = await coordinator.GetSnapshotAsync();
            Console.WriteLine(string.Join('\n', final.Events));

            // Every trial is accounted for once, the killed one re-ran on another silo, and the metrics equal the local sweep's.
            CollectionAssert.AreEqual(new[] { 1, 2, 3, 4 }, final.Results.Select(r => r.Id).ToArray());
            Assert.IsTrue(final.Results.All(r => r.Status == nameof(TrialStatus.Completed)), string.Join('\n', final.Results));
            // (An assignment made while the cluster was still declaring the silo dead may not have reached a silo; such
            // attempts are recorded as not started and do not count against the trial.)
            var lost = final.FailedAttempts.Single(f => f.TrialId == killed.TrialId && !f.NeverStarted);
            Assert.AreEqual(victim.SiloAddress.ToParsableString(), lost.Silo);
            var rerun = final.Results.Single(r => r.Id == killed.TrialId);
            Assert.AreNotEqual(lost.Silo, rerun.Silo, "the trial re-ran on another silo");
            Assert.IsTrue(rerun.Attempt >= 2, $"attempt {rerun.Attempt}");
            ClusterFixture.AssertSameLeaderboard(local.Leaderboard, remote.Leaderboard);
        }
        finally
        {
            (local.Model as IDisposable)?.Dispose();
            await cluster.StopAllSilosAsync();
            await cluster.DisposeAsync();
            ClusterFixture.DeleteFolder(shared);
        }
    }

    [TestMethod]
    public async Task ACoordinatorActivatedAfreshResumesTheSameSweepFromGrainStorage()
    {
        // Successive halving at 2 and 6 epochs: the whole cluster stops after the first rung, a new cluster (sharing only
        // the grain storage and the shared folder) must replay the tuner, promote the same configuration and finish.
        static LabelTuningExperiment Sweep(MLContext ml) => ClusterFixture.Experiment(ml, ClusterFixture.Space(epochs: 1))
            .SetSuccessiveHalvingTuner(minEpochs: 2, maxEpochs: 6, eta: 3)
            .SetMaxTrials(5);

        var local = await Sweep(new MLContext(seed: 1)).RunAsync();
        var shared = ClusterFixture.TempFolder();
        var options = new ClusterSweepOptions
        {
            SharedFolder = shared, SweepId = "restart", PollInterval = TimeSpan.FromMilliseconds(100), CheckpointEverySteps = 1, CoordinatorTimeout = TimeSpan.FromSeconds(2),
        };
        var first = await ClusterFixture.StartAsync(silos: 2);
        SweepSnapshot stopped;
        try
        {
            var abandoned = Sweep(new MLContext(seed: 1)).RunOnCluster(first.Client, options).RunAsync();
            var coordinator = first.Client.GetGrain<ISweepCoordinatorGrain>("restart");
            var clock = Stopwatch.StartNew();
            do
            {
                await Task.Delay(50);
                stopped = await coordinator.GetSnapshotAsync();
            }
            while (stopped.Results.Count < 3 && !stopped.Finished && clock.Elapsed < TimeSpan.FromMinutes(2));

            Assert.IsFalse(stopped.Finished, "the sweep finished before the cluster could be stopped");
            await first.StopAllSilosAsync();
            try
            {
                await abandoned.WaitAsync(TimeSpan.FromMinutes(1));
            }
            catch (Exception e) when (e is TimeoutException or OrleansException or OperationCanceledException or ObjectDisposedException)
            {
                // The first client loses its cluster; the sweep lives on in grain storage.
            }
        }
        finally
        {
            await first.DisposeAsync();
        }

        var second = await ClusterFixture.StartAsync(silos: 2);
        try
        {
            var remote = await Sweep(new MLContext(seed: 1)).RunOnCluster(second.Client, options).RunAsync();
            var resumed = await second.Client.GetGrain<ISweepCoordinatorGrain>("restart").GetSnapshotAsync();
            Console.WriteLine($"stopped with {stopped.Results.Count} result(s) and {stopped.Running.Count} running\n" + string.Join('\n', resumed.Events));
            Assert.IsTrue(resumed.Events.Any(e => e.Contains("coordinator activated", StringComparison.Ordinal)), "the coordinator resumed from storage");
            CollectionAssert.AreEqual(stopped.Results.Select(r => r.Id).ToArray(), resumed.Results.Where(r => stopped.Results.Any(s => s.Id == r.Id)).Select(r => r.Id).ToArray());
            CollectionAssert.AreEqual(new[] { 0, 0, 0, 1, 0 }, remote.Leaderboard.OrderBy(t => t.Id).Select(t => t.Rung).ToArray());
            ClusterFixture.AssertSameLeaderboard(local.Leaderboard, remote.Leaderboard);
        }
        finally
        {
            (local.Model as IDisposable)?.Dispose();
            await second.StopAllSilosAsync();
            await second.DisposeAsync();
            ClusterFixture.DeleteFolder(shared);
        }
    }

    [TestMethod]
    public async Task ATrialThatFailsOnTwoSilosIsRecordedFailedAndTheSweepGoesOn()
    {
        var shared = ClusterFixture.TempFolder();
        var cluster = await ClusterFixture.StartAsync(silos: 3);
        TrialExecutor.FaultInjection = (assignment, silo) =>
        {
            if (assignment.TrialId == 2)
            {
                throw new IOException($"simulated disk failure on silo {silo}");
            }
        };
        try
        {
            var options = new ClusterSweepOptions { SharedFolder = shared, SweepId = "faults", PollInterval = TimeSpan.FromMilliseconds(100) };
            var result = await ClusterFixture.Experiment(new MLContext(seed: 1), ClusterFixture.Space(epochs: 1)).SetMaxTrials(3)
                .RunOnCluster(cluster.Client, options).RunAsync();
            var snapshot = await cluster.Client.GetGrain<ISweepCoordinatorGrain>("faults").GetSnapshotAsync();
            Console.WriteLine(string.Join('\n', snapshot.Events));

            Assert.AreEqual(3, result.Leaderboard.Count);
            var failed = result.Leaderboard.Single(t => t.Id == 2);
            Assert.AreEqual(TrialStatus.Failed, failed.Status);
            StringAssert.Contains(failed.Error, "failed on 2 silos");
            StringAssert.Contains(failed.Error, "simulated disk failure");
            Assert.AreEqual(2, snapshot.FailedAttempts.Count(f => f.TrialId == 2));
            Assert.AreEqual(2, snapshot.FailedAttempts.Where(f => f.TrialId == 2).Select(f => f.Silo).Distinct().Count(), "the re-run was on another silo");
            Assert.IsTrue(result.Leaderboard.Where(t => t.Id != 2).All(t => t.Status == TrialStatus.Completed));
            (result.Model as IDisposable)?.Dispose();
        }
        finally
        {
            TrialExecutor.FaultInjection = null;
            await cluster.StopAllSilosAsync();
            await cluster.DisposeAsync();
            ClusterFixture.DeleteFolder(shared);
        }
    }

    [TestMethod]
    public void ASiloWithAnotherBaseModelRefusesTheTrialWithAClearError()
    {
        var ml = new MLContext(seed: 1);
        var description = ClusterFixture.Experiment(ml, ClusterFixture.Space(epochs: 1)).Describe();
        var folder = ClusterFixture.TempFolder();
        try
        {
            var data = Path.Combine(folder, "train.idv");
            using (var stream = File.Create(data))
            {
                ml.Data.SaveAsBinary(ml.Data.LoadFromEnumerable(ToyData.Rows(6, seed: 1)), stream);
            }

            var assignment = new TrialAssignment
            {
                SweepId = "hash",
                TrialId = 1,
                Attempt = 1,
                Proposal = new ProposalRecord { TrialId = 1, ConfigurationId = 1, Method = "LabelSupervised", Parameters = new() { ["Epochs"] = "i:1" } },
                Spec = new ClusterSweepSpec
                {
                    DescriptionJson = description.ToJson(), SweepFolder = folder, ModelSha256 = new string('0', 64),
                    TrainDataPath = data, TrainDataSha256 = ContentHash.OfFile(data), ValidationDataPath = data, ValidationDataSha256 = ContentHash.OfFile(data),
                },
            };
            var error = Assert.ThrowsExactly<InvalidDataException>(() => TrialExecutor.Run(assignment, "silo-x", new LabelTuningSiloOptions(), _ => { }, CancellationToken.None));
            StringAssert.Contains(error.Message, "Silo silo-x refuses the trial: its base model folder");
            StringAssert.Contains(error.Message, ContentHash.OfModelFolder(AssemblySetup.Model));
            StringAssert.Contains(error.Message, new string('0', 64));
        }
        finally
        {
            ClusterFixture.DeleteFolder(folder);
        }
    }

    [TestMethod]
    public void AnExperimentWithADelegateIsRefusedBeforeAnythingRuns()
    {
        var ml = new MLContext(seed: 1);
        var experiment = new LabelTuningExperiment(ml, new LabelTuningExperimentSettings { ModelPath = AssemblySetup.Model, ConfigureOptions = o => o.WarmupRatio = 0.05 });
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => experiment.Describe());
        StringAssert.Contains(error.Message, "ConfigureOptions is a delegate");
    }

    [TestMethod]
    public void ADescribedSweepRebuildsTheSameSearchSpaceAndProposals()
    {
        var ml = new MLContext(seed: 1);
        var experiment = ClusterFixture.Experiment(ml, ClusterFixture.Space(epochs: 2));
        var description = experiment.Describe();
        var again = SweepDescription.FromJson(description.ToJson(), "the test");
        var original = description.CreateTuner(ClusterFixture.Space(epochs: 2));
        var rebuilt = again.CreateTuner(again.BuildSpace());
        for (var i = 1; i <= 20; i++)
        {
            var a = ProposalRecord.From(i, original.Propose(int.MaxValue)!);
            var b = ProposalRecord.From(i, rebuilt.Propose(int.MaxValue)!);
            Assert.IsTrue(a.SameAs(b), $"{a} vs {b}");
        }
    }
}
