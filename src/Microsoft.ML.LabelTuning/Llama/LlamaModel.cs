using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>The inputs of one forward pass of <see cref="LlamaModel"/> or <see cref="LlamaForCausalLM"/>.</summary>
internal sealed record LlamaInput
{
    /// <summary>Gets the token ids [B, T] (int64). Exactly one of this and <see cref="InputsEmbeds"/> is set.</summary>
    public Tensor? InputIds { get; init; }

    /// <summary>Gets input embeddings [B, T, D], used instead of ids (soft prompts are prepended here).</summary>
    public Tensor? InputsEmbeds { get; init; }

    /// <summary>
    /// Gets the key padding mask (int64 or bool, 1 = attend) over all keys: [B, P + L + T] (prefix P, cached past L,
    /// tokens T), or [B, L + T] in which case the prefix is attended everywhere. Null = attend to every key.
    /// Masked keys are never attended, in causal and bidirectional mode alike.
    /// </summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>Gets the position ids [B, T] (int64); null = P + L + arange(T), Hugging Face's semantics with a past of P + L.</summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>
    /// Gets per-layer prefix keys/values, each [B or 1, KvHeads, P, Dh], in k_proj/v_proj output space with NO rotary
    /// applied; they are prepended to every layer's keys before the grouped heads are repeated.
    /// </summary>
    public IReadOnlyList<(Tensor Key, Tensor Value)>? PrefixKeyValues { get; init; }

    /// <summary>Gets a value indicating whether attention is causal (default) or bidirectional (LS-unLLaMA).</summary>
    public bool Causal { get; init; } = true;

    /// <summary>Gets a value indicating whether every layer's output is returned as well.</summary>
    public bool OutputHiddenStates { get; init; }

    /// <summary>Gets the KV cache to attend to and extend, or null.</summary>
    public LlamaKvCache? Cache { get; init; }

    /// <summary>
    /// Gets one position per row [B] (int64), or null for all. When set, only those positions' final hidden states are
    /// computed: the last layer still projects keys and values for every token, but runs its queries, attention output,
    /// MLP and the final norm on B rows, and <see cref="LlamaOutput.LastHiddenState"/> is [B, 1, D]. Nothing after the
    /// last layer's keys and values reaches the other positions, so the result is the same as selecting from the full
    /// output. Not with <see cref="OutputHiddenStates"/>.
    /// </summary>
    public Tensor? OutputPositions { get; init; }
}

/// <summary>The outputs of <see cref="LlamaModel"/>.</summary>
/// <param name="LastHiddenState">[B, T, D], after the final norm.</param>
/// <param name="HiddenStates">
/// When requested, Hugging Face's order: the input embeddings, then the output of each layer but the last, then
/// <paramref name="LastHiddenState"/> (the last layer's output after the final norm): layers + 1 tensors.
/// </param>
internal sealed record LlamaOutput(Tensor LastHiddenState, IReadOnlyList<Tensor>? HiddenStates);

/// <summary>
/// The LLaMA decoder stack: token embedding, N decoder layers, final RMSNorm. State-dict keys equal Hugging Face's
/// <c>LlamaModel</c>: <c>embed_tokens.weight</c>, <c>layers.{i}.*</c>, <c>norm.weight</c>.
/// </summary>
internal sealed class LlamaModel : nn.Module<LlamaInput, LlamaOutput>
{
    [TorchSharp.Utils.ComponentName(Name = "embed_tokens")]
    private readonly Embedding _embedTokens;

    [TorchSharp.Utils.ComponentName(Name = "layers")]
    private readonly ModuleList<LlamaDecoderLayer> _layers;

    [TorchSharp.Utils.ComponentName(Name = "norm")]
    private readonly RmsNorm _norm;

    private readonly LlamaDecoderLayer[] _layerArray;
    private readonly RotaryEmbedding _rotary;
    private IDisposable? _sharedWeights;

