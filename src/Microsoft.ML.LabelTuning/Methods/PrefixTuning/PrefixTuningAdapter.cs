using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Methods.PrefixTuning;

/// <summary>
/// Trainable key and value prefixes for every layer (PEFT's PREFIX_TUNING), sized for grouped-query attention:
/// each layer gets n keys and n values of KvHeads × HeadDim, in k_proj/v_proj output space, with no rotary applied,
/// prepended to the layer's own keys and values before the grouped heads are repeated. The real tokens sit at
/// positions n..n+T-1, as under PEFT (the prefix acts as a past of length n).
/// <para>
/// The table has PEFT's layout, [n, layers·2·KvHeads·HeadDim], viewed as [n, layers·2, KvHeads, HeadDim]: layer l
/// reads index 2l as its keys and 2l+1 as its values. With a projection MLP the table is
/// Linear(Tanh(Linear(E))) of an embedding E [n, KvHeads·HeadDim]; <see cref="Fold"/> replaces the MLP by its output,
/// which is what PEFT saves and what a saved model reloads.
/// </para>
/// </summary>
internal sealed class PrefixTuningAdapter : nn.Module, IInputAdapter
{
    [TorchSharp.Utils.ComponentName(Name = "embedding")]
    private readonly Parameter _embedding;

    [TorchSharp.Utils.ComponentName(Name = "transform")]
    private readonly Sequential? _transform;

    private readonly int _layers;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private Parameter? _folded;

    /// <summary>Builds the adapter for <paramref name="model"/> and initialises it as PEFT does (loading overwrites the values).</summary>
    public PrefixTuningAdapter(LlamaModel model, PrefixTuningSettings settings)
        : base(nameof(PrefixTuningAdapter))
    {
        var config = model.Config;
        using var reference = model.EmbedTokens.weight!; // a new handle on each read: released here, or it would keep the table alive
        var (device, dtype) = (reference.device, reference.dtype);
        _layers = config.NumHiddenLayers;
        _kvHeads = config.KeyValueHeadCount;
        _headDim = config.HeadDimension;
        VirtualTokenCount = settings.VirtualTokenCount;
        ProjectionHiddenSize = settings.ProjectionHiddenSize;
        var tokenDim = _kvHeads * _headDim;
        var tableWidth = _layers * 2 * tokenDim;
        using (no_grad())
        {
            // nn.Embedding's N(0, 1), as PEFT's PrefixEncoder; the MLP's Linear layers keep torch's default init.
            _embedding = new Parameter(randn(VirtualTokenCount, ProjectionHiddenSize > 0 ? tokenDim : tableWidth, dtype: dtype, device: device));
        }

        if (ProjectionHiddenSize > 0)
        {
            _transform = nn.Sequential(
                ("0", nn.Linear(tokenDim, ProjectionHiddenSize, hasBias: true, device: device, dtype: dtype)),
                ("1", nn.Tanh()),
                ("2", nn.Linear(ProjectionHiddenSize, tableWidth, hasBias: true, device: device, dtype: dtype)));
        }

        RegisterComponents();
    }

    /// <summary>Gets the prefix length n.</summary>
    public int VirtualTokenCount { get; }

    /// <summary>Gets the MLP's hidden size (0 = none, or folded).</summary>
    public int ProjectionHiddenSize { get; private set; }

    /// <inheritdoc/>
    public IEnumerable<(string Name, Parameter Parameter)> TrainableParameters
    {
        get
        {
            if (_folded is not null)
            {
                yield return ("embedding.weight", _folded);
                yield break;
            }

            yield return ("embedding.weight", _embedding);
            if (_transform is not null)
            {
                foreach (var (name, parameter) in _transform.named_parameters())
                {
                    yield return ($"transform.{name}", parameter);
                }
            }
        }
    }

    /// <summary>The prefix table [n, layers·2·KvHeads·HeadDim] in PEFT's layout (PEFT's saved <c>prompt_embeddings</c>).</summary>
    public Tensor Table()
    {
        if (_folded is not null)
        {
            return _folded;
        }

        return _transform is null ? _embedding : _transform.call(_embedding);
    }

    /// <summary>
    /// Replaces the projection MLP by its output, as PEFT does when it saves: from now on the adapter holds plain
    /// prefixes (named <c>embedding.weight</c>, [n, layers·2·KvHeads·HeadDim]) and computes exactly what it did before.
    /// Returns false when there is no MLP to fold.
    /// </summary>
    public bool Fold()
    {
        if (_transform is null || _folded is not null)
        {
            return false;
        }

        using (no_grad())
        {
            _folded = new Parameter(_transform.call(_embedding).detach().clone(), requires_grad: false);
        }

        register_parameter("folded", _folded);
        ProjectionHiddenSize = 0;
        return true;
    }

    /// <inheritdoc/>
    public AdaptedInput Adapt(LlamaModel model, Tensor inputIds, Tensor attentionMask, bool causal)
    {
        var n = VirtualTokenCount;
        var table = Table().view(n, _layers * 2, _kvHeads, _headDim).permute(1, 2, 0, 3); // [layers·2, KV, n, Dh]
        var prefixes = new (Tensor Key, Tensor Value)[_layers];
        for (var layer = 0; layer < _layers; layer++)
        {
            prefixes[layer] = (table[2 * layer].unsqueeze(0), table[(2 * layer) + 1].unsqueeze(0)); // [1, KV, n, Dh] each
        }

        // The [B, T] mask is extended with ones for the prefix, and positions default to n..n+T-1 (PEFT's).
        var input = new LlamaInput { InputIds = inputIds, AttentionMask = attentionMask, PrefixKeyValues = prefixes, Causal = causal };
        return new AdaptedInput(input, attentionMask, 0);
    }
}
