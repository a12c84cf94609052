using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

/// <summary>Full-size architectures built on the meta device: every name and shape, no memory.</summary>
[TestClass]
public sealed class LlamaShapeTests
{
    [TestMethod]
    public void Llama2SevenBHasHuggingFaceNamesAndShapes()
    {
        var config = new LlamaConfig
        {
            HiddenSize = 4096,
            IntermediateSize = 11008,
            NumHiddenLayers = 32,
            NumAttentionHeads = 32,
            NumKeyValueHeads = 32,
            VocabSize = 32000,
            RmsNormEps = 1e-5,
        };
        using var model = new LlamaForCausalLM(config, torch.device("meta"));
        var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var expected = ExpectedShapes(config);
        CollectionAssert.AreEquivalent(expected.Keys.ToArray(), actual.Keys.ToArray());
        foreach (var (name, shape) in expected)
        {
            CollectionAssert.AreEqual(shape, actual[name], $"shape of {name}");
        }

        Assert.IsTrue(model.parameters().All(p => p.device_type == DeviceType.META));
        Assert.AreEqual(6_738_415_616L, actual.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)), "Llama-2-7B parameter count.");
    }

    [TestMethod]
    public void SeventyBStyleGqaShrinksKeyAndValueProjections()
    {
        var config = new LlamaConfig
        {
            HiddenSize = 8192,
            IntermediateSize = 28672,
            NumHiddenLayers = 80,
            NumAttentionHeads = 64,
            NumKeyValueHeads = 8,
            VocabSize = 32000,
            RmsNormEps = 1e-5,
        };
        using var model = new LlamaForCausalLM(config, torch.device("meta"));
        var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        CollectionAssert.AreEqual(new long[] { 1024, 8192 }, actual["model.layers.79.self_attn.k_proj.weight"]);
        CollectionAssert.AreEqual(new long[] { 1024, 8192 }, actual["model.layers.0.self_attn.v_proj.weight"]);
        CollectionAssert.AreEqual(new long[] { 8192, 8192 }, actual["model.layers.0.self_attn.q_proj.weight"]);
        CollectionAssert.AreEquivalent(ExpectedShapes(config).Keys.ToArray(), actual.Keys.ToArray());
        Assert.AreEqual(68_976_648_192L, actual.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)), "Llama-2-70B parameter count.");
    }

    /// <summary>Hugging Face's LlamaForCausalLM keys, written out from the transformers layout.</summary>
    private static Dictionary<string, long[]> ExpectedShapes(LlamaConfig c)
    {
        long d = c.HiddenSize, i = c.IntermediateSize, v = c.VocabSize;
        long dh = c.HiddenSize / c.NumAttentionHeads, kv = c.KeyValueHeadCount * dh;
        var shapes = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [v, d],
            ["model.norm.weight"] = [d],
            ["lm_head.weight"] = [v, d],
        };
        for (var layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            var p = $"model.layers.{layer}.";
            shapes[p + "input_layernorm.weight"] = [d];
            shapes[p + "post_attention_layernorm.weight"] = [d];
            shapes[p + "self_attn.q_proj.weight"] = [d, d];
            shapes[p + "self_attn.k_proj.weight"] = [kv, d];
            shapes[p + "self_attn.v_proj.weight"] = [kv, d];
            shapes[p + "self_attn.o_proj.weight"] = [d, d];
            shapes[p + "mlp.gate_proj.weight"] = [i, d];
            shapes[p + "mlp.up_proj.weight"] = [i, d];
            shapes[p + "mlp.down_proj.weight"] = [d, i];
        }

        return shapes;
    }
}