    /// <summary>Builds the model with Hugging Face's initialisation (see <see cref="LlamaInit.InitializeWeights"/>).</summary>
    public LlamaModel(LlamaConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : this(config, device, dtype, initializeWeights: true)
    {
    }

    /// <summary>Builds the model; with <paramref name="initializeWeights"/> false the weights are left uninitialised (to be loaded).</summary>
    public LlamaModel(LlamaConfig config, Device? device, ScalarType dtype, bool initializeWeights)
        : this(config, device, dtype, initializeWeights, embeddingPlaceholder: false)
    {
    }

    /// <summary>
    /// Builds the model; with <paramref name="embeddingPlaceholder"/> the embedding is a one-row module whose weight
    /// the caller replaces (<see cref="SharingWeightsOf"/>): TorchSharp's nn.Embedding always makes and initialises
    /// its weight on the CPU first (even for the meta device), which for a 128k vocabulary is a gigabyte touched for
    /// nothing.
    /// </summary>
    private LlamaModel(LlamaConfig config, Device? device, ScalarType dtype, bool initializeWeights, bool embeddingPlaceholder)
        : base(nameof(LlamaModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        var paddingIdx = config.PadTokenId is { } pad && pad >= 0 && pad < config.VocabSize ? pad : (long?)null;
        // Not Embedding_from_pretrained: in TorchSharp 0.107 its registered parameter is not the tensor its
        // native forward reads, so loaded weights would be ignored.
        _embedTokens = embeddingPlaceholder
            ? nn.Embedding(1, config.HiddenSize, device: device, dtype: dtype) // the padding row only shapes a gradient the frozen weight never gets
            : nn.Embedding(config.VocabSize, config.HiddenSize, padding_idx: paddingIdx, device: device, dtype: dtype);
        _layers = new ModuleList<LlamaDecoderLayer>();
        for (var i = 0; i < config.NumHiddenLayers; i++)
        {
            _layers.Add(new LlamaDecoderLayer(config, i, device, dtype));
        }

        _layerArray = [.. _layers];
        _norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        _rotary = new RotaryEmbedding(config);
        RegisterComponents();
        if (initializeWeights)
        {
            LlamaInit.InitializeWeights(this, config.InitializerRange, paddingIdx);
        }
    }

    /// <summary>
    /// Gets a value indicating whether this decoder's parameters are the storage of a shared frozen base (see
    /// <see cref="SharingWeightsOf"/>): nothing may write into them, and scoring keeps no merged copies of them.
    /// </summary>
    public bool SharesBaseWeights => _sharedWeights is not null;

    /// <summary>Gets the validated architecture.</summary>
    public LlamaConfig Config { get; }

    /// <summary>
    /// Gets or sets a value indicating whether training passes (training mode, gradients on) checkpoint every decoder
    /// layer: only each layer's input is kept and its activations are recomputed in the backward pass (see
    /// <see cref="LayerCheckpoint"/>). The gradients are the same; activation memory grows with one layer rather than all.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>Gets the decoder layers.</summary>
    public IReadOnlyList<LlamaDecoderLayer> Layers => _layerArray;

    /// <summary>Gets the token embedding [V, D].</summary>
    public Embedding EmbedTokens => _embedTokens;

    /// <summary>Gets the final norm.</summary>
    public RmsNorm Norm => _norm;

    /// <summary>Gets the rotary embedding (no parameters).</summary>
    public RotaryEmbedding Rotary => _rotary;

    public override LlamaOutput forward(LlamaInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = torch.NewDisposeScope();
        var embeds = Embed(input);                                   // [B, T, D]
        var (b, t) = (embeds.shape[0], embeds.shape[1]);
        var prefixLength = CheckPrefix(input.PrefixKeyValues, b, embeds.device);
        var pastLength = CheckCache(input.Cache);
        var keyLength = prefixLength + pastLength + t;

        var (cos, sin) = input.PositionIds is { } positions
            ? _rotary.ForPositions(CheckPositions(positions, b, t), embeds.dtype) // [B, 1, T, Dh]
            : _rotary.ForRange(prefixLength + pastLength, t, embeds.device, embeds.dtype); // [1, 1, T, Dh]

        var mask = AttentionMasks.Build(input.AttentionMask, input.Causal, b, t, prefixLength, pastLength, embeds.dtype, embeds.device);
        var useCausalFlag = mask is null && input.Causal && keyLength == t;
        var context = new AttentionContext(cos, sin, mask, useCausalFlag, prefixLength > 0 ? input.PrefixKeyValues : null, input.Cache);

        var outputPositions = CheckOutputPositions(input, b, t);
        var checkpoint = GradientCheckpointing && training && torch.is_grad_enabled() && input.Cache is null;
        var hidden = embeds;
        List<Tensor>? hiddenStates = input.OutputHiddenStates ? [embeds] : null;
        for (var i = 0; i < _layerArray.Length; i++)
        {
            var at = i == _layerArray.Length - 1 ? outputPositions : null;
            var next = (checkpoint, at) switch
            {
                (true, _) => LayerCheckpoint.Run(_layerArray[i], hidden, context, at), // [B, T or 1, D]; recomputed in backward
                (false, { } rows) => _layerArray[i].ForwardAt(hidden, context, rows),  // [B, 1, D]
                (false, null) => _layerArray[i].call(hidden, context),                 // [B, T, D]
            };
            if (hiddenStates is null && !ReferenceEquals(hidden, embeds))
            {
                // The previous layer's output is not needed here any more (autograd keeps its own reference where
                // backward needs it): freed now rather than with the forward's scope, so a forward holds one or two
                // hidden-width buffers between layers instead of one per layer, and the C heap can reuse what each
                // layer frees.
                hidden.Dispose();
            }

            hidden = next;
            hiddenStates?.Add(hidden);
        }

        var last = _norm.call(hidden).MoveToOuterDisposeScope();      // [B, T, D]
        if (hiddenStates is not null)
        {
            hiddenStates[^1] = last;
            for (var i = 0; i < hiddenStates.Count - 1; i++)
            {
                hiddenStates[i] = hiddenStates[i].MoveToOuterDisposeScope();
            }
        }

        return new LlamaOutput(last, hiddenStates);
    }

    /// <summary>
    /// Builds a decoder whose every parameter is the same storage as the one of the same name in
    /// <paramref name="weights"/> (one copy in memory, whatever each user then wraps around its own modules: LoRA
    /// replaces this decoder's projections, not those of <paramref name="weights"/>). The new decoder's parameters
    /// are frozen; its attention keeps no concatenated or merged scoring copies, which would be private copies of the
    /// shared weights. <paramref name="release"/> is disposed with the new decoder.
    /// </summary>
    internal static LlamaModel SharingWeightsOf(LlamaModel weights, IDisposable release)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(release);
        var reference = weights.parameters().First();
        // Parameters are made uninitialised (torch.empty, pages never touched) and then pointed at the shared
        // storage, which frees theirs. The embedding is a one-row placeholder given a parameter over the shared
        // storage instead.
        const string embeddingKey = "embed_tokens.weight";
        var view = new LlamaModel(weights.Config, reference.device, reference.dtype, initializeWeights: false, embeddingPlaceholder: true);
        try
        {
            var source = weights.named_parameters().ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);
            using (torch.no_grad())
            {
                // The registered placeholder is disposed once replaced (the weight getter would make a new handle).
                var placeholder = view._embedTokens.named_parameters().Select(p => p.parameter).ToList();
                var alias = source[embeddingKey].detach(); // the same storage
                view._embedTokens.weight = new Parameter(alias, requires_grad: false);
                alias.Dispose(); // emptied by Parameter, which took its handle, but counted as live until disposed
                placeholder.ForEach(p => p.Dispose());

                foreach (var (name, parameter) in view.named_parameters())
                {
                    if (name == embeddingKey)
                    {
                        continue;
                    }

                    var shared = parameter.set_(source[name]); // a second handle to the same tensor
                    if (!ReferenceEquals(shared, parameter) && shared.Handle != parameter.Handle)
                    {
                        shared.Dispose();
                    }

                    parameter.requires_grad = false;
                }
            }

            foreach (var layer in view.Layers)
            {
                layer.SelfAttention.CacheScoringWeights = false;
            }
        }
        catch
        {
            view.Dispose();
            throw;
        }

        view._sharedWeights = release;
        return view;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _rotary.Dispose();
        }

