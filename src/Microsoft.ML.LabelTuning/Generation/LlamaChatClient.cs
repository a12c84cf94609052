using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Generation;

/// <summary>Options of <see cref="LlamaChatClient"/>; a call's <see cref="ChatOptions"/> override them.</summary>
public sealed class LlamaChatClientOptions
{
    /// <summary>Most tokens per reply (ChatOptions.MaxOutputTokens overrides). Positive. Default 256.</summary>
    public int MaxOutputTokens { get; set; } = 256;

    /// <summary>Sampling temperature; 0 decodes greedily (ChatOptions.Temperature overrides). Non-negative. Default 0.</summary>
    public float Temperature { get; set; }

    /// <summary>Nucleus (top-p) mass kept when sampling (ChatOptions.TopP overrides). In (0, 1]. Default 0.9.</summary>
    public float TopP { get; set; } = 0.9f;

    /// <summary>Most likely tokens kept when sampling, or null for all (ChatOptions.TopK overrides). Default null.</summary>
    public int? TopK { get; set; }

    /// <summary>CTRL-style penalty on tokens already seen; 1 disables. At least 1. Default 1.</summary>
    public float RepetitionPenalty { get; set; } = 1f;

    /// <summary>Seed of the sampler (ChatOptions.Seed overrides). Default 0.</summary>
    public long Seed { get; set; }

    /// <summary>The chat format; null detects it from tokenizer_config.json's chat_template (plain lines when absent). Default null.</summary>
    public ChatTemplateKind? Template { get; set; }

    /// <summary>CUDA device ordinal to run on, or null for the CPU. Default null.</summary>
    public int? GpuDeviceId { get; set; }

    internal void Validate()
    {
        if (MaxOutputTokens <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxOutputTokens), MaxOutputTokens, $"MaxOutputTokens must be positive but is {MaxOutputTokens}.");
        }

        if (!(Temperature >= 0) || !float.IsFinite(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, $"Temperature must be a non-negative finite number but is {Temperature}.");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, $"TopP must be in (0, 1] but is {TopP}.");
        }

        if (!(RepetitionPenalty >= 1) || !float.IsFinite(RepetitionPenalty))
        {
            throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, $"RepetitionPenalty must be at least 1 but is {RepetitionPenalty}.");
        }
    }
}

/// <summary>
/// A Microsoft.Extensions.AI chat client that runs a LLaMA-family causal language model from a Hugging Face folder
/// in process, with this library's own engine: the conversation is rendered with the model's chat template, then
/// decoded greedily or with top-p sampling over a KV cache. No network is used. Calls are serialised (one
/// generation at a time); dispose the client to release the model.
/// </summary>
/// <example>
/// <code>
/// using var chat = new LlamaChatClient("models/labeltuning-default");
/// var reply = await chat.GetResponseAsync("Write one sentence about movies.");
/// </code>
/// </example>
public sealed class LlamaChatClient : IChatClient
{
    private readonly LlamaForCausalLM _model;
    private readonly LlamaTextGenerator _generator;
    private readonly ChatTemplate _template;
    private readonly LlamaChatClientOptions _options;
    private readonly ChatClientMetadata _metadata;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly int[] _stopIds;
    private bool _disposed;

    /// <summary>Loads the model and tokenizer in <paramref name="modelFolder"/>.</summary>
    /// <param name="modelFolder">A Hugging Face LLaMA-family folder: config.json, model.safetensors, tokenizer.model or tokenizer.json.</param>
    /// <param name="options">Decoding defaults; null uses greedy decoding and 256 tokens. Copied, not kept.</param>
    public LlamaChatClient(string modelFolder, LlamaChatClientOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelFolder);
        if (!Directory.Exists(modelFolder))
        {
            throw new DirectoryNotFoundException($"Model folder '{modelFolder}' was not found; LlamaChatClient needs a Hugging Face LLaMA folder.");
        }

        options ??= new LlamaChatClientOptions();
        options.Validate();
        _options = new LlamaChatClientOptions
        {
            MaxOutputTokens = options.MaxOutputTokens,
            Temperature = options.Temperature,
            TopP = options.TopP,
            TopK = options.TopK,
            RepetitionPenalty = options.RepetitionPenalty,
            Seed = options.Seed,
            Template = options.Template,
            GpuDeviceId = options.GpuDeviceId,
        };
        TorchRuntime.EnsureInitialized();
        var tokenizer = LlamaTextTokenizer.FromModelFolder(modelFolder);
        var device = DeviceSelection.Select(options.GpuDeviceId, fallbackToCpu: false);
        _model = CheckpointLoader.LoadCausalLM(modelFolder, device, ScalarType.Float32);
        _generator = new LlamaTextGenerator(_model, tokenizer, device);
        var bos = tokenizer.BosId is { } b ? tokenizer.IdToToken(b) ?? "<s>" : "<s>";
        var eos = tokenizer.EosId is { } e ? tokenizer.IdToToken(e) ?? "</s>" : "</s>";
        _template = options.Template is { } kind ? ChatTemplate.Of(kind, bos, eos) : ChatTemplate.Detect(tokenizer.ChatTemplate, bos, eos);
        var stops = new List<int>();
        if (tokenizer.EosId is { } eosId)
        {
            stops.Add(eosId);
        }

