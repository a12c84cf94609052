using System.Text.Json;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

/// <summary>
/// The shortcuts the engine takes for speed give the same results as the plain computation (issue 20): the last
/// layer run at the pooled positions only, LoRA merged into the base weight for scoring, and prompt tuning's
/// virtual tokens computed once as a key/value prefix.
/// </summary>
[TestClass]
public sealed class LlamaFastPathTests
{
    private const double Tight = 1e-5;

    [TestMethod]
    [DataRow(true, true, false, false)]
    [DataRow(true, false, false, false)]
    [DataRow(false, true, false, false)]
    [DataRow(false, false, false, false)]
    [DataRow(true, true, true, false)]
    [DataRow(true, true, false, true)]
    [DataRow(true, true, true, true)]
    [DataRow(true, false, true, false)]
    [DataRow(true, false, true, true)]
    public void OutputPositionsEqualTheFullOutputAtThosePositions(bool causal, bool padded, bool prefix, bool scoring)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = TinyModel();
        model.train(!scoring); // scoring: eval mode, where q/k/v run from the cached concatenated weight
        var config = model.Config;
        var ids = RandomIds(3, 7, config.VocabSize, seed: 3);
        var mask = torch.ones(3, 7, dtype: ScalarType.Int64);
        if (padded)
        {
            mask[1, 5..] = torch.tensor(0L);
            mask[2, 3..] = torch.tensor(0L);
        }

