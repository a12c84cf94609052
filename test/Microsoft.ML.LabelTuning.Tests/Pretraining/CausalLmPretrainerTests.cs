using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Pretraining;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;
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
        Assert.AreEqual(0.25, Cosine(0, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(1.0, Cosine(3, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(1.0, Cosine(4, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(0.55, Cosine(52, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(0.1, Cosine(100, 100, 1.0, 4, 0.1), 1e-12);
        Assert.AreEqual(0.1, Cosine(500, 100, 1.0, 4, 0.1), 1e-12);
    }

    [TestMethod]
    public void WarmupStableDecayHoldsThePeakThenFallsLinearlyToTheFloorOverTheLastSteps()
    {
        Assert.AreEqual(0.25, Wsd(0, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(1.0, Wsd(3, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(1.0, Wsd(50, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(1.0, Wsd(79, 100, 1.0, 4, 0.1, 0.2), 1e-12, "The decay is the last 20 of 100 steps.");
        Assert.AreEqual(1.0 - (0.9 / 20), Wsd(80, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(0.55, Wsd(89, 100, 1.0, 4, 0.1, 0.2), 1e-12);
        Assert.AreEqual(0.1, Wsd(99, 100, 1.0, 4, 0.1, 0.2), 1e-12, "The last step trains at the floor.");
        Assert.AreEqual(0.1, Wsd(500, 100, 1.0, 4, 0.1, 0.2), 1e-12);

        // Raising the budget before the decay starts leaves every step already taken unchanged.
        for (var step = 0; step < 80; step++)
        {
            Assert.AreEqual(Wsd(step, 100, 1.0, 4, 0.1, 0.2), Wsd(step, 200, 1.0, 4, 0.1, 0.2), 1e-12);
        }

        Assert.AreEqual(1.0, LearningRateSchedule.RewarmFactor(9, 10, 4), 1e-12);
        Assert.AreEqual(0.25, LearningRateSchedule.RewarmFactor(10, 10, 4), 1e-12);
        Assert.AreEqual(1.0, LearningRateSchedule.RewarmFactor(13, 10, 4), 1e-12);
        Assert.AreEqual(1.0, LearningRateSchedule.RewarmFactor(10, null, 0), 1e-12);
    }

    private static double Cosine(long step, long totalSteps, double peak, int warmupSteps, double floorRatio)
        => new LearningRateSchedule(ScheduleShape.Cosine, peak, totalSteps, warmupSteps, floorRatio).At(step);

    private static double Wsd(long step, long totalSteps, double peak, int warmupSteps, double floorRatio, double decayFraction)
        => new LearningRateSchedule(ScheduleShape.WarmupStableDecay, peak, totalSteps, warmupSteps, floorRatio, decayFraction).At(step);

    [TestMethod]
    public void APortableStateContinuesTheRunInAFreshRunFolder()
    {
        var state = Path.Combine(_folder, "state");
        var first = Options("machine1", steps: 6);
        first.PortableStateFolder = state;
        new CausalLmPretrainer(first).Run();

        // The portable state holds the run's float32 weights at its last checkpoint, its position and its curve.
        var info = PortablePretrainingState.Read(state)!;
        var full = TrainingCheckpoint.ReadState(Path.Combine(_folder, "machine1"))!;
        var position = PretrainingPosition.Of(full);
        Assert.AreEqual(6, info.Step);
        Assert.AreEqual((position.Epoch, position.WindowInEpoch, position.Tokens), (info.Epoch, info.WindowInEpoch, info.Tokens));
        Assert.AreEqual(full.Fingerprint, info.Fingerprint);
        using (var scope = NewDisposeScope())
        {
            var (weights, _) = SafeTensors.ReadFile(Path.Combine(state, info.WeightsFile));
            var (checkpoint, _) = SafeTensors.ReadFile(Path.Combine(_folder, "machine1", TrainingCheckpoint.TensorsFileName));
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
        var resumed = TrainingCheckpoint.ReadState(Path.Combine(_folder, "machine2"))!;
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

    /// <summary>
    /// A portable state in format 1, the layout committed in models/labeltuning-default/pretraining (written here by
    /// hand, field by field), is continued by the training engine: the weights are loaded, and step, tokens and data
    /// position carry on from it.
    /// </summary>
    [TestMethod]
    public void AFormat1PortableStateWrittenInTheOldLayoutContinuesTheRun()
    {
        new CausalLmPretrainer(Options("machine1", steps: 6)).Run();
        var full = TrainingCheckpoint.ReadState(Path.Combine(_folder, "machine1"))!;
        var position = PretrainingPosition.Of(full);
        var state = Path.Combine(_folder, "state");
        Directory.CreateDirectory(state);
        var weightsFile = "weights-000000006.safetensors";
        using (var scope = NewDisposeScope())
        {
            var (tensors, _) = SafeTensors.ReadFile(Path.Combine(_folder, "machine1", TrainingCheckpoint.TensorsFileName));
            var weights = tensors.Where(kv => kv.Key.StartsWith("param.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key["param.".Length..], kv => kv.Value);
            SafeTensors.WriteFile(Path.Combine(state, weightsFile), weights,
                new Dictionary<string, string> { ["format"] = "pt", ["step"] = "6", ["fingerprint"] = full.Fingerprint });
        }

        var tokenizer = LlamaTextTokenizer.FromModelFolder(_folder);
        var corpus = PackedCorpus.Build([Path.Combine(_folder, "corpus.txt")], tokenizer, 16, 1, null);
        var json = new System.Text.Json.Nodes.JsonObject
        {
            ["format_version"] = 1,
            ["step"] = 6,
            ["tokens"] = position.Tokens,
            ["epoch"] = position.Epoch,
            ["window_in_epoch"] = position.WindowInEpoch,
            ["train_seconds"] = 12.5,
            ["fingerprint"] = full.Fingerprint,
            ["corpus_hash"] = corpus.ContentHash,
            ["valid_hash"] = corpus.ContentHash,
            ["tokenizer_sha256"] = PortablePretrainingState.Sha256Of(Path.Combine(_folder, "tokenizer.model")),
            ["recipe"] = "the recipe in words",
            ["weights_file"] = weightsFile,
            ["weights_sha256"] = PortablePretrainingState.Sha256Of(Path.Combine(state, weightsFile)),
            ["optimizer"] = "AdamW moments not kept: reset to zero (bias correction restarts) with a linear re-warmup",
            ["history"] = new System.Text.Json.Nodes.JsonArray("2026-12-06: written by hand in format 1"),
            ["saved_at"] = "2026-12-06T12:59:22.7468818Z",
        };
        File.WriteAllText(Path.Combine(state, "pretraining-state.json"), json.ToJsonString());

        // No step to take: the run folder's first checkpoint holds exactly the state's weights.
        var loaded = Options("machine2", steps: 6);
        loaded.PortableStateFolder = state;
        var summary = new CausalLmPretrainer(loaded).Run();
        Assert.IsTrue(summary.Resumed);
        Assert.AreEqual(6, summary.Steps);
        using (var scope = NewDisposeScope())
        {
            var (weights, _) = SafeTensors.ReadFile(Path.Combine(state, weightsFile));
            var (checkpoint, _) = SafeTensors.ReadFile(Path.Combine(_folder, "machine2", TrainingCheckpoint.TensorsFileName));
            foreach (var (name, tensor) in weights)
            {
                Assert.IsTrue(tensor.bytes.SequenceEqual(checkpoint[$"param.{name}"].bytes), $"Weight '{name}' was not loaded from the format-1 state.");
            }
        }

        var continued = Options("machine2", steps: 8);
        continued.PortableStateFolder = state;
        var reports = new List<PretrainingProgress>();
        continued.Progress = new SyncProgress(reports.Add);
        summary = new CausalLmPretrainer(continued).Run();
        Assert.AreEqual(7, reports[0].Step, "The run continues after the state's step, never from step 1.");
        Assert.AreEqual(7L * 4 * 16, reports[0].Tokens);
        Assert.AreEqual(8, summary.Steps);
        var resumed = TrainingCheckpoint.ReadState(Path.Combine(_folder, "machine2"))!;
        Assert.AreEqual(6L, resumed.MomentsResetAtStep, "The moments were reset at the state's step and the rate re-warms from there.");
        Assert.AreEqual(2, resumed.OptimizerSteps);
        var (epoch, window) = new WindowOrder(corpus.WindowCount, 11).Locate(8 * 4);
        Assert.AreEqual(new PretrainingPosition(8L * 4 * 16, epoch, window), PretrainingPosition.Of(resumed));
        Assert.IsTrue(resumed.TrainSeconds >= 12.5, "The train time carries over.");
        var updated = PortablePretrainingState.Read(state)!;
        Assert.AreEqual((8L, 1), (updated.Step, updated.FormatVersion));
        Assert.AreEqual("2026-12-06: written by hand in format 1", updated.History[0]);
    }

    /// <summary>
    /// A full checkpoint in format 1 (checkpoint.json naming ckpt-{step}.safetensors with the AdamW moments, what a run
    /// started before the training engine writes) is migrated once, with a message, and resumes to the same bits as an
    /// uninterrupted run.
    /// </summary>
    [TestMethod]
    public void AFormat1FullCheckpointIsMigratedOnceAndResumesToTheUninterruptedBits()
    {
        new CausalLmPretrainer(Options("straight", steps: 12)).Run();
        using (var cancel = new CancellationTokenSource())
        {
            var first = Options("old", steps: 12);
            first.CancellationToken = cancel.Token;
            first.Progress = new SyncProgress(p =>
            {
                if (p.Step == 6)
                {
                    cancel.Cancel();
                }
            });
            Assert.ThrowsExactly<OperationCanceledException>(() => new CausalLmPretrainer(first).Run());
        }

        // Rewrite the step-6 checkpoint in format 1, as PretrainingCheckpoint wrote it before the engine.
        var folder = Path.Combine(_folder, "old");
        var saved = TrainingCheckpoint.ReadState(folder)!;
        var position = PretrainingPosition.Of(saved);
        using (var scope = NewDisposeScope())
        {
            var (tensors, _) = SafeTensors.ReadFile(Path.Combine(folder, TrainingCheckpoint.TensorsFileName));
            SafeTensors.WriteFile(Path.Combine(folder, "ckpt-000000006.safetensors"), tensors,
                new Dictionary<string, string> { ["format"] = "pt", ["step"] = "6", ["fingerprint"] = saved.Fingerprint });
        }

        File.Delete(Path.Combine(folder, TrainingCheckpoint.TensorsFileName));
        var json = new System.Text.Json.Nodes.JsonObject
        {
            ["format_version"] = 1,
            ["step"] = 6,
            ["optimizer_steps"] = 6,
            ["tokens"] = position.Tokens,
            ["epoch"] = position.Epoch,
            ["window_in_epoch"] = position.WindowInEpoch,
            ["train_seconds"] = saved.TrainSeconds,
            ["best_val_ppl"] = saved.BestValue,
            ["best_step"] = saved.BestStep,
            ["fingerprint"] = saved.Fingerprint,
            ["tensors_file"] = "ckpt-000000006.safetensors",
            ["moments_reset_at_step"] = null,
            ["resume_warmup_steps"] = 0,
            ["rng"] = "manual_seed(seed, step) before every step",
            ["saved_at"] = "2026-12-06T13:00:00.0000000Z",
        };
        File.WriteAllText(Path.Combine(folder, "checkpoint.json"), json.ToJsonString());

        var messages = new StringWriter();
        var error = Console.Error;
        Console.SetError(messages);
        PretrainingSummary summary;
        try
        {
            summary = new CausalLmPretrainer(Options("old", steps: 12)).Run();
        }
        finally
        {
            Console.SetError(error);
        }

        Assert.IsTrue(summary.Resumed);
        StringAssert.Contains(messages.ToString(), "Migrated the pretraining checkpoint");
        StringAssert.Contains(messages.ToString(), "at step 6");
        Assert.AreEqual(0, Directory.GetFiles(folder, "ckpt-*.safetensors").Length, "The format-1 tensor file is deleted once migrated.");
        Assert.AreEqual(TrainingCheckpoint.FormatVersion, TrainingCheckpoint.ReadState(folder)!.FormatVersion);
        AssertSameCheckpoint("straight", "old");
        CollectionAssert.AreEqual(Enumerable.Range(1, 12).Select(i => (long)i).ToArray(),
            PretrainingMetrics.Read(Path.Combine(folder, PretrainingCheckpoint.MetricsFileName)).Select(m => m.Step).ToArray());
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
        Assert.IsFalse(File.Exists(Path.Combine(_folder, "machine4", TrainingCheckpoint.TensorsFileName)), "Nothing was trained.");
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
        Assert.AreEqual(4L, TrainingCheckpoint.ReadState(Path.Combine(_folder, "seed"))!.MomentsResetAtStep);
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
        Assert.AreEqual(5, TrainingCheckpoint.ReadState(Path.Combine(_folder, "stopped"))!.Step);

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
        var state = TrainingCheckpoint.ReadState(Path.Combine(_folder, "crashed"))!;
        Assert.AreEqual(6, state.Step, "The last committed checkpoint is step 6; steps 7 and 8 are lost.");
        Assert.AreEqual((int)(6 * 4 / WindowsIn("crashed")), PretrainingPosition.Of(state).Epoch);
        Assert.AreEqual(0, Directory.GetFiles(Path.Combine(_folder, "crashed"), "*.tmp").Length, "No temporary file is left behind.");

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
        var expectedState = TrainingCheckpoint.ReadState(Path.Combine(_folder, expectedRun))!;
        var actualState = TrainingCheckpoint.ReadState(Path.Combine(_folder, actualRun))!;
        Assert.AreEqual(expectedState.Step, actualState.Step);
        Assert.AreEqual(expectedState.OptimizerSteps, actualState.OptimizerSteps);
        Assert.AreEqual(PretrainingPosition.Of(expectedState), PretrainingPosition.Of(actualState));
        var (expected, _) = SafeTensors.ReadFile(Path.Combine(_folder, expectedRun, TrainingCheckpoint.TensorsFileName));
        var (actual, _) = SafeTensors.ReadFile(Path.Combine(_folder, actualRun, TrainingCheckpoint.TensorsFileName));
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
