using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods.PromptTuning;

/// <summary>
/// A soft prompt: n trainable virtual-token embeddings prepended to the token embeddings of every input, with the
/// attention mask extended by ones (Lester et al. 2021; PEFT's PROMPT_TUNING). Positions run 0..n+T-1 over the
/// concatenation, as in PEFT. Optionally:
/// <list type="bullet">
/// <item>DePT (Shi and Lipani 2023): a low-rank update (alpha / sqrt(r))·A·B, A [MaxSequenceLength, r] Kaiming-uniform
/// and B [r, d] zero, added position by position to the input token embeddings (row t of A·B to the token at t).</item>
/// <item>EPT (Lan et al. 2024): the prompt P is also projected into k rank-r subspaces, P·D_i·U_i, which a gating
/// network g = softmax(P·G + b) mixes per virtual token: P + Σ_i g_i ⊙ P·D_i·U_i (U_i start at zero).</item>
/// </list>
/// </summary>
internal sealed class PromptTuningAdapter : nn.Module, IInputAdapter
{
    /// <summary>The classifier-level name prefix of DePT's A and B, which train at their own learning rate.</summary>
    public const string DecomposedParameterPrefix = "adapter.lora_embedding_";

    [TorchSharp.Utils.ComponentName(Name = "prompt_embeddings")]
    private readonly Parameter _prompt;

    [TorchSharp.Utils.ComponentName(Name = "lora_embedding_A")]
    private readonly Parameter? _loraA;

    [TorchSharp.Utils.ComponentName(Name = "lora_embedding_B")]
    private readonly Parameter? _loraB;

    [TorchSharp.Utils.ComponentName(Name = "projection_down")]
    private readonly Parameter? _projectionDown;

    [TorchSharp.Utils.ComponentName(Name = "projection_up")]
    private readonly Parameter? _projectionUp;

    [TorchSharp.Utils.ComponentName(Name = "gate")]
    private readonly Linear? _gate;

    private readonly double _scaling;
    private (Tensor Key, Tensor Value)[]? _cachedKeyValues;

    /// <summary>Builds the adapter for <paramref name="model"/> and initialises it (loading a saved model overwrites the values).</summary>
    public PromptTuningAdapter(LlamaModel model, PromptTuningSettings settings)
        : base(nameof(PromptTuningAdapter))
    {
        Settings = settings;
        using var reference = model.EmbedTokens.weight!; // a new handle on each read: released here, or it would keep the table alive
        var (device, dtype) = (reference.device, reference.dtype);
        var d = model.Config.HiddenSize;
        var n = settings.VirtualTokenCount;
        using (no_grad())
        {
            _prompt = new Parameter(InitialPrompt(model, settings));
            if (settings.DecomposedRank > 0)
            {
                var r = settings.DecomposedRank;
                _loraA = new Parameter(empty(settings.MaxSequenceLength, r, dtype: dtype, device: device)); // [L, r]
                _loraB = new Parameter(zeros(r, d, dtype: dtype, device: device));                        // [r, D]
                nn.init.kaiming_uniform_(_loraA, a: Math.Sqrt(5)); // fan-in r, as DePT's code initialises it
                _scaling = settings.DecomposedAlpha / Math.Sqrt(r);

                if (settings.ProjectionSpaces > 1)
                {
                    var k = settings.ProjectionSpaces;
                    var bound = 1.0 / Math.Sqrt(d);
                    _projectionDown = new Parameter(empty(k, d, r, dtype: dtype, device: device).uniform_(-bound, bound)); // [k, D, r]
                    _projectionUp = new Parameter(zeros(k, r, d, dtype: dtype, device: device));                          // [k, r, D]
                    _gate = nn.Linear(d, k, hasBias: true, device: device, dtype: dtype);
                }
            }
        }

        VirtualTokenCount = n;
        RegisterComponents();
    }

    /// <summary>Gets the settings the adapter was built from.</summary>
    public PromptTuningSettings Settings { get; }

    /// <summary>Gets the number of virtual tokens n.</summary>
    public int VirtualTokenCount { get; }

    /// <summary>Gets the soft prompt [n, D] (PEFT's <c>prompt_embeddings</c>).</summary>
    public Parameter PromptEmbeddings => _prompt;

    /// <inheritdoc/>
    public IEnumerable<(string Name, Parameter Parameter)> TrainableParameters
    {
        get
        {
            yield return ("prompt_embeddings", _prompt);
            if (_loraA is not null)
            {
                yield return ("lora_embedding_A", _loraA);
                yield return ("lora_embedding_B", _loraB!);
            }

            if (_gate is not null)
            {
                yield return ("projection_down", _projectionDown!);
                yield return ("projection_up", _projectionUp!);
                yield return ("gate.weight", _gate.weight!);
                yield return ("gate.bias", _gate.bias!);
            }
        }
    }

