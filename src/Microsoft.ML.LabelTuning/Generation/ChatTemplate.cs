using System.Text;
using Microsoft.Extensions.AI;

namespace Microsoft.ML.LabelTuning.Generation;

/// <summary>The chat formats <see cref="ChatTemplate"/> can render.</summary>
public enum ChatTemplateKind
{
    /// <summary>No chat template: <c>System: …</c>, <c>User: …</c>, <c>Assistant:</c> lines, for base models.</summary>
    Plain,

    /// <summary>LLaMA-2 chat: <c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;…&lt;&lt;/SYS&gt;&gt; user [/INST] assistant &lt;/s&gt;</c>.</summary>
    Llama2,

    /// <summary>ChatML (Qwen, many fine-tunes): <c>&lt;|im_start|&gt;role\n…&lt;|im_end|&gt;</c>.</summary>
    ChatMl,

    /// <summary>Zephyr / TinyLlama-chat: <c>&lt;|user|&gt;\n…&lt;/s&gt;</c>.</summary>
    Zephyr,

    /// <summary>
    /// LLaMA 3.x: <c>&lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\n…&lt;|eot_id|&gt;</c>.
    /// </summary>
    Llama3,
}

/// <summary>
/// Renders a conversation into the prompt text a model was tuned on. Hugging Face keeps the format as a Jinja
/// template in tokenizer_config.json; rather than run Jinja, this recognises the three families most small chat
/// models use by their markers and renders them directly, and falls back to plain role lines.
/// </summary>
internal sealed class ChatTemplate
{
    private ChatTemplate(ChatTemplateKind kind, string bos, string eos)
    {
        Kind = kind;
        Bos = bos;
        Eos = eos;
    }

    /// <summary>Gets the recognised format.</summary>
    public ChatTemplateKind Kind { get; }

    private string Bos { get; }

    private string Eos { get; }

    /// <summary>
    /// Text stops that end the assistant's turn besides the EOS token: the end-of-turn marker, and for the plain
    /// format the start of an invented next turn.
    /// </summary>
    public IReadOnlyList<string> StopSequences => Kind switch
    {
        ChatTemplateKind.ChatMl => ["<|im_end|>", "<|im_start|>"],
        ChatTemplateKind.Llama3 => ["<|eot_id|>", "<|start_header_id|>"],
        ChatTemplateKind.Zephyr => [Eos, "<|user|>", "<|system|>"],
        ChatTemplateKind.Llama2 => [Eos, "[INST]"],
        _ => ["\nUser:", "\nSystem:"],
    };

    /// <summary>Gets a value indicating whether the rendered text starts with BOS itself (else the tokenizer's BOS is added).</summary>
    public bool WritesBos => Kind is ChatTemplateKind.Llama2 or ChatTemplateKind.Llama3;

    /// <summary>Recognises the format of a Jinja chat template (null or unknown gives <see cref="ChatTemplateKind.Plain"/>).</summary>
    /// <param name="template">The template text from tokenizer_config.json, or null.</param>
    /// <param name="bos">The BOS token's text, e.g. <c>&lt;s&gt;</c>.</param>
    /// <param name="eos">The EOS token's text, e.g. <c>&lt;/s&gt;</c>.</param>
    public static ChatTemplate Detect(string? template, string bos = "<s>", string eos = "</s>")
        => new(DetectKind(template), bos, eos);

    /// <summary>A template of a given format (to override detection).</summary>
    public static ChatTemplate Of(ChatTemplateKind kind, string bos = "<s>", string eos = "</s>") => new(kind, bos, eos);

