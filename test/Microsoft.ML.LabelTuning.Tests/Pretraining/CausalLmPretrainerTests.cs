using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Pretraining;
using Microsoft.ML.LabelTuning.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Pretraining;

[TestClass]
public sealed class CausalLmPretrainerTests
{
    private static readonly string[] _sentences =
    [
        "the good movie was great and the story was excellent",
        "a bad film with a boring plot and terrible acting",
        "the team won the match with a goal in the last minute",
        "this scene is really very good but the story is poor",
    ];

    private string _folder = string.Empty;

    [TestInitialize]
    public void Setup()
    {
        _folder = Directory.CreateTempSubdirectory("lt-pretrain-").FullName;
        File.Copy(TinyModels.TokenizerModel, Path.Combine(_folder, "tokenizer.model"));
        File.WriteAllText(Path.Combine(_folder, "tokenizer_config.json"),
            """{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");
    }

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_folder, recursive: true);

    [TestMethod]
    public void PackingWrapsEachDocumentInBosEosAndCutsOverlappingWindows()
    {
        var corpus = Path.Combine(_folder, "corpus.txt");
        File.WriteAllText(corpus, "first line\nsecond line\n\n  \nanother document\n\n\nthe last one");
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_folder);

        var documents = PackedCorpus.ReadDocuments(corpus).ToList();
        CollectionAssert.AreEqual(new[] { "first line\nsecond line", "another document", "the last one" }, documents);

        var packed = PackedCorpus.Build([corpus], tokenizer, sequenceLength: 4, threads: 2, cacheFolder: null);
        var expected = documents.SelectMany(d => new[] { 1 }.Concat(tokenizer.Encode(d, addSpecialTokens: false)).Append(2)).ToArray();
        CollectionAssert.AreEqual(expected, packed.Tokens);
        Assert.AreEqual(3, packed.DocumentCount);
        Assert.AreEqual((expected.Length - 1) / 4, packed.WindowCount);

        var window = new long[5];
        for (var w = 0; w < packed.WindowCount; w++)
        {
            packed.CopyWindow(w, window);
            CollectionAssert.AreEqual(expected.Skip(w * 4).Take(5).Select(i => (long)i).ToArray(), window, $"window {w}");
        }

        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => packed.CopyWindow(packed.WindowCount, window));
    }

    [TestMethod]
    public void TheTokenCacheReturnsTheSameStreamAndChangesWithTheText()
    {
        var corpus = Path.Combine(_folder, "corpus.txt");
        File.WriteAllText(corpus, string.Join("\n\n", _sentences));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_folder);
        var cache = Path.Combine(_folder, "cache");

        var first = PackedCorpus.Build([corpus], tokenizer, 8, 1, cache);
        Assert.AreEqual(1, Directory.GetFiles(cache).Length);
        var second = PackedCorpus.Build([corpus], tokenizer, 8, 1, cache);
        CollectionAssert.AreEqual(first.Tokens, second.Tokens);
        Assert.AreEqual(first.ContentHash, second.ContentHash);

        File.AppendAllText(corpus, "\n\none more document");
        var third = PackedCorpus.Build([corpus], tokenizer, 8, 1, cache);
        Assert.AreNotEqual(first.ContentHash, third.ContentHash);
        Assert.IsTrue(third.Tokens.Length > first.Tokens.Length);
    }

    [TestMethod]
    public void EveryEpochVisitsEveryWindowOnceInASeededOrder()
    {
        var order = new WindowOrder(10, seed: 3);
        var epoch0 = Enumerable.Range(0, 10).Select(g => order.WindowAt(g)).ToArray();
        var epoch1 = Enumerable.Range(10, 10).Select(g => order.WindowAt(g)).ToArray();
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 10).Select(i => (long)i).ToArray(), epoch0);
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 10).Select(i => (long)i).ToArray(), epoch1);
        CollectionAssert.AreNotEqual(epoch0, epoch1, "Each epoch has its own order.");
        CollectionAssert.AreNotEqual(Enumerable.Range(0, 10).Select(i => (long)i).ToArray(), epoch0, "The order is shuffled.");
        var fresh = new WindowOrder(10, seed: 3);
        CollectionAssert.AreEqual(WindowOrder.Permutation(10, 3, 1), Enumerable.Range(10, 10).Select(g => (int)fresh.WindowAt(g)).ToArray(), "A fresh order jumps straight to epoch 1.");
        CollectionAssert.AreNotEqual(WindowOrder.Permutation(10, 3, 0), WindowOrder.Permutation(10, 4, 0), "The seed changes the order.");
        Assert.AreEqual((2, 3L), order.Locate(23));
    }

    [TestMethod]
    public void TheScheduleWarmsUpLinearlyThenDecaysByCosineToTheFloor()
    {
        Assert.AreEqual(0.25, CausalLmPretrainer.Schedule(0, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.Schedule(3, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.Schedule(4, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(0.55, CausalLmPretrainer.Schedule(52, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(0.1, CausalLmPretrainer.Schedule(100, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(0.1, CausalLmPretrainer.Schedule(500, 100, 1.0, 4, 0.1), 1e-12);
    }

    [TestMethod]
    public void WarmupStableDecayHoldsThePeakThenFallsLinearlyToTheFloorOverTheLastSteps()
    {
        Assert.AreEqual(0.25, CausalLmPretrainer.WarmupStableDecay(0, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.WarmupStableDecay(3, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.WarmupStableDecay(50, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.WarmupStableDecay(79, 100, 1.0, 4, 0.1, 0.2), 1e-12, "The decay is the last 20 of 100 steps.");
        Assert.AreEqual(1.0 - (0.9 / 20), CausalLmPretrainer.WarmupStableDecay(80, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(0.55, CausalLmPretrainer.WarmupStableDecay(89, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(0.1, CausalLmPretrainer.WarmupStableDecay(99, 100, 1.0, 4, 0.1, 0.2), 1e-12, "The last step trains at the floor.");
        Assert.AreEqual(0.1, CausalLmPretrainer.WarmupStableDecay(500, 100, 1.0, 4, 0.1, 0.2), 1e-12);

        // Raising the budget before the decay starts leaves every step already taken unchanged.
        for (var step = 0; step < 80; step++)
        {
            Assert.AreEqual(CausalLmPretrainer.WarmupStableDecay(step, 100, 1.0, 4, 0.1, 0.2), CausalLmPretrainer.WarmupStableDecay(step, 200, 1.0, 4, 0.1, 0.2), 1e-12);
        }

        var reset = new PretrainingState { MomentsResetAtStep = 10, ResumeWarmupSteps = 4 };
        Assert.AreEqual(1.0, CausalLmPretrainer.RewarmFactor(9, reset), 1e-12);
        Assert.AreEqual(0.25, CausalLmPretrainer.RewarmFactor(10, reset), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.RewarmFactor(13, reset), 1e-12);
        Assert.AreEqual(1.0, CausalLmPretrainer.RewarmFactor(10, new PretrainingState()), 1e-12);
    }

    [TestMethod]
    public void APortableStateContinuesTheRunInAFreshRunFolder()
    {
        var state = Path.Combine(_folder, "state");
        var first = Options("machine1", steps: 6);
        first.PortableStateFolder = state;
        new CausalLmPretrainer(first).Run();

        // The portable state holds the run's float32 weights at its last checkpoint, its position and its curve.
        var info = PortablePretrainingState.Read(state)!;
        var full = PretrainingCheckpoint.ReadState(Path.Combine(_folder, "machine1"))!;
        Assert.AreEqual(6, info.Step);
        Assert.AreEqual((full.Epoch, full.WindowInEpoch, full.Tokens), (info.Epoch, info.WindowInEpoch, info.Tokens));
        Assert.AreEqual(full.Fingerprint, info.Fingerprint);
        using (var scope = NewDisposeScope())
        {
            var (weights, _) = SafeTensors.ReadFile(Path.Combine(state, info.WeightsFile));
            var (checkpoint, _) = SafeTensors.ReadFile(Path.Combine(_folder, "machine1", full.TensorsFile));
            Assert.IsFalse(weights.Keys.Any(k => k.StartsWith("optim.", StringComparison.Ordinal)), "The moments are not kept.");
            foreach (var (name, tensor) in weights)
            {
                Assert.IsTrue(tensor.bytes.SequenceEqual(checkpoint[$"param.{name}"].bytes), $"Weight '{name}' differs from the full checkpoint's.");
            }
        }

        // A fresh machine: an empty run folder and the committed state. The run continues at step 7, not 1.
        var second = Options("machine2", steps: 10);
        second.PortableStateFolder = state;
        var reports = new List<PretrainingProgress>();
        second.Progress = new SyncProgress(reports.Add);
        var summary = new CausalLmPretrainer(second).Run();

        Assert.IsTrue(summary.Resumed);
        Assert.AreEqual(10, summary.Steps);
        Assert.AreEqual(7, reports[0].Step);
        var resumed = PretrainingCheckpoint.ReadState(Path.Combine(_folder, "machine2"))!;
        Assert.AreEqual(6L, resumed.MomentsResetAtStep);
        Assert.AreEqual(4, resumed.OptimizerSteps, "AdamW's bias correction restarts with the reset moments.");
        var peakAt6 = new CausalLmPretrainer(second).LearningRateAt(6, 10);
        Assert.AreEqual(peakAt6 / second.ResumeWarmupSteps, reports[0].LearningRate, 1e-12, "The first step after the reset re-warms.");
        var metrics = PretrainingMetrics.Read(Path.Combine(_folder, "machine2", PretrainingCheckpoint.MetricsFileName));
        CollectionAssert.AreEqual(Enumerable.Range(1, 10).Select(i => (long)i).ToArray(), metrics.Select(m => m.Step).ToArray(), "The curve carries over.");
        var updated = PortablePretrainingState.Read(state)!;
        Assert.AreEqual(10, updated.Step);
        Assert.AreEqual(2, updated.History.Count, "The continuation is recorded.");
        Assert.AreEqual(1, Directory.GetFiles(state, "weights-*.safetensors").Length, "Older weights files are deleted.");
    }

    [TestMethod]
    public void APortableStateOfAnotherCorpusRecipeOrWeightsIsRefusedNeverRestarted()
    {
        var state = Path.Combine(_folder, "state");
        var first = Options("machine1", steps: 4);
        first.PortableStateFolder = state;
        new CausalLmPretrainer(first).Run();

        var otherRecipe = Options("machine2", steps: 8);
        otherRecipe.PortableStateFolder = state;
        otherRecipe.DecayFraction = 0.5;
        var recipe = Assert.ThrowsExactly<InvalidDataException>(() => new CausalLmPretrainer(otherRecipe).Run());
        StringAssert.Contains(recipe.Message, "another recipe");
        StringAssert.Contains(recipe.Message, "decay=0.5");

        var weights = Path.Combine(state, PortablePretrainingState.Read(state)!.WeightsFile);
        var bytes = File.ReadAllBytes(weights);
        bytes[^1] ^= 0x55;
        File.WriteAllBytes(weights, bytes);
        var damaged = Options("machine3", steps: 8);
        damaged.PortableStateFolder = state;
        var sha = Assert.ThrowsExactly<InvalidDataException>(() => new CausalLmPretrainer(damaged).Run());
        StringAssert.Contains(sha.Message, "SHA-256");
        bytes[^1] ^= 0x55;
        File.WriteAllBytes(weights, bytes);

        File.AppendAllText(Path.Combine(_folder, "corpus.txt"), "\n\none more document that was not there before\n");
        var otherCorpus = Options("machine4", steps: 8);
        otherCorpus.PortableStateFolder = state;
        var corpus = Assert.ThrowsExactly<InvalidDataException>(() => new CausalLmPretrainer(otherCorpus).Run());
        StringAssert.Contains(corpus.Message, "corpus rebuilt here");
        Assert.IsFalse(File.Exists(Path.Combine(_folder, "machine4", PretrainingCheckpoint.StateFileName)), "Nothing was trained.");
    }

    [TestMethod]
    public void ExportedWeightsSeedAPortableStateOnce()
    {
        var run = Options("lost", steps: 4);
        new CausalLmPretrainer(run).Run();
        var exported = Path.Combine(_folder, "exported");
        PretrainedModelExport.ExportBest(Path.Combine(_folder, "lost"), exported);

        var seeded = Options("seed", steps: 8);
        seeded.PortableStateFolder = Path.Combine(_folder, "state");
        new CausalLmPretrainer(seeded).WritePortableStateFromModel(exported, step: 4, trainSeconds: 12, note: "from the export");
        var info = PortablePretrainingState.Read(seeded.PortableStateFolder)!;
        Assert.AreEqual((4L, 12.0), (info.Step, info.TrainSeconds));
        CollectionAssert.AreEqual(new[] { "from the export" }, info.History.ToArray());
        Assert.ThrowsExactly<InvalidOperationException>(
            () => new CausalLmPretrainer(seeded).WritePortableStateFromModel(exported, step: 4, trainSeconds: 12, note: "again"));

        var summary = new CausalLmPretrainer(seeded).Run();
        Assert.IsTrue(summary.Resumed);
        Assert.AreEqual(8, summary.Steps);
        Assert.AreEqual(4L, PretrainingCheckpoint.ReadState(Path.Combine(_folder, "seed"))!.MomentsResetAtStep);
    }

    [TestMethod]
    public void TheLossFallsOnATinyRepeatedCorpus()
    {
        var options = Options("run", steps: 60);
        var reports = new List<PretrainingProgress>();
        options.Progress = new SyncProgress(reports.Add);
        options.LearningRate = 1e-2;
        options.EvalEverySteps = 60;

        var summary = new CausalLmPretrainer(options).Run();

        Assert.IsTrue(summary.Completed);
        Assert.AreEqual(60, summary.Steps);
        var first = reports.First().Loss;
        var last = reports.Last().Loss;
        Assert.AreEqual(Math.Log(400), first, 0.3, "An untrained model is close to uniform over the 400 ids.");
        Assert.IsTrue(last < 2.0, $"The training loss should fall well below the uniform {Math.Log(400):F2} nats on a repeated corpus: {first:F3} -> {last:F3}.");
        Assert.IsTrue(summary.BestValidationPerplexity < 10, $"Validation perplexity on the same sentences should be low but is {summary.BestValidationPerplexity}.");

        var metrics = PretrainingMetrics.Read(Path.Combine(_folder, "run", PretrainingCheckpoint.MetricsFileName));
        CollectionAssert.AreEqual(Enumerable.Range(1, 60).Select(i => (long)i).ToArray(), metrics.Select(m => m.Step).ToArray());
        Assert.IsNotNull(metrics[^1].ValidationPerplexity);
        Assert.AreEqual(60L * 4 * 16, metrics[^1].Tokens);

        // The best model is a loadable Hugging Face folder that scores what the run measured.
        var best = PretrainingCheckpoint.ReadBest(Path.Combine(_folder, "run"))!;
        using var model = CheckpointLoader.LoadCausalLM(Path.Combine(_folder, "run", PretrainingCheckpoint.BestFolderName));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_folder);
        var valid = PackedCorpus.Build([Path.Combine(_folder, "corpus.txt")], tokenizer, 16, 1, null);
        var ppl = CausalLmPretrainer.Evaluate(model, valid, 4, 64, out _);
        Assert.AreEqual(best.ValidationPerplexity, ppl, best.ValidationPerplexity * 1e-5);
    }

    [TestMethod]
    public void TheBestModelExportsAsAHalfPrecisionHuggingFaceFolder()
    {
        var exported = Path.Combine(_folder, "exported");
        Assert.ThrowsExactly<InvalidOperationException>(() => PretrainedModelExport.ExportBest(Path.Combine(_folder, "none"), exported));
        var options = Options("run", steps: 8);
        options.EvalMaxTokens = 0;
        var summary = new CausalLmPretrainer(options).Run();

        var result = PretrainedModelExport.ExportBest(Path.Combine(_folder, "run"), exported);

        Assert.AreEqual("float16", result.Dtype);
        Assert.AreEqual(summary.BestStep, result.Best.Step);
        Assert.AreEqual("float16", LlamaConfig.Load(Path.Combine(exported, "config.json")).TorchDtype);
        using (var reader = SafeTensorsReader.Open(Path.Combine(exported, "model.safetensors")))
        {
            Assert.IsTrue(reader.Tensors.Values.All(t => t.DType == SafeTensorsDType.F16), "Every weight is stored as float16.");
            Assert.AreEqual(result.Parameters, reader.Tensors.Values.Sum(t => t.ElementCount));
        }

        foreach (var file in new[] { "tokenizer.model", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(_folder, file), Path.Combine(exported, file));
        }

        var perplexity = PretrainedModelExport.Perplexity(exported, Path.Combine(_folder, "corpus.txt"), sequenceLength: 16, batchSize: 4);
        Assert.AreEqual(result.Best.ValidationPerplexity, perplexity, result.Best.ValidationPerplexity * 0.01, "float16 rounding moves perplexity by far less than 1%.");
        Assert.AreEqual(PackedCorpus.Build([Path.Combine(_folder, "corpus.txt")], LlamaTextTokenizer.FromModelFolder(_folder), 1, 1, null).Tokens.Length,
            PretrainedModelExport.CountTokens([Path.Combine(_folder, "corpus.txt")], _folder).Tokens);
    }

    [TestMethod]
    public void ACancelledRunResumesToTheSameBitsAsAnUninterruptedOne()
    {
        new CausalLmPretrainer(Options("straight", steps: 12)).Run();

        using var cancel = new CancellationTokenSource();
        var first = Options("stopped", steps: 12);
        first.CancellationToken = cancel.Token;
        first.Progress = new SyncProgress(p =>
        {
            if (p.Step == 5)
            {
                cancel.Cancel();
            }
        });
        Assert.ThrowsExactly<OperationCanceledException>(() => new CausalLmPretrainer(first).Run());
        Assert.AreEqual(5, PretrainingCheckpoint.ReadState(Path.Combine(_folder, "stopped"))!.Step);

        var summary = new CausalLmPretrainer(Options("stopped", steps: 12)).Run();

        Assert.IsTrue(summary.Resumed);
        Assert.AreEqual(12, summary.Steps);
        AssertSameCheckpoint("straight", "stopped");
        CollectionAssert.AreEqual(Enumerable.Range(1, 12).Select(i => (long)i).ToArray(),
            PretrainingMetrics.Read(Path.Combine(_folder, "stopped", PretrainingCheckpoint.MetricsFileName)).Select(m => m.Step).ToArray());
    }

    [TestMethod]
    public void ACrashedRunRepeatsTheLostStepsAndStillMatchesBitForBit()
    {
        new CausalLmPretrainer(Options("straight", steps: 12)).Run();

        var crashing = Options("crashed", steps: 12);
        crashing.CheckpointEverySteps = 3;
        crashing.Progress = new SyncProgress(p =>
        {
            if (p.Step == 8)
            {
                throw new InvalidTimeZoneException("simulated crash");
            }
        });
        Assert.ThrowsExactly<InvalidTimeZoneException>(() => new CausalLmPretrainer(crashing).Run());
        var state = PretrainingCheckpoint.ReadState(Path.Combine(_folder, "crashed"))!;
        Assert.AreEqual(6, state.Step, "The last committed checkpoint is step 6; steps 7 and 8 are lost.");
        Assert.AreEqual((int)(6 * 4 / WindowsIn("crashed")), state.Epoch);
        Assert.AreEqual(1, Directory.GetFiles(Path.Combine(_folder, "crashed"), "ckpt-*.safetensors").Length, "Older tensor files are deleted.");

        new CausalLmPretrainer(Options("crashed", steps: 12)).Run();

        AssertSameCheckpoint("straight", "crashed");
        var steps = PretrainingMetrics.Read(Path.Combine(_folder, "crashed", PretrainingCheckpoint.MetricsFileName)).Select(m => m.Step).ToArray();
        CollectionAssert.AreEqual(Enumerable.Range(1, 12).Select(i => (long)i).ToArray(), steps, "Lines written after the checkpoint are dropped on resume.");
    }

    [TestMethod]
    public void AResumeWithOtherOptionsIsRefused()
    {
        new CausalLmPretrainer(Options("run", steps: 2)).Run();
        var other = Options("run", steps: 4);
        other.LearningRate = 5e-3;

        var error = Assert.ThrowsExactly<InvalidOperationException>(() => new CausalLmPretrainer(other).Run());
        StringAssert.Contains(error.Message, "another run");

        // The token budget is not part of the fingerprint: a run may be extended.
        var longer = new CausalLmPretrainer(Options("run", steps: 4)).Run();
        Assert.IsTrue(longer.Resumed);
        Assert.AreEqual(4, longer.Steps);
    }

    [TestMethod]
    public void BadOptionsAreRejectedWithTheirNames()
    {
        var options = Options("run", steps: 2);
        options.BatchSize = 0;
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new CausalLmPretrainer(options));
        StringAssert.Contains(error.Message, "BatchSize");

        options = Options("run", steps: 2);
        options.CorpusFiles = [Path.Combine(_folder, "missing.txt")];
        Assert.ThrowsExactly<FileNotFoundException>(() => new CausalLmPretrainer(options));

        options = Options("run", steps: 2);
        options.ModelConfig = options.ModelConfig! with { VocabSize = 100 };
        var vocab = Assert.ThrowsExactly<ArgumentException>(() => new CausalLmPretrainer(options).Run());
        StringAssert.Contains(vocab.Message, "VocabSize");
    }

    [TestMethod]
    public void TrainingStepsLeaveNoLiveTensors()
    {
        // Compares a short and a long run so that only per-step leaks count (building a model may hold a
        // constant number of tensors of its own).
        new CausalLmPretrainer(Options("warm", steps: 2)).Run(); // one-time state: rotary tables, generators
        var start = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        new CausalLmPretrainer(Options("short", steps: 2)).Run();
        var afterShort = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        new CausalLmPretrainer(Options("long", steps: 14)).Run();
        var afterLong = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Assert.AreEqual(afterShort - start, afterLong - afterShort,
            $"A 14-step run (with evaluations, checkpoints and a best model) left more live tensors than a 2-step run: {afterLong - afterShort} against {afterShort - start}.");
    }

    private CausalLmPretrainerOptions Options(string run, int steps)
    {
        var corpus = Path.Combine(_folder, "corpus.txt");
        if (!File.Exists(corpus))
        {
            File.WriteAllText(corpus, string.Join("\n\n", Enumerable.Range(0, 6).SelectMany(_ => _sentences)));
        }

        return new CausalLmPretrainerOptions
        {
            ModelConfig = TinyModels.Config(hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 64, vocab: 400),
            TokenizerFolder = _folder,
            CorpusFiles = [corpus],
            ValidationFile = corpus,
            SequenceLength = 16,
            BatchSize = 4,
            LearningRate = 2e-3,
            WarmupSteps = 2,
            MaxTokens = steps * 4L * 16,
            CheckpointFolder = Path.Combine(_folder, run),
            EvalEverySteps = 4,
            EvalMaxTokens = 64,
            LogEverySteps = 1,
            Seed = 11,
        };
    }

    private long WindowsIn(string run)
    {
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_folder);
        return PackedCorpus.Build([Path.Combine(_folder, "corpus.txt")], tokenizer, 16, 1, Path.Combine(_folder, run, "cache")).WindowCount;
    }

    private void AssertSameCheckpoint(string expectedRun, string actualRun)
    {
        using var scope = NewDisposeScope();
        var expectedState = PretrainingCheckpoint.ReadState(Path.Combine(_folder, expectedRun))!;
        var actualState = PretrainingCheckpoint.ReadState(Path.Combine(_folder, actualRun))!;
        Assert.AreEqual(expectedState.Step, actualState.Step);
        Assert.AreEqual(expectedState.OptimizerSteps, actualState.OptimizerSteps);
        Assert.AreEqual(expectedState.Epoch, actualState.Epoch);
        Assert.AreEqual(expectedState.WindowInEpoch, actualState.WindowInEpoch);
        var (expected, _) = SafeTensors.ReadFile(Path.Combine(_folder, expectedRun, expectedState.TensorsFile));
        var (actual, _) = SafeTensors.ReadFile(Path.Combine(_folder, actualRun, actualState.TensorsFile));
        CollectionAssert.AreEquivalent(expected.Keys.ToList(), actual.Keys.ToList());
        Assert.IsTrue(expected.Keys.Any(k => k.StartsWith("optim.", StringComparison.Ordinal)), "The optimizer moments are saved.");
        foreach (var (name, tensor) in expected)
        {
            Assert.IsTrue(tensor.bytes.SequenceEqual(actual[name].bytes), $"Tensor '{name}' differs between the uninterrupted and the resumed run.");
        }
    }

    private sealed class SyncProgress(Action<PretrainingProgress> report) : IProgress<PretrainingProgress>
    {
        public void Report(PretrainingProgress value) => report(value);
    }
}
