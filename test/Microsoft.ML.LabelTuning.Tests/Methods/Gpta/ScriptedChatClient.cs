using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace Microsoft.ML.LabelTuning.Tests.Methods.Gpta;

/// <summary>A chat client that answers with scripted replies, in order, and records every request.</summary>
internal sealed class ScriptedChatClient : IChatClient
{
    private readonly Queue<Func<string>> _replies;

    public ScriptedChatClient(params string[] replies)
    {
        _replies = new Queue<Func<string>>(replies.Select(r => (Func<string>)(() => r)));
    }

    public ScriptedChatClient(IEnumerable<Func<string>> replies)
    {
        _replies = new Queue<Func<string>>(replies);
    }

    /// <summary>Gets every request: the messages as sent.</summary>
    public List<List<ChatMessage>> Requests { get; } = [];

    /// <summary>Gets the text of the last user message of request <paramref name="i"/>.</summary>
    public string LastUserText(int i) => Requests[i].Last(m => m.Role == ChatRole.User).Text;

    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        Requests.Add(messages.ToList());
        var reply = _replies.Count > 0 ? _replies.Dequeue()() : "(script exhausted)";
        return Task.FromResult(new ChatResponse(new ChatMessage(ChatRole.Assistant, reply)));
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var response = await GetResponseAsync(messages, options, cancellationToken);
        yield return new ChatResponseUpdate(ChatRole.Assistant, response.Text);
    }

    public object? GetService(Type serviceType, object? serviceKey = null) => serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose()
    {
    }
}

/// <summary>
/// Wraps a chat client and records every message that shares a substring of 20 or more characters with any of the
/// forbidden texts (it records rather than throws: the assistant treats client exceptions as failed replies).
/// </summary>
internal sealed class PrivacySpyChatClient : DelegatingChatClient
{
    private readonly HashSet<string> _windows = new(StringComparer.Ordinal);

    public PrivacySpyChatClient(IChatClient inner, IEnumerable<string> forbidden)
        : base(inner)
    {
        foreach (var text in forbidden)
        {
            for (var i = 0; i + 20 <= text.Length; i++)
            {
                _windows.Add(text.Substring(i, 20));
            }
        }
    }

    public List<string> Violations { get; } = [];

    public int MessagesSeen { get; private set; }

    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = Check(messages, options);
        return base.GetResponseAsync(list, options, cancellationToken);
    }

    public override IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var list = Check(messages, options);
        return base.GetStreamingResponseAsync(list, options, cancellationToken);
    }

    private List<ChatMessage> Check(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var list = messages.ToList();
        var texts = list.Select(m => (m.Role.Value, m.Text)).ToList();
        if (options?.Instructions is { } instructions)
        {
            texts.Add(("instructions", instructions));
        }

        foreach (var (role, text) in texts)
        {
            MessagesSeen++;
            for (var i = 0; i + 20 <= text.Length; i++)
            {
                if (_windows.Contains(text.Substring(i, 20)))
                {
                    Violations.Add($"{role}: ...{text.Substring(i, 20)}...");
                }
            }
        }

        return list;
    }
}