        foreach (var marker in new[] { "<|im_end|>", "<|eot_id|>", "<|end|>" })
        {
            if (tokenizer.TokenToId(marker) is { } id && !stops.Contains(id))
            {
                stops.Add(id);
            }
        }

        _stopIds = stops.ToArray();
        ModelFolder = Path.GetFullPath(modelFolder);
        _metadata = new ChatClientMetadata(nameof(LlamaChatClient), new Uri(ModelFolder), Path.GetFileName(ModelFolder.TrimEnd(Path.DirectorySeparatorChar)));
    }

    /// <summary>Gets the model folder.</summary>
    public string ModelFolder { get; }

    /// <summary>Gets the chat format in use.</summary>
    public ChatTemplateKind Template => _template.Kind;

    /// <summary>
    /// Finds the embedded default model (<c>models/labeltuning-default</c>) in the application folder or a folder
    /// above it, or in the current directory or above it; null when it is not there.
    /// </summary>
    public static string? FindDefaultModelFolder()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "models", "labeltuning-default");
                if (File.Exists(Path.Combine(candidate, "config.json")))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    /// <summary>Renders the conversation as the prompt text the model sees (for inspection and tests).</summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="options">Optional call options; their Instructions become a leading system message.</param>
    public string RenderPrompt(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
        => _template.Render(WithInstructions(messages, options));

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var (prompt, settings) = Prepare(messages, options);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        GenerationOutcome outcome;
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            outcome = _generator.GenerateAll(prompt, settings, cancellationToken);
        }
        finally
        {
            _gate.Release();
        }

        return new ChatResponse(new ChatMessage(ChatRole.Assistant, outcome.Text))
        {
            FinishReason = outcome.HitLengthLimit ? ChatFinishReason.Length : ChatFinishReason.Stop,
            ModelId = _metadata.DefaultModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            Usage = new UsageDetails
            {
                InputTokenCount = outcome.PromptTokens,
                OutputTokenCount = outcome.GeneratedTokens,
                TotalTokenCount = outcome.PromptTokens + outcome.GeneratedTokens,
            },
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(
        IEnumerable<ChatMessage> messages, ChatOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var (prompt, settings) = Prepare(messages, options);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var outcome = new GenerationOutcome();
            var responseId = Guid.NewGuid().ToString("N");
            // Each step's tensors live and die inside the generator's own scope, so it is safe to hand the thread
            // back between tokens.
            foreach (var delta in _generator.Generate(prompt, settings, outcome, cancellationToken))
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, delta) { ResponseId = responseId, ModelId = _metadata.DefaultModelId };
            }

            yield return new ChatResponseUpdate(ChatRole.Assistant, string.Empty)
            {
                ResponseId = responseId,
                ModelId = _metadata.DefaultModelId,
                FinishReason = outcome.HitLengthLimit ? ChatFinishReason.Length : ChatFinishReason.Stop,
            };
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        if (serviceType == typeof(ChatClientMetadata))
        {
            return _metadata;
        }

        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Releases the model's tensors.</summary>
    public void Dispose()
    {
        _gate.Wait();
        try
        {
            if (!_disposed)
            {
                _disposed = true;
                _model.Dispose();
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private static List<ChatMessage> WithInstructions(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var list = new List<ChatMessage>();
        if (!string.IsNullOrWhiteSpace(options?.Instructions))
        {
            list.Add(new ChatMessage(ChatRole.System, options.Instructions));
        }

        list.AddRange(messages);
        return list;
    }

    private (int[] Prompt, GenerationSettings Settings) Prepare(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        var text = _template.Render(WithInstructions(messages, options));
        var tokenizer = _generator.Tokenizer;
        var ids = new List<int>();
        if (!_template.WritesBos && tokenizer.AddBos && tokenizer.BosId is { } bos)
        {
            ids.Add(bos);
        }

        ids.AddRange(tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: true));
        var maxTokens = options?.MaxOutputTokens ?? _options.MaxOutputTokens;
        if (maxTokens <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), maxTokens, $"ChatOptions.MaxOutputTokens must be positive but is {maxTokens}.");
        }

        var stops = _template.StopSequences.Concat(options?.StopSequences ?? []).Where(s => !string.IsNullOrEmpty(s)).Distinct().ToArray();
        var settings = new GenerationSettings
        {
            MaxNewTokens = maxTokens,
            Temperature = options?.Temperature ?? _options.Temperature,
            TopP = options?.TopP ?? _options.TopP,
            TopK = options?.TopK ?? _options.TopK,
            RepetitionPenalty = _options.RepetitionPenalty,
            Seed = options?.Seed ?? _options.Seed,
            StopIds = _stopIds,
            StopSequences = stops,
        };
        return (ids.ToArray(), settings);
    }
}
