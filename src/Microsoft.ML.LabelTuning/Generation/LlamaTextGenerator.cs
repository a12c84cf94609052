using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Generation;

/// <summary>How one generation runs: length, decoding rule and stops.</summary>
internal sealed record GenerationSettings
{
    /// <summary>Gets the most new tokens to generate.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Gets the sampling temperature; 0 or less decodes greedily.</summary>
    public float Temperature { get; init; }

    /// <summary>Gets the nucleus mass kept when sampling (1 keeps every token).</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Gets the number of most likely tokens kept when sampling, or null for all.</summary>
    public int? TopK { get; init; }

    /// <summary>Gets the CTRL-style repetition penalty on tokens already in the prompt or output (1 = none).</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Gets the seed of the sampler.</summary>
    public long Seed { get; init; }

    /// <summary>Gets the token ids that end generation (EOS, end-of-turn); they are not part of the text.</summary>
    public IReadOnlyCollection<int> StopIds { get; init; } = [];

    /// <summary>Gets the texts that end generation; the text is cut before the first one found.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];
}

/// <summary>What a finished generation produced.</summary>
internal sealed class GenerationOutcome
{
    /// <summary>Gets or sets the generated text, stops removed.</summary>
    public string Text { get; set; } = string.Empty;

    /// <summary>Gets or sets the number of tokens generated (a final stop token included).</summary>
    public int GeneratedTokens { get; set; }

    /// <summary>Gets the ids of the generated text (stop tokens excluded).</summary>
    public List<int> GeneratedIds { get; } = [];

    /// <summary>Gets or sets the number of prompt tokens fed to the model.</summary>
    public int PromptTokens { get; set; }

    /// <summary>Gets or sets the number of oldest prompt tokens dropped to fit the context window.</summary>
    public int DroppedPromptTokens { get; set; }

    /// <summary>Gets or sets a value indicating whether generation ended at the token limit rather than a stop.</summary>
    public bool HitLengthLimit { get; set; }
}

/// <summary>
/// Autoregressive decoding over <see cref="LlamaForCausalLM"/> with a KV cache: the prompt is run once, then each
/// new token is a one-token forward pass that attends to the cached keys and values. Greedy when the temperature is
/// 0, otherwise temperature, top-k and top-p (nucleus) sampling with a seeded sampler, so a seed repeats a reply.
/// </summary>
internal sealed class LlamaTextGenerator
{
    private readonly LlamaForCausalLM _model;
    private readonly LlamaTextTokenizer _tokenizer;
    private readonly Device _device;

    public LlamaTextGenerator(LlamaForCausalLM model, LlamaTextTokenizer tokenizer, Device device)
    {
        _model = model;
        _tokenizer = tokenizer;
        _device = device;
        _model.eval();
    }

    /// <summary>Gets the tokenizer.</summary>
    public LlamaTextTokenizer Tokenizer => _tokenizer;

    /// <summary>Gets the context window (max_position_embeddings).</summary>
    public int ContextLength => _model.Config.MaxPositionEmbeddings;

    /// <summary>
    /// Generates from <paramref name="prompt"/> and yields text as it becomes final (held back while it could still
    /// turn into a stop sequence or ends in half a character). <paramref name="outcome"/> is complete once the
    /// enumeration ends. Prompts longer than the context allows lose their oldest tokens (a leading BOS is kept).
    /// </summary>
    public IEnumerable<string> Generate(IReadOnlyList<int> prompt, GenerationSettings settings, GenerationOutcome outcome, CancellationToken cancellationToken = default)
    {
        if (prompt.Count == 0)
        {
            throw new ArgumentException("The prompt has no tokens; generation needs at least one (BOS).", nameof(prompt));
        }

        var maxNew = Math.Max(1, Math.Min(settings.MaxNewTokens, ContextLength - 1));
        var input = FitToContext(prompt, ContextLength - maxNew, out var dropped);
        outcome.PromptTokens = input.Length;
        outcome.DroppedPromptTokens = dropped;

        var random = new Random(unchecked((int)settings.Seed));
        var seen = new HashSet<int>(input);
        var generated = outcome.GeneratedIds;
        var holdBack = Math.Max(0, settings.StopSequences.Count == 0 ? 0 : settings.StopSequences.Max(s => s.Length) - 1);
        var emitted = 0;
        var text = string.Empty;
        var stopped = false;
        using var cache = new LlamaKvCache(_model.Config.NumHiddenLayers);
        for (var step = 0; step < maxNew && !stopped; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            float[] logits;
            using (var scope = NewDisposeScope())
            using (no_grad())
            {
                var ids = tensor(input.Select(i => (long)i).ToArray(), [1, input.Length], ScalarType.Int64, _device); // [1, T]
                var output = _model.call(new LlamaInput { InputIds = ids, Cache = cache }); // [1, T, V]
                logits = output[0, -1].to(ScalarType.Float32).cpu().data<float>().ToArray(); // [V]
            }

            var next = Pick(logits, settings, seen, random);
            outcome.GeneratedTokens++;
            if (settings.StopIds.Contains(next))
            {
                stopped = true;
                break;
            }

            generated.Add(next);
            seen.Add(next);
            text = _tokenizer.Decode(generated);
            var cut = FirstStop(text, settings.StopSequences);
            if (cut >= 0)
            {
                text = text[..cut];
                stopped = true;
                break;
            }

            var ready = text.Length - holdBack;
            while (ready > emitted && text[ready - 1] == '\uFFFD')
            {
                ready--; // half a UTF-8 character: wait for its other bytes
            }

            if (ready > emitted)
            {
                yield return text[emitted..ready];
                emitted = ready;
            }

            input = [next];
        }

        outcome.HitLengthLimit = !stopped;
        outcome.Text = text;
        if (text.Length > emitted)
        {
            yield return text[emitted..];
        }
    }

