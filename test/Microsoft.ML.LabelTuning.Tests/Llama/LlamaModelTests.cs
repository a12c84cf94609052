using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

[TestClass]
public sealed class LlamaModelTests
{
    private const double Tight = 1e-5;

    [TestMethod]
    public void BidirectionalModeDiffersFromCausalAndMatchesItselfAtEveryPosition()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel();
        var ids = RandomIds(2, 9, 101, seed: 1);
        var causal = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;
        var bidirectional = model.call(new LlamaInput { InputIds = ids, Causal = false }).LastHiddenState;

        Assert.IsTrue(MaxAbsDiff(causal, bidirectional) > 1e-2, "Bidirectional attention must change the outputs.");

        // Causal: position 3 ignores later tokens; bidirectional: it does not.
        var changed = ids.clone();
        changed[.., 8] = torch.tensor(55L);
        var causalChanged = model.call(new LlamaInput { InputIds = changed }).LastHiddenState;
        var bidirectionalChanged = model.call(new LlamaInput { InputIds = changed, Causal = false }).LastHiddenState;
        AssertClose(causal[.., ..8], causalChanged[.., ..8], Tight, "causal prefix positions after changing the last token");
        Assert.IsTrue(MaxAbsDiff(bidirectional[.., 3], bidirectionalChanged[.., 3]) > 1e-3, "Bidirectional position 3 must see the last token.");
    }

    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void RightPaddedBatchEqualsEachRowAlone(bool causal)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel();
        var longRow = RandomIds(1, 8, 101, seed: 2);
        var shortRow = RandomIds(1, 5, 101, seed: 3);
        var ids = torch.cat([longRow, torch.cat([shortRow, torch.zeros(1, 3, dtype: ScalarType.Int64)], 1)], 0); // [2, 8]
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }).view(2, 8);

        var batched = model.call(new LlamaInput { InputIds = ids, AttentionMask = mask, Causal = causal }).LastHiddenState;
        var aloneLong = model.call(new LlamaInput { InputIds = longRow, Causal = causal }).LastHiddenState;
        var aloneShort = model.call(new LlamaInput { InputIds = shortRow, Causal = causal }).LastHiddenState;

        AssertClose(aloneLong, batched[..1], Tight, "unpadded row");
        AssertClose(aloneShort, batched[1..2, ..5], Tight, "right-padded row");
        Assert.IsFalse(batched.isnan().any().item<bool>(), "Padded positions must not hold NaN.");
    }

    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void LeftPaddedBatchEqualsEachRowAloneWithPositionsFromTheMask(bool causal)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel();
        var longRow = RandomIds(1, 8, 101, seed: 4);
        var shortRow = RandomIds(1, 5, 101, seed: 5);
        var ids = torch.cat([longRow, torch.cat([torch.zeros(1, 3, dtype: ScalarType.Int64), shortRow], 1)], 0); // [2, 8]
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1 }).view(2, 8);
        var positions = AttentionMasks.PositionIdsFromMask(mask);
        CollectionAssert.AreEqual(new long[] { 0, 0, 0, 0, 1, 2, 3, 4 }, positions[1].data<long>().ToArray());

        var batched = model.call(new LlamaInput { InputIds = ids, AttentionMask = mask, PositionIds = positions, Causal = causal }).LastHiddenState;
        var aloneLong = model.call(new LlamaInput { InputIds = longRow, Causal = causal }).LastHiddenState;
        var aloneShort = model.call(new LlamaInput { InputIds = shortRow, Causal = causal }).LastHiddenState;

        AssertClose(aloneLong, batched[..1], Tight, "unpadded row");
        AssertClose(aloneShort, batched[1..2, 3..], Tight, "left-padded row");
        // Causal left padding leaves the first query rows with no visible key: they must stay finite.
        Assert.IsFalse(batched.isnan().any().item<bool>(), "Fully padded query rows must not produce NaN.");
    }

    [TestMethod]
    public void InputsEmbedsPathEqualsIdsPath()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel();
        var ids = RandomIds(2, 6, 101, seed: 6);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }).view(2, 6);
        var fromIds = model.call(new LlamaInput { InputIds = ids, AttentionMask = mask }).LastHiddenState;
        var embeds = model.EmbedTokens.call(ids);
        var fromEmbeds = model.call(new LlamaInput { InputsEmbeds = embeds, AttentionMask = mask }).LastHiddenState;
        AssertClose(fromIds, fromEmbeds, 0, "inputs_embeds vs input_ids");
    }

    [TestMethod]
    public void PrefixKeyValuesChangeOutputsAndAnEmptyPrefixChangesNothing()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig();
        using var model = TinyModel(config);
        var ids = RandomIds(2, 6, 101, seed: 7);
        var plain = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;

        var empty = RandomPrefix(config, batch: 2, length: 0);
        var withEmpty = model.call(new LlamaInput { InputIds = ids, PrefixKeyValues = empty }).LastHiddenState;
        AssertClose(plain, withEmpty, 0, "zero-length prefix");

        var prefix = RandomPrefix(config, batch: 2, length: 3);
        var withPrefix = model.call(new LlamaInput { InputIds = ids, PrefixKeyValues = prefix }).LastHiddenState;
        Assert.IsTrue(MaxAbsDiff(plain, withPrefix) > 1e-2, "A prefix must change the outputs.");

        // A batch-shared [1, KV, P, Dh] prefix broadcasts over the batch.
        var shared = prefix.Select(p => (p.Key[..1], p.Value[..1])).ToList();
        var sharedOut = model.call(new LlamaInput { InputIds = ids[..1], PrefixKeyValues = shared }).LastHiddenState;
        AssertClose(withPrefix[..1], sharedOut, Tight, "batch-shared prefix");

        // RoPE is relative: a fully masked prefix with positions shifted by P equals no prefix at all.
        var maskedOut = model.call(new LlamaInput
        {
            InputIds = ids,
            PrefixKeyValues = prefix,
            AttentionMask = torch.cat([torch.zeros(2, 3, dtype: ScalarType.Int64), torch.ones(2, 6, dtype: ScalarType.Int64)], 1),
        }).LastHiddenState;
        AssertClose(plain, maskedOut, 1e-4, "masked-out prefix");

        // A mask over the tokens only ([B, T]) attends to the whole prefix.
        var tokenMask = model.call(new LlamaInput
        {
            InputIds = ids,
            PrefixKeyValues = prefix,
            AttentionMask = torch.ones(2, 6, dtype: ScalarType.Int64),
        }).LastHiddenState;
        AssertClose(withPrefix, tokenMask, Tight, "token-only mask with a prefix");
    }

    [TestMethod]
    public void PrefixGradientsFlowToThePrefixTensors()
    {
        using var scope = torch.NewDisposeScope();
        var config = TinyConfig();
        using var model = TinyModel(config);
        foreach (var p in model.parameters())
        {
            p.requires_grad = false;
        }

        var prefix = RandomPrefix(config, batch: 1, length: 2).Select(p => (p.Key.requires_grad_(), p.Value.requires_grad_())).ToList();
        var output = model.call(new LlamaInput { InputIds = RandomIds(1, 4, 101, seed: 8), PrefixKeyValues = prefix }).LastHiddenState;
        output.sum().backward();
        Assert.IsNotNull(prefix[0].Item1.grad);
        Assert.IsTrue(prefix[^1].Item2.grad!.abs().sum().item<float>() > 0, "The last layer's prefix values must receive gradient.");
        Assert.IsTrue(model.parameters().All(p => p.grad is null), "Frozen parameters must get no gradient.");
    }

    [TestMethod]
    [DataRow(2)]
    [DataRow(4)]
    public void KvCacheIncrementalDecodeEqualsFullForward(int kvHeads)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig(kvHeads);
        using var model = TinyModel(config);
        var ids = RandomIds(2, 10, 101, seed: 9);
        var full = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;

        using var cache = new LlamaKvCache(config.NumHiddenLayers);
        var parts = new List<Tensor> { model.call(new LlamaInput { InputIds = ids[.., ..6], Cache = cache }).LastHiddenState };
        Assert.AreEqual(6L, cache.Length);
        for (var i = 6; i < 10; i++)
        {
            parts.Add(model.call(new LlamaInput { InputIds = ids[.., i..(i + 1)], Cache = cache }).LastHiddenState);
        }

        Assert.AreEqual(10L, cache.Length);
        AssertClose(full, torch.cat(parts, 1), 1e-5, "cached decode");

        // Reuse a text's keys for two different suffixes.
        cache.Truncate(6);
        var suffixA = model.call(new LlamaInput { InputIds = ids[.., 6..], Cache = cache }).LastHiddenState;
        AssertClose(full[.., 6..], suffixA, 1e-5, "suffix after truncation");
        cache.Truncate(6);
        using var repeated = cache.Select(torch.tensor(new long[] { 1, 1, 1 }));
        var other = RandomIds(3, 2, 101, seed: 10);
        var suffixB = model.call(new LlamaInput { InputIds = other, Cache = repeated }).LastHiddenState;
        var fullB = model.call(new LlamaInput { InputIds = torch.cat([ids[1..2, ..6].expand(3, 6), other], 1) }).LastHiddenState;
        AssertClose(fullB[.., 6..], suffixB, 1e-5, "batch-selected cache");
    }

    [TestMethod]
    public void KvCacheHonoursAPaddingMaskOverThePast()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig();
        using var model = TinyModel(config);
        var ids = RandomIds(1, 7, 101, seed: 11);
        var mask = torch.tensor(new long[] { 1, 1, 0, 1, 1, 1, 1 }).view(1, 7);
        var positions = torch.arange(7, dtype: ScalarType.Int64).view(1, 7);
        var full = model.call(new LlamaInput { InputIds = ids, AttentionMask = mask, PositionIds = positions }).LastHiddenState;

        using var cache = new LlamaKvCache(config.NumHiddenLayers);
        model.call(new LlamaInput { InputIds = ids[.., ..4], AttentionMask = mask[.., ..4], Cache = cache });
        var tail = model.call(new LlamaInput { InputIds = ids[.., 4..], AttentionMask = mask, Cache = cache }).LastHiddenState;
        AssertClose(full[.., 4..], tail, 1e-5, "masked past");
    }

    [TestMethod]
    public void FusedQkvEqualsSeparateProjections()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel(TinyConfig() with { AttentionBias = true });
        var ids = RandomIds(2, 5, 101, seed: 12);
        var fused = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;
        foreach (var layer in model.Layers)
        {
            layer.SelfAttention.FuseQkv = false;
        }

        var separate = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;
        AssertClose(fused, separate, 1e-5, "fused vs separate q/k/v");
    }

    [TestMethod]
    public void ReplacedProjectionKeepsItsNameAndIsUsed()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel();
        var ids = RandomIds(1, 5, 101, seed: 13);
        var before = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;
        var attention = model.Layers[0].SelfAttention;
        Linear? original = null;
        attention.ReplaceProjection("v_proj", linear =>
        {
            original = linear;
            return new Doubled(linear);
        });
        model.Layers[1].Mlp.ReplaceProjection("up_proj", linear => new Doubled(linear));

        Assert.IsNotNull(original);
        Assert.IsInstanceOfType<Doubled>(attention.Projections.Single(p => p.Name == "v_proj").Module);
        var keys = model.state_dict().Keys.ToArray();
        CollectionAssert.Contains(keys, "layers.0.self_attn.v_proj.inner.weight");
        CollectionAssert.Contains(keys, "layers.1.mlp.up_proj.inner.weight");
        CollectionAssert.DoesNotContain(keys, "layers.0.self_attn.v_proj.weight");
        var after = model.call(new LlamaInput { InputIds = ids }).LastHiddenState;
        Assert.IsTrue(MaxAbsDiff(before, after) > 1e-3, "The replacement must be used by forward.");
        Assert.ThrowsExactly<InvalidOperationException>(() => attention.ReplaceProjection("v_proj", l => new Doubled(l)));
        Assert.ThrowsExactly<ArgumentException>(() => attention.ReplaceProjection("w_proj", l => new Doubled(l)));
        CollectionAssert.AreEqual(new[] { "gate_proj", "up_proj", "down_proj" }, model.Layers[0].Mlp.Projections.Select(p => p.Name).ToArray());
    }

    [TestMethod]
    public void HiddenStatesFollowHuggingFaceOrder()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig(layers: 3);
        using var model = TinyModel(config);
        var ids = RandomIds(2, 4, 101, seed: 14);
        var output = model.call(new LlamaInput { InputIds = ids, OutputHiddenStates = true });
        Assert.AreEqual(config.NumHiddenLayers + 1, output.HiddenStates!.Count);
        AssertClose(model.EmbedTokens.call(ids), output.HiddenStates[0], 0, "embeddings");
        AssertClose(output.LastHiddenState, output.HiddenStates[^1], 0, "last entry is the normed output");
        Assert.IsNull(model.call(new LlamaInput { InputIds = ids }).HiddenStates);
    }

    [TestMethod]
    public void ForwardFreesLayerOutputsEarlyButKeepsTheCallersEmbeddingsAndRequestedHiddenStates()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var config = TinyConfig(layers: 3);
        using var model = TinyModel(config);
        var ids = RandomIds(2, 5, 101, seed: 16);
        var embeds = model.EmbedTokens.call(ids);
        var first = model.call(new LlamaInput { InputsEmbeds = embeds }).LastHiddenState;

        // The caller's embeddings are not the model's to free, and a second forward over them gives the same output.
        Assert.IsFalse(embeds.IsInvalid, "The caller's InputsEmbeds were disposed by the forward.");
        AssertClose(first, model.call(new LlamaInput { InputsEmbeds = embeds }).LastHiddenState, 0, "second forward");

        // Requested hidden states are all kept, each equal to running the layers one by one.
        var output = model.call(new LlamaInput { InputIds = ids, OutputHiddenStates = true });
        Assert.IsTrue(output.HiddenStates!.All(h => !h.IsInvalid), "A requested hidden state was disposed.");
        var (cos, sin) = model.Rotary.ForRange(0, 5, embeds.device, embeds.dtype);
        var context = new AttentionContext(cos, sin, null, true, null, null);
        var hidden = embeds;
        for (var i = 0; i < config.NumHiddenLayers - 1; i++)
        {
            hidden = model.Layers[i].call(hidden, context);
            AssertClose(hidden, output.HiddenStates![i + 1], 1e-6, $"hidden state {i + 1}");
        }
    }

    [TestMethod]
    public void CausalLmTiesOrOwnsItsHead()
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        torch.manual_seed(3);
        using var tied = new LlamaForCausalLM(TinyConfig(tied: true));
        using var untied = new LlamaForCausalLM(TinyConfig());
        CollectionAssert.DoesNotContain(tied.state_dict().Keys.ToArray(), "lm_head.weight");
        CollectionAssert.Contains(untied.state_dict().Keys.ToArray(), "lm_head.weight");
        CollectionAssert.Contains(untied.state_dict().Keys.ToArray(), "model.layers.1.self_attn.q_proj.weight");

        var ids = RandomIds(2, 4, 101, seed: 15);
        var logits = tied.call(new LlamaInput { InputIds = ids });
        CollectionAssert.AreEqual(new long[] { 2, 4, 101 }, logits.shape);
        var hidden = tied.Model.call(new LlamaInput { InputIds = ids }).LastHiddenState;
        AssertClose(torch.matmul(hidden, tied.Model.EmbedTokens.weight!.t()), logits, 1e-5, "tied logits");
    }

    [TestMethod]
    public void BadInputsAreRejectedWithTheirShapes()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyModel();
        var ids = RandomIds(2, 4, 101, seed: 16);
        var both = Assert.ThrowsExactly<ArgumentException>(() => model.call(new LlamaInput { InputIds = ids, InputsEmbeds = torch.zeros(2, 4, 32) }));
        StringAssert.Contains(both.Message, "Exactly one");
        var badMask = Assert.ThrowsExactly<ArgumentException>(() => model.call(new LlamaInput { InputIds = ids, AttentionMask = torch.ones(2, 5) }));
        StringAssert.Contains(badMask.Message, "[2, 5]");
        var badPrefix = Assert.ThrowsExactly<ArgumentException>(() => model.call(new LlamaInput { InputIds = ids, PrefixKeyValues = [(torch.zeros(2, 2, 3, 8), torch.zeros(2, 2, 3, 8))] }));
        StringAssert.Contains(badPrefix.Message, "2 layers");
    }

    [TestMethod]
    public void RandomInitialisationIsSeededAndFollowsTheConfig()
    {
        using var a = TinyModel(seed: 5);
        using var b = TinyModel(seed: 5);
        using var c = TinyModel(seed: 6);
        var wa = a.Layers[0].SelfAttention.Projections.First().Module.parameters().First();
        var wb = b.Layers[0].SelfAttention.Projections.First().Module.parameters().First();
        var wc = c.Layers[0].SelfAttention.Projections.First().Module.parameters().First();
        Assert.AreEqual(0f, MaxAbsDiff(wa, wb));
        Assert.IsTrue(MaxAbsDiff(wa, wc) > 0);
        using var std = wa.std();
        Assert.AreEqual(0.2, std.item<float>(), 0.02, "Linear weights ~ N(0, initializer_range).");
        Assert.AreEqual(0f, a.EmbedTokens.weight![0].abs().sum().item<float>(), "The padding row starts at zero.");
        Assert.AreEqual(1f, a.Norm.Weight.mean().item<float>());
    }

    /// <summary>A stand-in for a LoRA wrapper: twice the wrapped Linear, registered under "inner".</summary>
    private sealed class Doubled : nn.Module<Tensor, Tensor>
    {
        [TorchSharp.Utils.ComponentName(Name = "inner")]
        private readonly Linear _inner;

        public Doubled(Linear linear) : base(nameof(Doubled))
        {
            _inner = linear;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => _inner.call(x) * 2;
    }
}
