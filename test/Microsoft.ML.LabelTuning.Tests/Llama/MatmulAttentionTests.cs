using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

/// <summary>
/// Masked attention of small size runs as matmul, softmax, matmul instead of the fused kernel (issue 20): the same
/// outputs and gradients as the fused kernel, with padding, a key/value prefix, a KV cache, bidirectional attention,
/// pooled query positions and grouped heads.
/// </summary>
[TestClass]
public sealed class MatmulAttentionTests
{
    private const double Tight = 1e-5;

    [TestMethod]
    public void PathIsChosenByDtypeAndSize()
    {
        using var attention = new LlamaAttention(TinyConfig(), 0);
        Assert.AreEqual(LlamaAttention.DefaultMatmulAttentionMaxScores, attention.MatmulAttentionMaxScores);
        Assert.IsTrue(attention.UsesMatmulAttention(ScalarType.Float32, 8 * 4 * 128 * 148));
        Assert.IsTrue(attention.UsesMatmulAttention(ScalarType.Float32, LlamaAttention.DefaultMatmulAttentionMaxScores));
        Assert.IsFalse(attention.UsesMatmulAttention(ScalarType.Float32, LlamaAttention.DefaultMatmulAttentionMaxScores + 1));
        Assert.IsFalse(attention.UsesMatmulAttention(ScalarType.BFloat16, 16));
        attention.MatmulAttentionMaxScores = 0;
        Assert.IsFalse(attention.UsesMatmulAttention(ScalarType.Float32, 16));
    }

    [TestMethod]
    public void MatmulAttentionEqualsTheFusedKernel()
    {
        using var scope = torch.NewDisposeScope();
        using var attention = new LlamaAttention(TinyConfig(), 0);
        torch.manual_seed(3);
        var q = torch.randn(2, 4, 5, 8);
        var k = torch.randn(2, 4, 7, 8);
        var v = torch.randn(2, 4, 7, 8);
        var allowed = torch.rand(2, 1, 5, 7).gt(0.3);
        allowed[.., .., .., 0] = torch.tensor(true); // every query attends to something
        var mask = torch.zeros(1).masked_fill(allowed.logical_not(), torch.finfo(ScalarType.Float32).min); // [2, 1, 5, 7]
        var expected = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        AssertClose(expected, attention.MatmulAttention(q, k, v, mask), Tight, "matmul attention");
    }

    [TestMethod]
    [DataRow(true, true, false, false, 2, DisplayName = "causal, padded")]
    [DataRow(false, true, false, false, 2, DisplayName = "bidirectional, padded")]
    [DataRow(true, false, true, false, 2, DisplayName = "causal, prefix")]
    [DataRow(true, true, true, false, 2, DisplayName = "causal, padded, prefix")]
    [DataRow(false, true, true, false, 2, DisplayName = "bidirectional, padded, prefix")]
    [DataRow(true, true, true, true, 2, DisplayName = "pooled positions, padded, prefix")]
    [DataRow(true, true, false, true, 4, DisplayName = "pooled positions, padded, no grouped heads")]
    [DataRow(true, true, true, false, 1, DisplayName = "multi-query, padded, prefix")]
    public void OutputsAndGradientsEqualTheFusedKernel(bool causal, bool padded, bool prefix, bool pooled, int kvHeads)
    {
        using var scope = torch.NewDisposeScope();
        var config = TinyConfig(kvHeads);
        var ids = RandomIds(3, 7, config.VocabSize, seed: 21);
        var mask = torch.ones(3, 7, dtype: ScalarType.Int64);
        if (padded)
        {
            mask[1, 5..] = torch.tensor(0L);
            mask[2, ..2] = torch.tensor(0L); // left padding in one row, right padding in another
        }

        var prefixes = prefix ? RandomPrefix(config, batch: 1, length: 4, seed: 5) : null;
        var input = new LlamaInput
        {
            InputIds = ids,
            AttentionMask = padded ? mask : null,
            Causal = causal,
            PrefixKeyValues = prefixes,
            OutputPositions = pooled ? torch.tensor(new long[] { 6, 4, 6 }) : null,
        };

        // The loss reads real tokens only, as training does: a padded query row of a causal left-padded sequence sees
        // no key at all, and what it returns there is never used.
        var weight = pooled ? torch.ones(3, 1, 1) : mask.unsqueeze(-1).to(ScalarType.Float32); // [B, T or 1, 1]
        var (matmulOutput, matmulGradients) = Run(config, input, weight, maxScores: LlamaAttention.DefaultMatmulAttentionMaxScores);
        var (fusedOutput, fusedGradients) = Run(config, input, weight, maxScores: 0);
        AssertClose(fusedOutput * weight, matmulOutput * weight, Tight, "output");
        Assert.HasCount(fusedGradients.Count, matmulGradients);
        foreach (var (name, gradient) in fusedGradients)
        {
            AssertCloseToScale(gradient, matmulGradients[name], Tight, $"gradient of {name}");
        }
    }

    [TestMethod]
    public void KvCacheOverAPaddedPastEqualsTheFusedKernel()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig();
        var ids = RandomIds(2, 7, config.VocabSize, seed: 22);
        var mask = torch.tensor(new long[] { 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1 }).view(2, 7);
        Tensor Tail(long maxScores)
        {
            using var model = TinyModel(config);
            SetMaxScores(model, maxScores);
            using var cache = new LlamaKvCache(config.NumHiddenLayers);
            model.call(new LlamaInput { InputIds = ids[.., ..4], AttentionMask = mask[.., ..4], Cache = cache });
            return model.call(new LlamaInput { InputIds = ids[.., 4..], AttentionMask = mask, Cache = cache }).LastHiddenState;
        }

        AssertClose(Tail(0), Tail(LlamaAttention.DefaultMatmulAttentionMaxScores), Tight, "cached tail");
    }

    private static (Tensor Output, Dictionary<string, Tensor> Gradients) Run(LlamaConfig config, LlamaInput input, Tensor weight, long maxScores)
    {
        using var model = TinyModel(config);
        SetMaxScores(model, maxScores);
        var prefix = input.PrefixKeyValues?.Select(p => (p.Key.detach().requires_grad_(), p.Value.detach().requires_grad_())).ToArray();
        var output = model.call(input with { PrefixKeyValues = prefix }).LastHiddenState;
        (output * weight).pow(2).mean().backward();
        var gradients = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.detach().clone());
        for (var i = 0; i < (prefix?.Length ?? 0); i++)
        {
            gradients[$"prefix.{i}.key"] = prefix![i].Item1.grad!.clone();
            gradients[$"prefix.{i}.value"] = prefix[i].Item2.grad!.clone();
        }

        return (output.detach(), gradients);
    }

    private static void SetMaxScores(LlamaModel model, long maxScores)
    {
        foreach (var layer in model.Layers)
        {
            layer.SelfAttention.MatmulAttentionMaxScores = maxScores;
        }
    }
}