        var prefixes = prefix ? RandomPrefix(config, batch: 1, length: 4, seed: 5) : null;
        var input = new LlamaInput { InputIds = ids, AttentionMask = padded ? mask : null, Causal = causal, PrefixKeyValues = prefixes };
        var full = model.call(input).LastHiddenState; // [B, T, D]
        var positions = torch.tensor(new long[] { 6, 4, 1 });
        var selected = model.call(input with { OutputPositions = positions }).LastHiddenState; // [B, 1, D]
        var expected = full.gather(1, positions.view(-1, 1, 1).expand(-1, 1, config.HiddenSize));
        AssertClose(expected, selected, Tight, "hidden states at the selected positions");
    }

    [TestMethod]
    public void LoraScoringWithTheMergedWeightEqualsTheUnmergedPath()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(11);
        var settings = JsonSerializer.SerializeToElement(new LoraSettings(4, 16, 0.1, ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"], Pooling.Last, false), SettingsJson.Options);
        using var classifier = (LlamaSequenceClassifier)TuningMethodRegistry.Get(TuningMethod.LabelSupervised).Factory.Build(TinyModel(), 3, settings, tokenLevel: false);
        using (torch.no_grad())
        {
            foreach (var lora in classifier.modules().OfType<LoraLinear>())
            {
                lora.AdapterParameters.Last().normal_(0, 0.2); // B starts at zero; make the update matter
            }
        }

        var batch = TokenBatch.Collate([[5, 6, 7, 8, 9], [10, 11, 12]], 0, CPU);
        classifier.SetTraining(false);
        var unmerged = classifier.Logits(batch).detach(); // gradients on: the unmerged path
        Tensor merged;
        using (torch.no_grad())
        {
            merged = classifier.Logits(batch);
        }

        AssertClose(unmerged, merged, Tight, "merged against unmerged LoRA logits");

        // A training step changes the factors; the next scoring call merges again.
        classifier.SetTraining(true);
        using (torch.no_grad())
        {
            classifier.modules().OfType<LoraLinear>().First().AdapterParameters.First().add_(0.5);
        }

        classifier.SetTraining(false);
        var unmergedAfter = classifier.Logits(batch).detach();
        using (torch.no_grad())
        {
            merged = classifier.Logits(batch);
        }

        Assert.IsTrue(MaxAbsDiff(unmerged, unmergedAfter) > 1e-4, "Changing A must change the logits.");
        AssertClose(unmergedAfter, merged, Tight, "merged logits after the factors changed");
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void CausalAttentionAfterAPrefixEqualsTheSameKeysAsACachedPast(bool allOnesMask)
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyModel();
        foreach (var parameter in model.parameters())
        {
            parameter.requires_grad_(false);
        }

        var config = model.Config;
        var (batch, tokens, prefixLength) = (3, 7, 4);
        var ids = RandomIds(batch, tokens, config.VocabSize, seed: 11);
        var keys = RandomPrefix(config, batch, prefixLength, seed: 7);
        (Tensor Key, Tensor Value)[] Leaves() => keys.Select(kv => (kv.Key.clone().requires_grad_(), kv.Value.clone().requires_grad_())).ToArray();

        // No padding and no cache (an all-ones mask is dropped): the mask built for the prefix.
        var prefix = Leaves();
        var input = new LlamaInput { InputIds = ids, PrefixKeyValues = prefix, AttentionMask = allOnesMask ? torch.ones(batch, tokens, dtype: ScalarType.Int64) : null };
        var fast = model.call(input).LastHiddenState; // [B, T, D]
        fast.sum().backward();

        // The same keys as a KV cache's past: positions also start at P, and the mask is built for the past.
        var past = Leaves();
        using var cache = new LlamaKvCache(config.NumHiddenLayers);
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            cache.Append(layer, past[layer].Key, past[layer].Value);
        }

        var reference = model.call(new LlamaInput { InputIds = ids, Cache = cache }).LastHiddenState;
        reference.sum().backward();

        AssertClose(reference, fast, Tight, "hidden states");
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            AssertClose(past[layer].Key.grad!, prefix[layer].Key.grad!, Tight, $"gradient on layer {layer}'s prefix keys");
            AssertClose(past[layer].Value.grad!, prefix[layer].Value.grad!, Tight, $"gradient on layer {layer}'s prefix values");
        }
    }

    [TestMethod]
    public void PromptAsKeyValuePrefixEqualsThePromptBeforeTheText()
    {
        using var scope = torch.NewDisposeScope();
        torch.manual_seed(13);
        var model = TinyModel();
        var settings = JsonSerializer.SerializeToElement(
            new PromptTuningSettings(5, PromptTuningInit.Random, null, 0, 0, 16, 1, Pooling.Last), SettingsJson.Options);
        using var classifier = (LlamaSequenceClassifier)TuningMethodRegistry.Get(TuningMethod.PromptTuning).Factory.Build(model, 3, settings, tokenLevel: false);
        classifier.FreezeBase();
        var adapter = (PromptTuningAdapter)classifier.Adapter;
        var batch = TokenBatch.Collate([[5, 6, 7, 8, 9, 10], [11, 12, 13]], 0, CPU);

        // The plain computation: the prompt prepended to the text's embeddings, the mask extended by ones.
        Tensor Reference()
        {
            var tokens = model.EmbedTokens.call(batch.InputIds);                                         // [B, T, D]
            var embeds = torch.cat([adapter.Prompt().unsqueeze(0).expand(2, -1, -1), tokens], 1);           // [B, n + T, D]
            var mask = torch.cat([torch.ones(2, 5, dtype: ScalarType.Int64), batch.AttentionMask], 1);    // [B, n + T]
            var hidden = model.call(new LlamaInput { InputsEmbeds = embeds, AttentionMask = mask }).LastHiddenState;
            return classifier.Score.call(PoolingOps.Apply(hidden, mask, Pooling.Last));                   // [B, K]
        }

        // Training: same logits and the same gradient on the prompt.
        classifier.SetTraining(true);
        var fast = classifier.Logits(batch);
        fast.sum().backward();
        var fastGrad = adapter.PromptEmbeddings.grad!.clone();
        adapter.PromptEmbeddings.grad!.zero_();
        var reference = Reference();
        reference.sum().backward();
        AssertClose(reference, fast, Tight, "training logits");
        AssertClose(adapter.PromptEmbeddings.grad!, fastGrad, Tight, "gradient on the prompt");

        // Scoring: the prompt's keys and values are cached, and dropped when training resumes.
        classifier.SetTraining(false);
        using (torch.no_grad())
        {
            AssertClose(Reference(), classifier.Logits(batch), Tight, "scoring logits");
            AssertClose(Reference(), classifier.Logits(batch), Tight, "scoring logits from the cached prompt keys");
            classifier.SetTraining(true);
            adapter.PromptEmbeddings.add_(0.3);
            classifier.SetTraining(false);
            AssertClose(Reference(), classifier.Logits(batch), Tight, "scoring logits after the prompt changed");
        }
    }
}
