using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.LabelTuning.Methods.Lora;

/// <summary>
/// A frozen linear layer plus a trainable low-rank update (Hu et al. 2021): y = W x + b + (alpha / r) · B A dropout(x).
/// State-dict keys match Hugging Face and PEFT: <c>weight</c> (and <c>bias</c>) of the base layer, then
/// <c>lora_A.weight</c> [r, in] and <c>lora_B.weight</c> [out, r]. A is Kaiming-uniform and B zero, so training
/// starts from the base model's function, as in PEFT.
/// </summary>
internal sealed class LoraLinear : Module<Tensor, Tensor>, Llama.ILowRankProjection
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] private readonly Parameter _weight;
    [TorchSharp.Utils.ComponentName(Name = "bias")] private readonly Parameter? _bias;
    [TorchSharp.Utils.ComponentName(Name = "lora_A")] private readonly Linear _loraA;
    [TorchSharp.Utils.ComponentName(Name = "lora_B")] private readonly Linear _loraB;
    private readonly double _scaling;
    private readonly double _dropoutRate;
    private Tensor? _merged;
    private bool _mergeForScoring;

    /// <param name="baseLayer">The linear layer whose weight (and bias) this wraps, frozen; its storage is shared, not copied.</param>
    /// <param name="rank">The rank r.</param>
    /// <param name="alpha">The scale numerator: updates are scaled by alpha / r (alpha / sqrt(r) with rsLoRA).</param>
    /// <param name="dropout">Dropout on the update's input while training.</param>
    /// <param name="useRsLora">Whether the scale is alpha / sqrt(r).</param>
    /// <param name="mergeForScoring">
    /// Whether scoring uses W + s·B·A built once (a private copy of W, never W itself updated in place); false where W
    /// is shared with other classifiers, so that scoring computes W x + s·B·A x and keeps no copy.
    /// </param>
    public LoraLinear(Linear baseLayer, int rank, double alpha, double dropout, bool useRsLora = false, bool mergeForScoring = true)
        : base(nameof(LoraLinear))
    {
        _mergeForScoring = mergeForScoring;
        var outFeatures = baseLayer.weight!.shape[0];
        var inFeatures = baseLayer.weight.shape[1];
        _weight = new Parameter(baseLayer.weight.detach(), requires_grad: false);
        _bias = baseLayer.bias is null ? null : new Parameter(baseLayer.bias.detach(), requires_grad: false);
        var device = baseLayer.weight.device;
        var dtype = baseLayer.weight.dtype;
        _loraA = Linear(inFeatures, rank, hasBias: false, device: device, dtype: dtype);
        _loraB = Linear(rank, outFeatures, hasBias: false, device: device, dtype: dtype);
        using (no_grad())
        {
            init.kaiming_uniform_(_loraA.weight!, a: Math.Sqrt(5));
            init.zeros_(_loraB.weight!);
        }

        _dropoutRate = dropout;
        Rank = rank;
        _scaling = useRsLora ? alpha / Math.Sqrt(rank) : alpha / rank;
        RegisterComponents();
    }

    /// <summary>Gets the rank r.</summary>
    public int Rank { get; }

    /// <summary>Gets the scale applied to the low-rank update.</summary>
    public double Scaling => _scaling;

    /// <summary>
    /// Gets or sets a value indicating whether scoring uses a merged private copy of the weight (see the constructor);
    /// changing it drops the copy.
    /// </summary>
    public bool MergeForScoring
    {
        get => _mergeForScoring;
        set
        {
            DropMerged();
            _mergeForScoring = value;
        }
    }

    /// <summary>Gets the trainable low-rank factors.</summary>
    public IEnumerable<Parameter> AdapterParameters => [_loraA.weight!, _loraB.weight!];

    /// <inheritdoc/>
    public Tensor BaseWeight => _weight;

    /// <inheritdoc/>
    public Tensor? BaseBias => _bias;

    /// <inheritdoc/>
    public (Tensor Weight, Tensor? Bias)? ScoringWeights
        => MergeForScoring && !training && !is_grad_enabled() ? (_merged ??= MergedWeight(), _bias) : null;

    public override Tensor forward(Tensor x) // [..., in] -> [..., out]
    {
        if (MergeForScoring && !training && !is_grad_enabled())
        {
            // Scoring: one matmul with W + (alpha / r)·B·A, merged on the first scoring call after training.
            _merged ??= MergedWeight();
            return functional.linear(x, _merged, _bias);
        }

        return functional.linear(x, _weight, _bias).add_(Update(x));
    }

    /// <summary>The low-rank update (alpha / r) · B A dropout(x): [..., in] -> [..., out].</summary>
    public Tensor Update(Tensor x)
    {
        // PEFT's lora_dropout (nn.Dropout, no state): the same inverted dropout, its mask drawn by FastDropout.
        var input = _dropoutRate > 0 && training ? Runtime.FastDropout.Apply(x, _dropoutRate) : x;
        // The scale goes on the rank-wide intermediate [..., r] rather than on the output [..., out]: the same product
        // (to float rounding), without an output-sized kernel forward and backward.
        return _loraB.forward(_loraA.forward(input).mul_(_scaling));
    }

    /// <summary>Sets training mode; either way the merged scoring weight is dropped (the factors may change next).</summary>
    public override void train(bool on = true)
    {
        DropMerged();
        base.train(on);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            DropMerged();
        }

        base.Dispose(disposing);
    }

    private Tensor MergedWeight()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var delta = _loraB.weight!.matmul(_loraA.weight!); // [out, r] x [r, in] -> [out, in]
        return _weight.add(delta, alpha: _scaling).DetachFromDisposeScope();
    }

    private void DropMerged()
    {
        _merged?.Dispose();
        _merged = null;
    }
}
