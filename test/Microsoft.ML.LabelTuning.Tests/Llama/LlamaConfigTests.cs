using Microsoft.ML.LabelTuning.Llama;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

[TestClass]
public sealed class LlamaConfigTests
{
    [ClassCleanup]
    public static void Cleanup() => DeleteTempFolders();

    private const string Llama31 = """
        {
          "architectures": ["LlamaForCausalLM"],
          "attention_bias": false,
          "bos_token_id": 128000,
          "eos_token_id": [128001, 128008, 128009],
          "hidden_act": "silu",
          "hidden_size": 2048,
          "initializer_range": 0.02,
          "intermediate_size": 8192,
          "max_position_embeddings": 131072,
          "mlp_bias": false,
          "model_type": "llama",
          "num_attention_heads": 32,
          "num_hidden_layers": 16,
          "num_key_value_heads": 8,
          "pretraining_tp": 1,
          "rms_norm_eps": 1e-05,
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "rope_theta": 500000.0,
          "tie_word_embeddings": true,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.45.0.dev0",
          "use_cache": true,
          "vocab_size": 128256
        }
        """;

    [TestMethod]
    public void ReadsALlama32ConfigAndIgnoresUnknownKeys()
    {
        var path = Write(Llama31);
        var config = LlamaConfig.Load(path);
        Assert.AreEqual(2048, config.HiddenSize);
        Assert.AreEqual(8, config.KeyValueHeadCount);
        Assert.AreEqual(64, config.HeadDimension);
        Assert.AreEqual("llama3", config.RopeScaling!.Kind);
        Assert.AreEqual(32.0, config.RopeScaling.Factor);
        CollectionAssert.AreEqual(new[] { 128001, 128008, 128009 }, config.EosTokenId!.ToArray());
        Assert.IsTrue(config.TieWordEmbeddings);
        Assert.AreEqual("bfloat16", config.TorchDtype);
        Assert.AreEqual(path, config.SourcePath);
        Assert.IsTrue(config.ExtensionData!.ContainsKey("pretraining_tp"));
    }

    [TestMethod]
    public void DefaultsFollowHuggingFace()
    {
        var config = LlamaConfig.Parse("""{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "eos_token_id": 2}""");
        config.Validate();
        Assert.AreEqual(4, config.KeyValueHeadCount);
        Assert.AreEqual(16, config.HeadDimension);
        Assert.AreEqual(10000.0, config.RopeTheta);
        Assert.AreEqual("silu", config.HiddenAct);
        Assert.IsNull(config.RopeScaling);
        CollectionAssert.AreEqual(new[] { 2 }, config.EosTokenId!.ToArray());
    }

    [TestMethod]
    public void RoundTripsThroughJson()
    {
        var config = LlamaConfig.Parse(Llama31);
        var again = LlamaConfig.Parse(config.ToJson());
        Assert.AreEqual(config.HiddenSize, again.HiddenSize);
        Assert.AreEqual("llama3", again.RopeScaling?.Kind);
        Assert.AreEqual(config.RopeScaling!.OriginalMaxPositionEmbeddings, again.RopeScaling!.OriginalMaxPositionEmbeddings);
        CollectionAssert.AreEqual(config.EosTokenId!.ToArray(), again.EosTokenId!.ToArray());
        Assert.IsTrue(again.ExtensionData!.ContainsKey("transformers_version"));
    }

    [TestMethod]
    public void AcceptsTransformers5RopeParameters()
    {
        var config = LlamaConfig.Parse("""
            {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10,
             "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 50000.0}, "dtype": "float16"}
            """);
        config.Validate();
        Assert.AreEqual(50000.0, config.RopeTheta);
        Assert.AreEqual("linear", config.RopeScaling!.Kind);
        Assert.AreEqual("float16", config.TorchDtype);
    }

    [TestMethod]
    [DataRow("\"hidden_act\": \"gelu\"", "hidden_act", "silu")]
    [DataRow("\"num_key_value_heads\": 3", "num_key_value_heads", "divide")]
    [DataRow("\"hidden_size\": 0", "hidden_size", "positive")]
    [DataRow("\"rms_norm_eps\": -1", "rms_norm_eps", "positive")]
    [DataRow("\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2}", "rope_scaling.rope_type", "yarn")]
    [DataRow("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}", "rope_scaling.low_freq_factor", "llama3")]
    [DataRow("\"head_dim\": 7", "head_dim", "even")]
    [DataRow("\"model_type\": \"mistral\"", "model_type", "llama")]
    public void RejectsUnusableValuesNamingTheFileAndKey(string entry, string key, string hint)
    {
        var json = "{\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"vocab_size\": 10, " + entry + "}";
        json = json.Replace("\"hidden_size\": 64, ", entry.StartsWith("\"hidden_size\"", StringComparison.Ordinal) ? string.Empty : "\"hidden_size\": 64, ", StringComparison.Ordinal);
        var path = Write(json);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => LlamaConfig.Load(path));
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, $"'{key}'");
        StringAssert.Contains(error.Message, hint);
    }

    [TestMethod]
    public void RejectsMalformedJsonNamingTheFile()
    {
        var path = Write("{\"hidden_size\": \"wide\"}");
        var error = Assert.ThrowsExactly<InvalidDataException>(() => LlamaConfig.Load(path));
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, "hidden_size");
    }

    private static string Write(string json)
    {
        var path = Path.Combine(TempFolder("config"), "config.json");
        File.WriteAllText(path, json);
        return path;
    }
}
