using Microsoft.Extensions.AI;
using Microsoft.ML.LabelTuning.Generation;
using Microsoft.ML.LabelTuning.Tests.Tokenizers;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tests.Generation;

[TestClass]
public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] _conversation =
    [
        new(ChatRole.System, "Be brief."),
        new(ChatRole.User, "Hi"),
        new(ChatRole.Assistant, "Hello."),
        new(ChatRole.User, "Name a colour."),
    ];

    [TestMethod]
    [DataRow(null, ChatTemplateKind.Plain)]
    [DataRow("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}", ChatTemplateKind.ChatMl)]
    [DataRow("{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n'  + message['content'] + eos_token }}{% endif %}{% endfor %}", ChatTemplateKind.Zephyr)]
    [DataRow("{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}", ChatTemplateKind.Llama2)]
    [DataRow("{{ messages }}", ChatTemplateKind.Plain)]
    public void DetectsTheTemplateFamily(string? template, ChatTemplateKind expected)
        => Assert.AreEqual(expected, ChatTemplate.DetectKind(template));

    [TestMethod]
    public void RendersChatMl()
        => Assert.AreEqual(
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n" +
            "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
            ChatTemplate.Of(ChatTemplateKind.ChatMl).Render(_conversation));

    [TestMethod]
    public void RendersZephyr()
        => Assert.AreEqual(
            "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello.</s>\n<|user|>\nName a colour.</s>\n<|assistant|>\n",
            ChatTemplate.Of(ChatTemplateKind.Zephyr).Render(_conversation));

    [TestMethod]
    public void RendersLlama2WithTheSystemPromptInTheFirstInstruction()
        => Assert.AreEqual(
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] Name a colour. [/INST]",
            ChatTemplate.Of(ChatTemplateKind.Llama2).Render(_conversation));

    [TestMethod]
    public void RecognisesAndRendersTheLlama3TemplateAsItsSpecialTokens()
    {
        using var folder = new TempFolder();
        var tokenizer = LlamaTextTokenizer.FromModelFolder(TokenizerFixtures.WriteLlama3Folder(folder.Path));
        var template = ChatTemplate.Detect(tokenizer.ChatTemplate, "<|begin_of_text|>", "<|end_of_text|>");

        var prompt = template.Render(_conversation);
        var ids = tokenizer.Encode(prompt, addSpecialTokens: !template.WritesBos, parseSpecialTokens: true);

        Assert.AreEqual(ChatTemplateKind.Llama3, template.Kind, "the real LLaMA-3 tokenizer_config.json's template");
        Assert.AreEqual(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
            prompt);
        Assert.AreEqual(128000, ids[0], "one BOS, written by the template");
        Assert.AreEqual(1, ids.Count(id => id == 128000));
        Assert.AreEqual(5, ids.Count(id => id == 128006), "<|start_header_id|> is one token per message");
        Assert.AreEqual(4, ids.Count(id => id == 128009), "<|eot_id|> closes each message");
        CollectionAssert.Contains(template.StopSequences.ToList(), "<|eot_id|>");
    }

    [TestMethod]
    public void RendersPlainRoleLinesAndOpensTheAssistantTurn()
    {
        var template = ChatTemplate.Of(ChatTemplateKind.Plain);
        Assert.AreEqual("System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Name a colour.\n\nAssistant:", template.Render(_conversation));
        CollectionAssert.Contains(template.StopSequences.ToList(), "\nUser:");
    }
}
