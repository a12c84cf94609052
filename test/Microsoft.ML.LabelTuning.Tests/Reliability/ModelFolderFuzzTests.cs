using System.Text;
using CsCheck;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Hostile <c>config.json</c> and <c>model.safetensors.index.json</c> files, alone and in model folders: every file
/// loads or is refused with an error that names it, and a config that describes a bigger model than its checkpoint
/// holds is refused before the model is built.
/// </summary>
[TestClass]
public sealed class ModelFolderFuzzTests
{
    private const string Shard1 = "model-00001-of-00002.safetensors";
    private const string Shard2 = "model-00002-of-00002.safetensors";

    /// <summary>A real transformers config of a tiny model, with the keys newer versions write.</summary>
    internal const string SeedConfig = """
        {
          "architectures": ["LlamaForCausalLM"],
          "model_type": "llama",
          "hidden_size": 16,
          "intermediate_size": 32,
          "num_hidden_layers": 1,
          "num_attention_heads": 2,
          "num_key_value_heads": 1,
          "head_dim": 8,
          "vocab_size": 32,
          "max_position_embeddings": 64,
          "rms_norm_eps": 1e-05,
          "rope_theta": 10000.0,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
          "tie_word_embeddings": false,
          "attention_bias": false,
          "mlp_bias": false,
          "hidden_act": "silu",
          "initializer_range": 0.02,
          "bos_token_id": 1,
          "eos_token_id": [2, 3],
          "pad_token_id": null,
          "torch_dtype": "float32",
          "transformers_version": "4.46.0",
          "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}
        }
        """;

    private const string SeedIndex = $$"""
        {
          "metadata": {"total_size": 80},
          "weight_map": {
            "a.weight": "{{Shard1}}",
            "a.bias": "{{Shard1}}",
            "b.weight": "{{Shard2}}",
            "b.bias": "{{Shard2}}"
          }
        }
        """;

    internal static readonly (string Fault, string MessagePart)[] ConfigFaults =
    [
        ("config implies more weights than the checkpoint", "implies at least"),
        ("config disagrees with the checkpoint's shapes", "does not match the"),
        ("invalid JSON, nesting or value type", "is not a valid LLaMA config"),
        ("null document", "holds null"),
        ("bad rope_parameters", "'rope_parameters'"),
        ("unsupported model_type", "'model_type'"),
        ("non-positive size", "must be a positive integer"),
        ("heads not divisible", "must divide"),
        ("hidden size not divisible by heads", "must be divisible"),
        ("odd head width", "even head width"),
        ("non-finite or non-positive float", "finite number"),
        ("unsupported hidden_act", "'hidden_act'"),
        ("bad rope_scaling", "'rope_scaling."),
    ];