        base.Dispose(disposing);
        if (disposing)
        {
            var release = _sharedWeights;
            _sharedWeights = null;
            release?.Dispose(); // after this decoder's handles are gone
        }
    }

    private Tensor Embed(LlamaInput input)
    {
        if ((input.InputIds is null) == (input.InputsEmbeds is null))
        {
            throw new ArgumentException("Exactly one of LlamaInput.InputIds and LlamaInput.InputsEmbeds must be set.", nameof(input));
        }

        if (input.InputsEmbeds is { } embeds)
        {
            if (embeds.dim() != 3 || embeds.shape[2] != Config.HiddenSize)
            {
                throw new ArgumentException(
                    $"InputsEmbeds must be [B, T, {Config.HiddenSize}] but is [{string.Join(", ", embeds.shape)}].", nameof(input));
            }

            return embeds.alias();
        }

        var ids = input.InputIds!;
        if (ids.dim() != 2)
        {
            throw new ArgumentException($"InputIds must be [B, T] but is [{string.Join(", ", ids.shape)}].", nameof(input));
        }

        if (ids.dtype != ScalarType.Int64 && ids.dtype != ScalarType.Int32)
        {
            throw new ArgumentException($"InputIds must be int64 but is {ids.dtype}.", nameof(input));
        }

        return _embedTokens.call(ids);
    }

    private long CheckPrefix(IReadOnlyList<(Tensor Key, Tensor Value)>? prefix, long batch, Device device)
    {
        if (prefix is null)
        {
            return 0;
        }

        if (prefix.Count != _layers.Count)
        {
            throw new ArgumentException(
                $"PrefixKeyValues has {prefix.Count} entries but the model has {_layers.Count} layers; give one (Key, Value) per layer.");
        }

        var length = prefix[0].Key.shape.Length == 4 ? prefix[0].Key.shape[2] : -1;
        for (var i = 0; i < prefix.Count; i++)
        {
            foreach (var (name, tensor) in new[] { ("Key", prefix[i].Key), ("Value", prefix[i].Value) })
            {
                var s = tensor.shape;
                if (s.Length != 4 || (s[0] != batch && s[0] != 1) || s[1] != Config.KeyValueHeadCount
                    || s[2] != length || s[3] != Config.HeadDimension)
                {
                    throw new ArgumentException(
                        $"PrefixKeyValues[{i}].{name} is [{string.Join(", ", s)}] but must be [{batch} or 1, {Config.KeyValueHeadCount}, P, {Config.HeadDimension}] with the same P ({length}) for every layer.");
                }

                if (tensor.device_type != device.type || (device.type != DeviceType.CPU && tensor.device_index != device.index))
                {
                    throw new ArgumentException($"PrefixKeyValues[{i}].{name} is on {tensor.device} but the model input is on {device}.");
                }
            }
        }

        return length;
    }

    private long CheckCache(LlamaKvCache? cache)
    {
        if (cache is null)
        {
            return 0;
        }

        if (cache.LayerCount != _layers.Count)
        {
            throw new ArgumentException($"The KV cache has {cache.LayerCount} layers but the model has {_layers.Count}.");
        }

        var length = cache.Length;
        for (var i = 1; i < cache.LayerCount; i++)
        {
            if (cache.LengthOf(i) != length)
            {
                throw new InvalidOperationException(
                    $"KV cache layer {i} holds {cache.LengthOf(i)} positions but layer 0 holds {length}; an earlier forward pass failed midway. Clear the cache.");
            }
        }

        return length;
    }

    private static Tensor? CheckOutputPositions(LlamaInput input, long batch, long length)
    {
        if (input.OutputPositions is not { } positions)
        {
            return null;
        }

        if (input.OutputHiddenStates)
        {
            throw new ArgumentException("OutputPositions and OutputHiddenStates cannot be combined: the last layer runs on the selected positions only.");
        }

        if (positions.dim() != 1 || positions.shape[0] != batch || positions.dtype != ScalarType.Int64)
        {
            throw new ArgumentException(
                $"OutputPositions must be int64 [{batch}] (one position below {length} per row) but is {positions.dtype} [{string.Join(", ", positions.shape)}].");
        }

        return positions;
    }

    private static Tensor CheckPositions(Tensor positions, long batch, long length)
    {
        if (positions.dim() != 2 || (positions.shape[0] != batch && positions.shape[0] != 1) || positions.shape[1] != length)
        {
            throw new ArgumentException(
                $"PositionIds must be [{batch}, {length}] (or [1, {length}]) but is [{string.Join(", ", positions.shape)}].");
        }

        return positions;
    }
}