    /// <inheritdoc/>
    public AdaptedInput Adapt(LlamaModel model, Tensor inputIds, Tensor attentionMask, bool causal)
    {
        var (b, t) = (inputIds.shape[0], inputIds.shape[1]);
        var tokens = model.EmbedTokens.call(inputIds); // [B, T, D]
        if (_loraA is not null)
        {
            if (t > _loraA.shape[0])
            {
                throw new ArgumentException(
                    $"The batch has {t} tokens per row but DePT's A has {_loraA.shape[0]} rows (MaxSequenceLength); inputs must not exceed MaxSequenceLength.", nameof(inputIds));
            }

            var update = _loraA.narrow(0, 0, t).matmul(_loraB!).mul(_scaling); // [T, D]
            tokens = tokens + update.unsqueeze(0);                               // [B, T, D]
        }

        if (causal && Settings.Pooling == Pooling.Last)
        {
            // Under the causal mask the virtual tokens come first and see only each other, so their keys and values
            // in every layer are the same for every row: compute them once (per step in training, once per trained
            // prompt when scoring) and let the text attend to them as a prefix. Positions continue at n, as in PEFT.
            // Only the text's states come out, which is all that last-token pooling (and token mode) reads.
            var prefixes = PromptKeyValues(model);
            var input = new LlamaInput { InputsEmbeds = tokens, AttentionMask = attentionMask, PrefixKeyValues = prefixes, Causal = true };
            return new AdaptedInput(input, attentionMask, 0);
        }

        var prompt = Prompt().to(tokens.dtype).unsqueeze(0).expand(b, -1, -1); // [B, n, D]
        var embeds = cat([prompt, tokens], 1);                                   // [B, n + T, D]
        var virtualMask = ones(b, VirtualTokenCount, dtype: attentionMask.dtype, device: attentionMask.device); // [B, n]
        var mask = cat([virtualMask, attentionMask], 1);                         // [B, n + T]
        // PositionIds null: the decoder numbers the n + T positions 0..n+T-1, PEFT's positions for prompt tuning.
        return new AdaptedInput(new LlamaInput { InputsEmbeds = embeds, AttentionMask = mask, Causal = causal }, mask, VirtualTokenCount);
    }

    /// <summary>Sets training mode; leaving or entering it drops the scoring-time key/value cache of the prompt.</summary>
    public override void train(bool on = true)
    {
        DropCachedKeyValues();
        base.train(on);
    }

    /// <summary>
    /// The soft prompt's keys and values in every layer, [1, KvHeads, n, Dh] each, rotary applied at positions 0..n-1:
    /// with gradients while training (recomputed every call), else cached until the next <see cref="train"/> call.
    /// </summary>
    private (Tensor Key, Tensor Value)[] PromptKeyValues(LlamaModel model)
    {
        var scoring = !training && !is_grad_enabled();
        if (scoring && _cachedKeyValues is not null)
        {
            return _cachedKeyValues;
        }

        var layers = model.Config.NumHiddenLayers;
        var result = new (Tensor Key, Tensor Value)[layers];
        using (var cache = new LlamaKvCache(layers))
        {
            var reference = model.EmbedTokens.weight!;
            using (var scope = NewDisposeScope())
            {
                model.forward(new LlamaInput { InputsEmbeds = Prompt().to(reference.dtype).unsqueeze(0), Cache = cache, Causal = true }); // [1, n, D]
            }

            for (var layer = 0; layer < layers; layer++)
            {
                var (key, value) = cache[layer]!.Value;
                result[layer] = scoring
                    ? (key.alias().DetachFromDisposeScope(), value.alias().DetachFromDisposeScope())
                    : (key.alias(), value.alias()); // [1, KV, n, Dh] each, in the caller's scope
            }
        }

        if (scoring)
        {
            _cachedKeyValues = result;
        }

        return result;
    }

    private void DropCachedKeyValues()
    {
        if (_cachedKeyValues is null)
        {
            return;
        }

        foreach (var (key, value) in _cachedKeyValues)
        {
            key.Dispose();
            value.Dispose();
        }

        _cachedKeyValues = null;
    }

    /// <summary>The prompt the decoder sees [n, D]: the soft prompt, or under EPT its gated multi-space projection.</summary>
    public Tensor Prompt()
    {
        if (_gate is null)
        {
            return _prompt;
        }

        var projected = _prompt.unsqueeze(0).matmul(_projectionDown!).matmul(_projectionUp!); // [k, n, D]
        var gates = nn.functional.softmax(_gate.call(_prompt), -1);                              // [n, k]
        var mixed = (gates.t().unsqueeze(-1) * projected).sum(dim: 0);                           // [n, D]
        return _prompt + mixed;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            DropCachedKeyValues();
        }

        base.Dispose(disposing);
    }

    private static Tensor InitialPrompt(LlamaModel model, PromptTuningSettings settings)
    {
        using var table = model.EmbedTokens.weight!; // [V, D]; a new handle on each read, released here
        var n = settings.VirtualTokenCount;
        switch (settings.Init)
        {
            case PromptTuningInit.Random:
                return randn(n, table.shape[1], dtype: table.dtype, device: table.device); // nn.Embedding's N(0, 1), as PEFT
            case PromptTuningInit.SampleVocab:
            {
                var ids = randint(0, table.shape[0], [n], dtype: ScalarType.Int64, device: table.device); // [n]
                return table.detach().index_select(0, ids).clone();                                       // [n, D]
            }

            case PromptTuningInit.Text:
            {
                var text = settings.InitTokenIds is { Length: > 0 } given
                    ? given
                    : throw new InvalidDataException("Prompt-tuning settings say Init is Text but hold no init token ids.");
                var outside = text.Where(id => id < 0 || id >= table.shape[0]).Take(1).ToArray();
                if (outside.Length > 0)
                {
                    throw new InvalidDataException($"Init token id {outside[0]} is outside the model's vocabulary of {table.shape[0]} tokens.");
                }

                // PEFT: cut to n, or repeat the whole text until n tokens are reached.
                var ids = Enumerable.Range(0, n).Select(i => (long)text[i % text.Length]).ToArray();
                using var index = tensor(ids, device: table.device);
                return table.detach().index_select(0, index).clone(); // [n, D]
            }

            default:
                throw new ArgumentOutOfRangeException(nameof(settings), settings.Init, "Unknown prompt-tuning init.");
        }
    }
}
