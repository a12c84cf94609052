using Microsoft.Extensions.AI;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Generation;
using Microsoft.ML.LabelTuning.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Generation;

[TestClass]
public sealed class LlamaChatClientTests
{
    private static string _model = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 91);
    }

    [ClassCleanup]
    public static void DeleteModel() => Directory.Delete(_model, recursive: true);

    [TestMethod]
    public void KvCacheDecodingEqualsFullRecomputation()
    {
        using var model = CheckpointLoader.LoadCausalLM(_model);
        var tokenizer = LlamaTextTokenizer.FromModelFolder(_model);
        var generator = new LlamaTextGenerator(model, tokenizer, CPU);
        var prompt = tokenizer.Encode("the movie was");
        var outcome = generator.GenerateAll(prompt, new GenerationSettings { MaxNewTokens = 12 });
        Assert.AreEqual(12, outcome.GeneratedIds.Count, "no stop ids: every step yields a token");

        // Reference: greedy decoding that recomputes the whole sequence at every step, without a cache.
        var ids = prompt.ToList();
        using (no_grad())
        {
            for (var step = 0; step < 12; step++)
            {
                using var scope = NewDisposeScope();
                var input = tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count], ScalarType.Int64);
                var logits = model.call(new Microsoft.ML.LabelTuning.Llama.LlamaInput { InputIds = input })[0, -1]; // [V]
                ids.Add((int)logits.argmax().item<long>());
            }
        }

        CollectionAssert.AreEqual(ids.Skip(prompt.Count).ToArray(), outcome.GeneratedIds.ToArray());
        Assert.AreEqual(tokenizer.Decode(outcome.GeneratedIds), outcome.Text);
    }

    [TestMethod]
    public async Task GeneratesTextEndToEndAndStopsAtTheTokenLimit()
    {
        using var client = new LlamaChatClient(_model, new LlamaChatClientOptions { MaxOutputTokens = 10 });
        Assert.AreEqual(ChatTemplateKind.Plain, client.Template);
        _ = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Warm up.")]); // lazily built rotary tables
        var baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Write about a film.")]);
        Assert.AreEqual(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.IsTrue(response.Usage!.OutputTokenCount is > 0 and <= 10, $"output tokens {response.Usage.OutputTokenCount}");
        Assert.IsTrue(response.Usage.InputTokenCount > 5);
        Assert.IsTrue(response.FinishReason == ChatFinishReason.Length || response.FinishReason == ChatFinishReason.Stop);
        Assert.AreEqual(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "generation leaves no live tensors");

        var again = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Write about a film.")]);
        Assert.AreEqual(response.Text, again.Text, "greedy decoding is deterministic");
    }

    [TestMethod]
    public async Task StreamingYieldsTheSameTextAsOneResponse()
    {
        using var client = new LlamaChatClient(_model, new LlamaChatClientOptions { MaxOutputTokens = 16, Temperature = 0.8f, TopP = 0.9f, Seed = 3 });
        ChatMessage[] messages = [new(ChatRole.User, "Tell a story.")];
        var whole = await client.GetResponseAsync(messages);
        var parts = new List<string>();
        ChatFinishReason? finish = null;
        await foreach (var update in client.GetStreamingResponseAsync(messages))
        {
            parts.Add(update.Text);
            finish = update.FinishReason ?? finish;
        }

        Assert.AreEqual(whole.Text, string.Concat(parts), "the same seed samples the same reply, streamed or not");
        Assert.AreEqual(whole.FinishReason, finish);
        var other = await client.GetResponseAsync(messages, new ChatOptions { Seed = 4, MaxOutputTokens = 16 });
        Assert.AreNotEqual(whole.Text, other.Text, "another seed samples another reply");
    }

    [TestMethod]
    public void SamplingKeepsOnlyTheNucleus()
    {
        var logits = new float[] { 5f, 4.9f, -10f, -10f };
        var settings = new GenerationSettings { Temperature = 1f, TopP = 0.5f };
        var random = new Random(1);
        var picks = Enumerable.Range(0, 200).Select(_ => LlamaTextGenerator.Pick((float[])logits.Clone(), settings, new HashSet<int>(), random)).ToHashSet();
        CollectionAssert.AreEquivalent(new[] { 0 }, picks.ToArray(), "top-p 0.5 keeps only the most likely token here");
        var wide = Enumerable.Range(0, 200).Select(_ => LlamaTextGenerator.Pick((float[])logits.Clone(), settings with { TopP = 0.99f }, new HashSet<int>(), random)).ToHashSet();
        CollectionAssert.AreEquivalent(new[] { 0, 1 }, wide.ToArray());
    }

    [TestMethod]
    public void UsesTheChatTemplateOfTokenizerConfig()
    {
        var folder = TinyModels.CreateFolder(seed: 92);
        try
        {
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
                """{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"}""");
            using var client = new LlamaChatClient(folder);
            Assert.AreEqual(ChatTemplateKind.ChatMl, client.Template);
            StringAssert.StartsWith(client.RenderPrompt([new ChatMessage(ChatRole.User, "hi")], new ChatOptions { Instructions = "Be kind." }),
                "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nhi<|im_end|>");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void RejectsBadOptionsAndMissingFolders()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new LlamaChatClient(_model, new LlamaChatClientOptions { TopP = 0 }));
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => new LlamaChatClient(Path.Combine(_model, "missing")));
    }

    [TestMethod]
    public async Task TheEmbeddedDefaultModelWritesText()
    {
        var folder = LlamaChatClient.FindDefaultModelFolder();
        if (folder is null)
        {
            Assert.Inconclusive("The embedded default model is not in models/labeltuning-default.");
        }

        // The default model is pretrained on reviews, mail and novels, not on instructions (see its model card): a prompt
        // from its own domain is what it can continue. An instruction such as "Write one sentence about a movie." is
        // out of its domain, and the annealed model answers it with digits.
        using var client = new LlamaChatClient(folder, new LlamaChatClientOptions { MaxOutputTokens = 24, RepetitionPenalty = 1.2f });
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "I watched this movie last night with my family. The acting was")]);
        Assert.IsTrue(response.Text.Trim().Length > 0, "the pretrained model writes something");
        Assert.IsTrue(response.Text.Count(char.IsLetter) > 5, $"reply: '{response.Text}'");
    }
}
