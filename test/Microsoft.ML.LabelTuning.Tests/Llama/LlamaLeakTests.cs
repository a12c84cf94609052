using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

[TestClass]
public sealed class LlamaLeakTests
{
    [TestMethod]
    public void TrainingAndCachedScoringStepsLeaveNoLiveTensors()
    {
        var config = TinyConfig();
        using var model = new LlamaForCausalLM(config);
        using var optimizer = torch.optim.AdamW(model.parameters(), lr: 1e-3);
        var ids = RandomIds(2, 7, config.VocabSize, seed: 1);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }).view(2, 7);
        var prefix = RandomPrefix(config, batch: 1, length: 2);

        float Step()
        {
            using var scope = torch.NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.call(new LlamaInput { InputIds = ids, AttentionMask = mask, PrefixKeyValues = prefix }); // [B, T, V]
            var loss = nn.functional.cross_entropy(logits[.., ..^1].reshape(-1, config.VocabSize), ids[.., 1..].reshape(-1));
            loss.backward();
            optimizer.step();

            using var noGrad = torch.no_grad();
            using var cache = new LlamaKvCache(config.NumHiddenLayers);
            model.call(new LlamaInput { InputIds = ids[.., ..4], Cache = cache });
            model.call(new LlamaInput { InputIds = ids[.., 4..], Cache = cache, Causal = true });
            cache.Truncate(2);
            return loss.item<float>();
        }

        var first = Step(); // warm-up: optimizer state, rotary tables, gradients
        var baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var last = first;
        for (var i = 0; i < 5; i++)
        {
            last = Step();
        }

        Assert.AreEqual(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "Live tensors after 5 more steps.");
        Assert.IsTrue(last < first, $"The loss should fall while memorising one batch ({first} -> {last}).");
    }
}
