using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Sweep;
using Microsoft.ML.LabelTuning.Tests;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.Runtime.Hosting;
using Orleans.Serialization;
using Orleans.Storage;
using Orleans.TestingHost;

// Torch state is global: run tests one at a time.
[assembly: DoNotParallelize]

namespace Microsoft.ML.LabelTuning.Orleans.Tests;

[TestClass]
public static class AssemblySetup
{
    private static string? _model;

    /// <summary>Gets the tiny random base model every test sweeps over (made once per run).</summary>
    public static string Model => _model ?? throw new InvalidOperationException("The assembly set-up has not run.");

    [AssemblyInitialize]
    public static void Initialize(TestContext context)
    {
        _ = context;
        TorchRuntime.EnsureInitialized();
        _model = TinyModels.CreateFolder(seed: 41);
    }

    [AssemblyCleanup]
    public static void Cleanup()
    {
        if (_model is not null && Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }
}

/// <summary>The tiny sweeps the tests run locally and on clusters, and the in-process clusters they run on.</summary>
internal static class ClusterFixture
{
    /// <summary>LS-LLaMA and prompt tuning on the toy task, with a sampled learning rate; a trial takes a second or two.</summary>
    public static LabelTuningSearchSpace Space(int epochs)
    {
        var space = LabelTuningSearchSpace.For(TuningMethod.LabelSupervised, TuningMethod.PromptTuning);
        space[TuningMethod.LabelSupervised].SetRange("LearningRate", 3e-3, 3e-2, init: 1e-2, logBase: true).Fix("LoraRank", 4).Fix("LoraDropout", 0.0);
        space[TuningMethod.PromptTuning].SetRange("LearningRate", 3e-2, 3e-1, init: 1e-1, logBase: true).Fix("VirtualTokenCount", 4).Fix("DecomposedRank", 0);
        return space.Fix("Epochs", epochs).Fix("WarmupRatio", 0.05);
    }

    /// <summary>The same experiment code for the local and the cluster run.</summary>
    public static LabelTuningExperiment Experiment(MLContext ml, LabelTuningSearchSpace space, int seed = 3)
        => new LabelTuningExperiment(ml, new LabelTuningExperimentSettings { ModelPath = AssemblySetup.Model, MaxSequenceLength = 32, BatchSize = 16, Seed = seed })
            .SetDataset(ml.Data.LoadFromEnumerable(ToyData.Rows(48, seed: 1)), ml.Data.LoadFromEnumerable(ToyData.Rows(30, seed: 2)))
            .SetSearchSpace(space);

    /// <summary>Starts <paramref name="silos"/> in-process silos with the trial placement and a coordinator storage that outlives any one silo.</summary>
    public static async Task<TestCluster> StartAsync(int silos)
    {
        var builder = new TestClusterBuilder((short)silos);
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return cluster;
    }

    public static string TempFolder() => Directory.CreateTempSubdirectory("lt-cluster-").FullName;

    /// <summary>Deletes a test folder; a trial of a stopped silo may still be writing its last checkpoint there, so it retries.</summary>
    public static void DeleteFolder(string folder)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }

                return;
            }
            catch (IOException) when (attempt < 20)
            {
                Thread.Sleep(250);
            }
        }
    }

    /// <summary>Asserts two leaderboards hold the same trials with the same metrics (within 1e-6).</summary>
    public static void AssertSameLeaderboard(SweepLeaderboard expected, SweepLeaderboard actual)
    {
        var e = expected.OrderBy(t => t.Id).ToList();
        var a = actual.OrderBy(t => t.Id).ToList();
        Assert.AreEqual(e.Count, a.Count, "trial count");
        for (var i = 0; i < e.Count; i++)
        {
            var what = $"trial {e[i].Id}: local {e[i]} | cluster {a[i]}";
            Assert.AreEqual(e[i].Id, a[i].Id, what);
            Assert.AreEqual(e[i].ConfigurationId, a[i].ConfigurationId, what);
            Assert.AreEqual(e[i].Rung, a[i].Rung, what);
            Assert.AreEqual(e[i].MethodName, a[i].MethodName, what);
            Assert.AreEqual(e[i].ParametersText, a[i].ParametersText, what);
            Assert.AreEqual(e[i].Status, a[i].Status, what);
            Assert.AreEqual(e[i].TrainableParameters, a[i].TrainableParameters, what);
            Assert.AreEqual(e[i].Metric, a[i].Metric, 1e-6, what);
            Assert.AreEqual(e[i].Metrics.Count, a[i].Metrics.Count, what);
            foreach (var (metric, value) in e[i].Metrics)
            {
                Assert.AreEqual(value, a[i].Metrics[metric], 1e-6, $"{what}: {metric}");
            }
        }

        CollectionAssert.AreEqual(expected.Select(t => t.Id).ToArray(), actual.Select(t => t.Id).ToArray(), "the ranking");
    }

    /// <summary>Fast failure detection (a killed silo is declared dead in seconds) and the process-wide test storage.</summary>
    public sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.AddLabelTuning();
            siloBuilder.Services.AddGrainStorage(LabelTuningCluster.StorageName, (services, _) => new ProcessGrainStorage(services.GetRequiredService<Serializer>()));
            siloBuilder.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(1);
                o.NumMissedProbesLimit = 1;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(1);
            });
        }
    }

    /// <summary>
    /// Grain storage shared by every silo of this process (serialized copies, with etags), so the coordinator's state
    /// survives the silo that held it, as a database's would.
    /// </summary>
    private sealed class ProcessGrainStorage(Serializer serializer) : IGrainStorage
    {
        private static readonly ConcurrentDictionary<string, (byte[] Data, string ETag)> _store = new();

        public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
        {
            if (_store.TryGetValue($"{stateName}/{grainId}", out var entry))
            {
                grainState.State = serializer.Deserialize<T>(entry.Data);
                grainState.ETag = entry.ETag;
                grainState.RecordExists = true;
            }

            return Task.CompletedTask;
        }

        public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
        {
            var key = $"{stateName}/{grainId}";
            lock (_store)
            {
                if (_store.TryGetValue(key, out var entry) && entry.ETag != grainState.ETag)
                {
                    throw new InconsistentStateException($"ETag mismatch for {key}: stored {entry.ETag}, written {grainState.ETag}.");
                }

                var etag = Guid.NewGuid().ToString("N");
                _store[key] = (serializer.SerializeToArray(grainState.State), etag);
                grainState.ETag = etag;
                grainState.RecordExists = true;
            }

            return Task.CompletedTask;
        }

        public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
        {
            _store.TryRemove($"{stateName}/{grainId}", out _);
            grainState.ETag = null;
            grainState.RecordExists = false;
            return Task.CompletedTask;
        }
    }
}