    /// <summary>Recognises a template's family by its markers.</summary>
    public static ChatTemplateKind DetectKind(string? template)
    {
        if (string.IsNullOrWhiteSpace(template))
        {
            return ChatTemplateKind.Plain;
        }

        if (template.Contains("<|im_start|>", StringComparison.Ordinal))
        {
            return ChatTemplateKind.ChatMl;
        }

        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal))
        {
            return ChatTemplateKind.Llama3;
        }

        if (template.Contains("<|user|>", StringComparison.Ordinal) && template.Contains("<|assistant|>", StringComparison.Ordinal))
        {
            return ChatTemplateKind.Zephyr;
        }

        if (template.Contains("[INST]", StringComparison.Ordinal))
        {
            return ChatTemplateKind.Llama2;
        }

        return ChatTemplateKind.Plain;
    }

    /// <summary>Renders the messages and opens the assistant's turn (add_generation_prompt = true).</summary>
    /// <param name="messages">The conversation; system messages are merged in order, tool and other roles are rendered as user text.</param>
    public string Render(IReadOnlyList<ChatMessage> messages)
    {
        var system = string.Join("\n\n", messages.Where(m => m.Role == ChatRole.System).Select(m => m.Text).Where(t => !string.IsNullOrWhiteSpace(t)));
        var turns = messages.Where(m => m.Role != ChatRole.System).ToList();
        var text = new StringBuilder();
        switch (Kind)
        {
            case ChatTemplateKind.ChatMl:
                if (system.Length > 0)
                {
                    text.Append("<|im_start|>system\n").Append(system).Append("<|im_end|>\n");
                }

                foreach (var m in turns)
                {
                    text.Append("<|im_start|>").Append(IsAssistant(m) ? "assistant" : "user").Append('\n').Append(m.Text).Append("<|im_end|>\n");
                }

                text.Append("<|im_start|>assistant\n");
                break;

            case ChatTemplateKind.Llama3:
                // Meta's template: BOS once, each message a header and its trimmed content closed by <|eot_id|>.
                text.Append(Bos);
                if (system.Length > 0)
                {
                    text.Append("<|start_header_id|>system<|end_header_id|>\n\n").Append(system.Trim()).Append("<|eot_id|>");
                }

                foreach (var m in turns)
                {
                    text.Append("<|start_header_id|>").Append(IsAssistant(m) ? "assistant" : "user").Append("<|end_header_id|>\n\n")
                        .Append(m.Text.Trim()).Append("<|eot_id|>");
                }

                text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
                break;

            case ChatTemplateKind.Zephyr:
                if (system.Length > 0)
                {
                    text.Append("<|system|>\n").Append(system).Append(Eos).Append('\n');
                }

                foreach (var m in turns)
                {
                    text.Append(IsAssistant(m) ? "<|assistant|>\n" : "<|user|>\n").Append(m.Text).Append(Eos).Append('\n');
                }

                text.Append("<|assistant|>\n");
                break;

            case ChatTemplateKind.Llama2:
                // Meta's format: the system prompt sits inside the first [INST]; each exchange is its own <s>…</s>.
                var first = true;
                var open = false;
                foreach (var m in turns)
                {
                    if (IsAssistant(m))
                    {
                        if (!open)
                        {
                            text.Append(Bos).Append("[INST]  [/INST]");
                        }

                        text.Append(' ').Append(m.Text.Trim()).Append(' ').Append(Eos);
                        open = false;
                        continue;
                    }

                    var content = m.Text.Trim();
                    if (first && system.Length > 0)
                    {
                        content = $"<<SYS>>\n{system}\n<</SYS>>\n\n{content}";
                    }

                    text.Append(Bos).Append("[INST] ").Append(content).Append(" [/INST]");
                    first = false;
                    open = true;
                }

                if (!open)
                {
                    text.Append(Bos).Append("[INST] ").Append(first && system.Length > 0 ? $"<<SYS>>\n{system}\n<</SYS>>\n\n" : string.Empty).Append(" [/INST]");
                }

                break;

            default:
                if (system.Length > 0)
                {
                    text.Append("System: ").Append(system).Append("\n\n");
                }

                foreach (var m in turns)
                {
                    text.Append(IsAssistant(m) ? "Assistant: " : "User: ").Append(m.Text).Append("\n\n");
                }

                text.Append("Assistant:");
                break;
        }

        return text.ToString();
    }

    private static bool IsAssistant(ChatMessage message) => message.Role == ChatRole.Assistant;
}