    internal static readonly (string Fault, string MessagePart)[] IndexFaults =
    [
        ("invalid JSON or nesting", "is not valid JSON"),
        ("invalid UTF-8 or lone surrogate", "not valid Unicode"),
        ("no weight_map object", "has no 'weight_map' object"),
        ("non-string shard name", "not a file name"),
        ("shard name outside the folder or not .safetensors", "which is not a .safetensors file name"),
        ("duplicate tensor in the index", "twice."),
        ("empty weight_map", "empty 'weight_map'"),
        ("missing shard file", "which is not in"),
        ("index disagrees with the shards or the model", "does not match the"),
        ("bad shard (safetensors fault)", "Safetensors file"),
    ];

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [Timeout(300_000)]
    public void HostileConfigFilesLoadOrAreRefusedNamingTheFile()
    {
        var gen = Gen.Frequency(
            (7, HostileInputs.EditedJson(SeedConfig).Select(b => new FuzzCase("json", b))),
            (3, HostileInputs.EditedBytes(Encoding.UTF8.GetBytes(SeedConfig)).Select(b => new FuzzCase("bytes", b))));
        var stats = Fuzz.Run(
            "config.json",
            gen,
            (folder, input) => Fuzz.WriteFile(folder, "config.json", input.Bytes),
            (_, file) => LlamaConfig.Load(file),
            new AllocationBound(PerByte: 48, Constant: 96 * 1024),
            context: TestContext,
            faults: ConfigFaults);
        Assert.IsTrue(stats.Outcomes.ContainsKey("accepted") && stats.Outcomes.ContainsKey(nameof(InvalidDataException)), stats.ToString());
        if (stats.Cases >= 10_000)
        {
            stats.AssertReached("invalid JSON, nesting or value type", "non-positive size", "bad rope_scaling", "non-finite or non-positive float", "unsupported model_type");
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void HostileConfigsInAModelFolderAreRefusedBeforeTheModelIsBuilt()
    {
        // The checkpoint of the seed config: any config that implies more weights than it holds must be refused
        // from the headers alone, so no case may take long or build a model of the config's size.
        var weights = CheckpointOf(LlamaConfig.Parse(SeedConfig));
        var gen = HostileInputs.EditedJson(SeedConfig).Select(b => new FuzzCase("json", b));
        var stats = Fuzz.Run(
            "config.json in a model folder",
            gen,
            (folder, input) =>
            {
                if (!File.Exists(Path.Combine(folder, HfModelFolder.SafeTensorsFileName)))
                {
                    Fuzz.WriteFile(folder, HfModelFolder.SafeTensorsFileName, weights);
                }

                return Fuzz.WriteFile(folder, "config.json", input.Bytes);
            },
            (folder, _) =>
            {
                using var model = CheckpointLoader.LoadModel(folder);
            },
            new AllocationBound(PerByte: 64, Constant: 512 * 1024),
            cases: Math.Max(1, Fuzz.CasesPerLoader / 5),
            context: TestContext,
            faults: ConfigFaults);
        Assert.IsTrue(stats.Outcomes.ContainsKey("accepted"), stats.ToString());
        if (stats.Cases >= 2_000)
        {
            stats.AssertReached("config implies more weights than the checkpoint", "config disagrees with the checkpoint's shapes");
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void HostileShardIndexesAndShardsLoadOrAreRefusedNamingTheFile()
    {
        using var module = TwoLayers();
        var (shard1, shard2) = Shards(module);
        var modules = new ThreadLocal<nn.Module>(TwoLayers, trackAllValues: true);
        var edited = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>(StringComparer.Ordinal);
        var gen = Gen.Frequency(
            (6, HostileInputs.EditedJson(SeedIndex).Select(b => new FuzzCase("index-json", b))),
            (2, HostileInputs.EditedBytes(Encoding.UTF8.GetBytes(SeedIndex)).Select(b => new FuzzCase("index-bytes", b))),
            (2, HostileInputs.EditedBytes(shard2).Select(b => new FuzzCase("shard-bytes", b))));
        try
        {
            var stats = Fuzz.Run(
                "model.safetensors.index.json",
                gen,
                (folder, input) =>
                {
                    // The seed shards are written once per folder, and the second again after a case that edited it.
                    var shardCase = input.Kind == "shard-bytes";
                    if (!File.Exists(Path.Combine(folder, Shard1)))
                    {
                        Fuzz.WriteFile(folder, Shard1, shard1);
                    }

                    var second = Path.Combine(folder, Shard2);
                    if (shardCase)
                    {
                        Fuzz.WriteFile(folder, Shard2, input.Bytes);
                    }
                    else if (edited.GetValueOrDefault(folder) || !File.Exists(second))
                    {
                        Fuzz.WriteFile(folder, Shard2, shard2);
                    }

                    edited[folder] = shardCase;
                    var index = Fuzz.WriteFile(folder, HfModelFolder.SafeTensorsIndexFileName, shardCase ? Encoding.UTF8.GetBytes(SeedIndex) : input.Bytes);
                    return shardCase ? Path.Combine(folder, Shard2) : index;
                },
                (folder, _) => CheckpointLoader.LoadInto(modules.Value!, HfModelFolder.Open(folder)),
                new AllocationBound(PerByte: 48, Constant: 128 * 1024),
                context: TestContext,
            faults: IndexFaults);
            Assert.IsTrue(stats.Outcomes.ContainsKey("accepted") && stats.Outcomes.ContainsKey(nameof(InvalidDataException)), stats.ToString());
            if (stats.Cases >= 10_000)
            {
                stats.AssertReached(
                    "invalid JSON or nesting", "invalid UTF-8 or lone surrogate", "no weight_map object", "non-string shard name",
                    "shard name outside the folder or not .safetensors", "missing shard file", "index disagrees with the shards or the model", "bad shard (safetensors fault)");
            }
        }
        finally
        {
            foreach (var m in modules.Values)
            {
                m.Dispose();
            }

            modules.Dispose();
        }
    }

    /// <summary>The bytes of a model.safetensors for <paramref name="config"/>.</summary>
    internal static byte[] CheckpointOf(LlamaConfig config)
    {
        var folder = Directory.CreateTempSubdirectory("lt-fuzz-ckpt-").FullName;
        try
        {
            torch.manual_seed(1);
            using var model = new LlamaForCausalLM(config);
            CheckpointLoader.SaveHfFolder(model, config, folder);
            return File.ReadAllBytes(Path.Combine(folder, HfModelFolder.SafeTensorsFileName));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static nn.Module TwoLayers() => nn.Sequential(("a", nn.Linear(2, 3)), ("b", nn.Linear(3, 2)));

    private static (byte[] First, byte[] Second) Shards(nn.Module module)
    {
        var folder = Directory.CreateTempSubdirectory("lt-fuzz-shards-").FullName;
        try
        {
            var state = module.state_dict();
            SafeTensorsWriter.Write(Path.Combine(folder, Shard1), state.Where(p => p.Key.StartsWith("a.", StringComparison.Ordinal)).ToDictionary());
            SafeTensorsWriter.Write(Path.Combine(folder, Shard2), state.Where(p => p.Key.StartsWith("b.", StringComparison.Ordinal)).ToDictionary());
            return (File.ReadAllBytes(Path.Combine(folder, Shard1)), File.ReadAllBytes(Path.Combine(folder, Shard2)));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