    /// <summary>Runs <see cref="Generate"/> to the end and returns the outcome.</summary>
    public GenerationOutcome GenerateAll(IReadOnlyList<int> prompt, GenerationSettings settings, CancellationToken cancellationToken = default)
    {
        var outcome = new GenerationOutcome();
        foreach (var _ in Generate(prompt, settings, outcome, cancellationToken))
        {
        }

        return outcome;
    }

    /// <summary>Keeps the last <paramref name="budget"/> tokens, and the leading BOS if there was one.</summary>
    private int[] FitToContext(IReadOnlyList<int> prompt, int budget, out int dropped)
    {
        budget = Math.Max(1, budget);
        if (prompt.Count <= budget)
        {
            dropped = 0;
            return prompt.ToArray();
        }

        var keepBos = _tokenizer.BosId is { } bos && prompt[0] == bos && budget > 1;
        var tail = keepBos ? budget - 1 : budget;
        dropped = prompt.Count - budget;
        var result = new List<int>(budget);
        if (keepBos)
        {
            result.Add(prompt[0]);
        }

        result.AddRange(prompt.Skip(prompt.Count - tail));
        return result.ToArray();
    }

    private static int FirstStop(string text, IReadOnlyList<string> stops)
    {
        var first = -1;
        foreach (var stop in stops)
        {
            if (stop.Length == 0)
            {
                continue;
            }

            var at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
            }
        }

        return first;
    }

    /// <summary>Chooses the next token from the last position's logits.</summary>
    internal static int Pick(float[] logits, GenerationSettings settings, IReadOnlySet<int> seen, Random random)
    {
        if (settings.RepetitionPenalty != 1f)
        {
            foreach (var id in seen)
            {
                if ((uint)id < (uint)logits.Length)
                {
                    logits[id] = logits[id] > 0 ? logits[id] / settings.RepetitionPenalty : logits[id] * settings.RepetitionPenalty;
                }
            }
        }

        if (settings.Temperature <= 0)
        {
            var best = 0;
            for (var i = 1; i < logits.Length; i++)
            {
                if (logits[i] > logits[best])
                {
                    best = i;
                }
            }

            return best;
        }

        // Softmax at the temperature, then keep the top-k and the smallest set whose mass reaches top-p.
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ToArray();
        var max = logits[order[0]];
        var probabilities = order.Select(i => Math.Exp((logits[i] - max) / settings.Temperature)).ToArray();
        var total = probabilities.Sum();
        var keep = settings.TopK is { } k and > 0 ? Math.Min(k, order.Length) : order.Length;
        var mass = 0.0;
        for (var j = 0; j < keep; j++)
        {
            mass += probabilities[j] / total;
            if (mass >= settings.TopP)
            {
                keep = j + 1;
                break;
            }
        }

        var kept = probabilities.Take(keep).Sum();
        var draw = random.NextDouble() * kept;
        for (var j = 0; j < keep; j++)
        {
            draw -= probabilities[j];
            if (draw <= 0)
            {
                return order[j];
            }
        }

        return order[keep - 1];
    }
}
