using System.Text.Json;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Checkpoints;

[TestClass]
public sealed class CheckpointLoaderTests
{
    [ClassCleanup]
    public static void Cleanup() => DeleteTempFolders();

    [TestMethod]
    [DataRow(false, ScalarType.Float32)]
    [DataRow(true, ScalarType.BFloat16)]
    public void SavedFolderLoadsBackWithIdenticalOutputs(bool tied, ScalarType savedAs)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig(tied: tied);
        torch.manual_seed(11);
        using var original = new LlamaForCausalLM(config);
        var folder = TempFolder("hf");
        CheckpointLoader.SaveHfFolder(original, config, folder, savedAs == ScalarType.Float32 ? null : savedAs);

        var savedConfig = LlamaConfig.Load(Path.Combine(folder, "config.json"));
        Assert.AreEqual(CheckpointLoader.TorchDtypeName(savedAs), savedConfig.TorchDtype);
        using var loaded = CheckpointLoader.LoadCausalLM(folder);
        var ids = RandomIds(2, 6, config.VocabSize, seed: 3);
        var expected = original.call(new LlamaInput { InputIds = ids });
        var actual = loaded.call(new LlamaInput { InputIds = ids });
        if (savedAs == ScalarType.Float32)
        {
            AssertClose(expected, actual, 0, "fp32 round trip");
        }
        else
        {
            // The load must really use the stored weights: compare with the original rounded to bf16.
            foreach (var p in original.parameters())
            {
                p.copy_(p.to(ScalarType.BFloat16).to(ScalarType.Float32));
            }

            AssertClose(original.call(new LlamaInput { InputIds = ids }), actual, 1e-5, "bf16 round trip");
        }
    }

    [TestMethod]
    public void MissingTensorIsNamedWithTheFileAndExpectedShape()
    {
        var (folder, _) = SavedTiny(drop: "model.layers.1.mlp.up_proj.weight");
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadCausalLM(folder));
        StringAssert.Contains(error.Message, "'model.layers.1.mlp.up_proj.weight' is missing");
        StringAssert.Contains(error.Message, Path.Combine(folder, "model.safetensors"));
        StringAssert.Contains(error.Message, "[64, 32]");
    }

    [TestMethod]
    public void ExtraTensorIsNamedWithTheFile()
    {
        var (folder, _) = SavedTiny(add: ("model.layers.0.self_attn.rotary_emb.inv_freq", torch.ones(4)));
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadCausalLM(folder));
        StringAssert.Contains(error.Message, "'model.layers.0.self_attn.rotary_emb.inv_freq'");
        StringAssert.Contains(error.Message, "no counterpart");
        StringAssert.Contains(error.Message, Path.Combine(folder, "model.safetensors"));
    }

    [TestMethod]
    public void WrongShapeIsNamedWithTheFileAndTheShapeTheConfigImplies()
    {
        var (folder, _) = SavedTiny(replace: ("model.layers.0.self_attn.k_proj.weight", torch.zeros(32, 32)));
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadCausalLM(folder));
        StringAssert.Contains(error.Message, "Tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 32] in '" + Path.Combine(folder, "model.safetensors") + "' but the config implies [16, 32].");
        StringAssert.Contains(error.Message, "nothing was loaded");
    }

    [TestMethod]
    public void DecoderLoadsFromACausalLmCheckpointAndAHeadMayBeMissing()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (folder, original) = SavedTiny();
        using (original)
        {
            using var decoder = CheckpointLoader.LoadModel(folder);
            var ids = RandomIds(1, 5, 101, seed: 4);
            AssertClose(original.Model.call(new LlamaInput { InputIds = ids }).LastHiddenState, decoder.call(new LlamaInput { InputIds = ids }).LastHiddenState, 0, "decoder");

            using var classifier = new Classifier(LlamaConfig.Load(Path.Combine(folder, "config.json")));
            var scoreBefore = classifier.Score.weight!.clone();
            var report = CheckpointLoader.LoadInto(classifier, folder, new CheckpointLoadOptions
            {
                IgnoreKeys = ["lm_head.weight"],
                AllowMissingKeys = ["score.*"],
            });
            CollectionAssert.AreEqual(new[] { "score.weight" }, report.MissingAllowed.ToArray());
            CollectionAssert.AreEqual(new[] { "lm_head.weight" }, report.Ignored.ToArray());
            AssertClose(scoreBefore, classifier.Score.weight!, 0, "untouched head");
            AssertClose(original.Model.EmbedTokens.weight!, classifier.Model.EmbedTokens.weight!, 0, "loaded embedding");

            var strict = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadInto(classifier, folder, new CheckpointLoadOptions { IgnoreKeys = ["lm_head.weight"] }));
            StringAssert.Contains(strict.Message, "'score.weight' is missing");
        }
    }

    [TestMethod]
    public void ShardedIndexLoadsAndIsValidated()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig();
        torch.manual_seed(5);
        using var original = new LlamaForCausalLM(config);
        var folder = TempFolder("sharded");
        var state = original.state_dict();
        var first = state.Where(kv => kv.Key.Contains("layers.0", StringComparison.Ordinal) || kv.Key.Contains("embed", StringComparison.Ordinal)).ToDictionary();
        var second = state.Where(kv => !first.ContainsKey(kv.Key)).ToDictionary();
        SafeTensorsWriter.Write(Path.Combine(folder, "model-00001-of-00002.safetensors"), first);
        SafeTensorsWriter.Write(Path.Combine(folder, "model-00002-of-00002.safetensors"), second);
        var map = first.Keys.ToDictionary(k => k, _ => "model-00001-of-00002.safetensors")
            .Concat(second.Keys.ToDictionary(k => k, _ => "model-00002-of-00002.safetensors")).ToDictionary();
        WriteIndex(folder, map);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJson());

        var hf = HfModelFolder.Open(folder);
        Assert.IsTrue(hf.IsSharded);
        Assert.AreEqual(2, hf.WeightFiles.Count);
        using (var loaded = CheckpointLoader.LoadCausalLM(folder))
        {
            var ids = RandomIds(2, 4, config.VocabSize, seed: 6);
            AssertClose(original.call(new LlamaInput { InputIds = ids }), loaded.call(new LlamaInput { InputIds = ids }), 0, "sharded load");
        }

        // A shard the index names must exist, and names must stay inside the folder.
        WriteIndex(folder, new Dictionary<string, string>(map) { ["model.norm.weight"] = "model-00003-of-00003.safetensors" });
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => HfModelFolder.Open(folder)).Message, "model-00003-of-00003.safetensors");
        WriteIndex(folder, new Dictionary<string, string>(map) { ["model.norm.weight"] = "../outside.safetensors" });
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => HfModelFolder.Open(folder)).Message, "../outside.safetensors");

        // The index must place each tensor in the shard that holds it.
        WriteIndex(folder, new Dictionary<string, string>(map) { ["model.norm.weight"] = "model-00001-of-00002.safetensors" });
        var misplaced = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadCausalLM(folder));
        StringAssert.Contains(misplaced.Message, "'model.norm.weight'");
    }

    [TestMethod]
    [DataRow("pytorch_model.bin")]
    [DataRow("consolidated.00.pth")]
    [DataRow("model.ckpt")]
    public void PickleCheckpointsAreRefusedWithAConversionHint(string file)
    {
        var folder = TempFolder("pickle");
        File.WriteAllText(Path.Combine(folder, "config.json"), TinyConfig().ToJson());
        File.WriteAllBytes(Path.Combine(folder, file), [0x80, 0x02]);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadCausalLM(folder));
        StringAssert.Contains(error.Message, file);
        StringAssert.Contains(error.Message, "arbitrary code");
        StringAssert.Contains(error.Message, "save_pretrained(out, safe_serialization=True)");
    }

    [TestMethod]
    public void SafetensorsWinOverPickleAndAnEmptyFolderIsExplained()
    {
        var (folder, model) = SavedTiny();
        model.Dispose();
        File.WriteAllBytes(Path.Combine(folder, "pytorch_model.bin"), [0x80]);
        CheckpointLoader.LoadCausalLM(folder).Dispose();

        var empty = TempFolder("empty");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => HfModelFolder.Open(empty)).Message, "model.safetensors");
    }

    [TestMethod]
    public void LoadingTakesLittleMoreMemoryThanTheModel()
    {
        // ~41 MB of float32 weights: the load copies tensor by tensor out of a memory map.
        var config = TinyConfig() with { HiddenSize = 512, IntermediateSize = 1536, NumAttentionHeads = 8, NumKeyValueHeads = 8, NumHiddenLayers = 4, VocabSize = 1000 };
        var folder = TempFolder("mem");
        torch.manual_seed(1);
        using (var model = new LlamaForCausalLM(config))
        {
            CheckpointLoader.SaveHfFolder(model, config, folder);
        }

        var fileBytes = new FileInfo(Path.Combine(folder, "model.safetensors")).Length;
        GC.Collect();
        var before = AnonymousResidentBytes();
        using var loaded = CheckpointLoader.LoadCausalLM(folder);
        var growth = AnonymousResidentBytes() - before;
        if (before > 0)
        {
            Assert.IsTrue(growth < 1.3 * fileBytes, $"Loading a {fileBytes / 1e6:F1} MB file grew private memory by {growth / 1e6:F1} MB.");
        }
    }

    private static long AnonymousResidentBytes()
    {
        // Linux only: RssAnon excludes the page cache of the mapped file. Elsewhere the check is skipped.
        const string Status = "/proc/self/status";
        if (!File.Exists(Status))
        {
            return 0;
        }

        var line = File.ReadLines(Status).FirstOrDefault(l => l.StartsWith("RssAnon:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }

    private static void WriteIndex(string folder, Dictionary<string, string> map)
        => File.WriteAllText(
            Path.Combine(folder, "model.safetensors.index.json"),
            JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = map }));

    private static (string Folder, LlamaForCausalLM Model) SavedTiny(
        string? drop = null, (string Key, Tensor Value)? add = null, (string Key, Tensor Value)? replace = null)
    {
        var config = TinyConfig();
        torch.manual_seed(21);
        var model = new LlamaForCausalLM(config);
        var folder = TempFolder("tiny");
        var state = new Dictionary<string, Tensor>(model.state_dict());
        if (drop is not null)
        {
            state.Remove(drop);
        }

        if (add is { } a)
        {
            state[a.Key] = a.Value;
        }

        if (replace is { } r)
        {
            state[r.Key] = r.Value;
        }

        CheckpointLoader.SaveHfFolder(state, config, folder);
        return (folder, model);
    }

    /// <summary>What a sequence classifier looks like to the loader: the decoder as "model" plus a "score" head.</summary>
    private sealed class Classifier : nn.Module
    {
        [TorchSharp.Utils.ComponentName(Name = "model")]
        private readonly LlamaModel _model;

        [TorchSharp.Utils.ComponentName(Name = "score")]
        private readonly Linear _score;

        public Classifier(LlamaConfig config) : base(nameof(Classifier))
        {
            _model = new LlamaModel(config);
            _score = nn.Linear(config.HiddenSize, 3, hasBias: false);
            RegisterComponents();
        }

        public LlamaModel Model => _model;

        public Linear Score => _score;
    }
}
