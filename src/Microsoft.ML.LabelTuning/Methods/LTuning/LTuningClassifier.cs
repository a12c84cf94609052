using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.LabelTuning.Methods.LTuning;

/// <summary>
/// L-Tuning's model. The K label texts (padded to a common length l) are encoded once by the frozen decoder into
/// h ∈ R^(K × l × d). The prefix variant pools each label's states with W = Linear(d, 1) into a length-l vector and maps
/// it with two Linear(l, l·m·d_kv) layers to key and value prefixes for all m layers; the prompt variant maps the
/// states with G = Linear(d, d) to l prompt embeddings. A text paired with a label runs with that label's prefix or
/// prompt, and a true/false head on the pooled last state says whether they match (the Matching head also reads the
/// pooled state times a rank-r map of the label's mean state). Class scores are the K pairs'
/// "true minus false" logits, computed in one batched pass of B·K rows (or, with the prompt placed after the text,
/// one pass over the texts plus a cached pass over the K label suffixes).
/// </summary>
internal sealed class LTuningClassifier : Module<TokenBatch, Tensor>, IClassifierModel
{
    private readonly LlamaModel _model;
    private readonly Linear? _labelPool;
    private readonly Linear? _prefixKey;
    private readonly Linear? _prefixValue;
    private readonly Linear? _labelProjection;
    private readonly Linear _head;
    private readonly Linear? _labelMatch;
    private readonly Linear? _labelDown;
    private readonly Tensor? _labelMean; // [K, d], frozen: mean of each label's states (Matching head)
    private readonly Tensor _labelHidden; // [K, l, d], frozen
    private readonly Tensor _labelMask;   // [K, l] int64
    private readonly LTuningSettings _settings;
    private readonly int _labelLength;

    public LTuningClassifier(LlamaModel model, LTuningSettings settings, int classCount)
        : base(nameof(LTuningClassifier))
    {
        var ids = settings.LabelTokenIds ?? throw new InvalidDataException("L-Tuning settings lack the label token ids.");
        if (ids.Length != classCount)
        {
            throw new InvalidDataException($"L-Tuning settings have {ids.Length} label texts for {classCount} classes.");
        }

        _model = model;
        _settings = settings;
        ClassCount = classCount;
        var config = model.Config;
        var reference = model.parameters().First();
        var (device, dtype) = (reference.device, reference.dtype);
        _labelLength = ids.Max(i => i.Length);
        var flatIds = new long[classCount * _labelLength];
        var flatMask = new long[classCount * _labelLength];
        for (var k = 0; k < classCount; k++)
        {
            for (var t = 0; t < ids[k].Length; t++)
            {
                flatIds[(k * _labelLength) + t] = ids[k][t];
                flatMask[(k * _labelLength) + t] = 1;
            }
        }

        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            var labelMask = tensor(flatMask, [classCount, _labelLength]).to(device);
            var labelIds = tensor(flatIds, [classCount, _labelLength]).to(device);
            var hidden = model.forward(new LlamaInput { InputIds = labelIds, AttentionMask = labelMask }).LastHiddenState; // [K, l, d]
            _labelHidden = (hidden * labelMask.unsqueeze(-1).to(hidden.dtype)).detach().DetachFromDisposeScope();
            _labelMask = labelMask.DetachFromDisposeScope();
        }

        var d = config.HiddenSize;
        register_module("model", model);
        if (settings.Variant == LTuningVariant.Prefix)
        {
            var perLabel = (long)_labelLength * config.NumHiddenLayers * config.KeyValueHeadCount * config.HeadDimension;
            _labelPool = Linear(d, 1, device: device, dtype: dtype);
            _prefixKey = Linear(_labelLength, perLabel, device: device, dtype: dtype);
            _prefixValue = Linear(_labelLength, perLabel, device: device, dtype: dtype);
            register_module("label_pool", _labelPool);
            register_module("prefix_key", _prefixKey);
            register_module("prefix_value", _prefixValue);
        }
        else
        {
            _labelProjection = Linear(d, d, device: device, dtype: dtype);
            ScaleToEmbeddings(_labelProjection, model, _labelHidden, _labelMask);
            register_module("label_proj", _labelProjection);
        }

        if (settings.Head == LTuningHead.Matching)
        {
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var maskF = _labelMask.to(_labelHidden.dtype).unsqueeze(-1); // [K, l, 1]
            _labelMean = (_labelHidden.sum(1) / maskF.sum(1)).DetachFromDisposeScope(); // [K, d]
            var rank = Math.Min(settings.MatchingRank, d);
            _labelDown = Linear(d, rank, hasBias: false, device: device, dtype: dtype);
            _labelMatch = Linear(rank, d, device: device, dtype: dtype);
            register_module("label_down", _labelDown);
            register_module("label_match", _labelMatch);
        }

        _head = Linear(settings.Head == LTuningHead.Matching ? 2 * d : d, 2, device: device, dtype: dtype);
        register_module("head", _head);
    }

    public int ClassCount { get; }

    public bool TokenLevel => false;

    public LTuningVariant Variant => _settings.Variant;

    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters()
    {
        var modules = _settings.Variant == LTuningVariant.Prefix
            ? new List<(string, Linear)> { ("label_pool", _labelPool!), ("prefix_key", _prefixKey!), ("prefix_value", _prefixValue!) }
            : [("label_proj", _labelProjection!)];
        if (_labelMatch is not null)
        {
            modules.Add(("label_down", _labelDown!));
            modules.Add(("label_match", _labelMatch));
        }

        modules.Add(("head", _head));
        return modules
            .SelectMany(m => new[] { ($"{m.Item1}.weight", m.Item2.weight), ($"{m.Item1}.bias", m.Item2.bias) })
            .Where(p => p.Item2 is not null)
            .Select(p => (p.Item1, p.Item2!))
            .ToList();
    }

    public void FreezeBase()
    {
        foreach (var parameter in parameters())
        {
            parameter.requires_grad = false;
        }

        foreach (var (_, parameter) in TrainableParameters())
        {
            parameter.requires_grad = true;
        }
    }

    public void SetTraining(bool training) => train(training);

    /// <summary>K-way class logits [B, K]: "true" minus "false" for each (text, label) pair.</summary>
    public Tensor Logits(TokenBatch batch)
    {
        var b = batch.InputIds.shape[0];
        var k = ClassCount;
        if (_settings.Variant == LTuningVariant.Prompt && _settings.Placement == LabelPlacement.After && !training)
        {
            return CachedAfterLogits(batch);
        }

        var labels = arange(k, device: batch.InputIds.device).repeat(b); // [B·K]: 0..K-1 for each text
        var pairs = PairLogits(batch.InputIds.repeat_interleave(k, 0), batch.AttentionMask.repeat_interleave(k, 0), labels); // [B·K, 2]
        return (pairs[.., 1] - pairs[.., 0]).view(b, k); // [B, K]
    }

    public override Tensor forward(TokenBatch batch) => Logits(batch);

    /// <summary>Training runs each text with its true label and the sampled false ones, each with the l label positions.</summary>
    public (int Rows, int Positions) TrainingShape(int batchSize, int sequenceLength)
        => (batchSize * (1 + Math.Min(_settings.NegativesPerExample, ClassCount - 1)), sequenceLength + _labelLength);

    /// <summary>Binary cross-entropy over each example's true pair and its sampled false pairs.</summary>
    public Tensor Loss(TokenBatch batch, IReadOnlyList<Example> examples, Tensor? classWeights)
    {
        var device = batch.InputIds.device;
        var b = examples.Count;
        var k = ClassCount;
        var negatives = Math.Min(_settings.NegativesPerExample, k - 1);
        var truth = tensor(examples.Select(e => (long)e.Label).ToArray()).to(device); // [B]
        var offsets = rand(b, k - 1).argsort(1).narrow(1, 0, negatives).to(device) + 1; // [B, n] distinct in 1..K-1
        var falseLabels = (truth.unsqueeze(1) + offsets).remainder(k); // [B, n]
        var labels = cat([truth.unsqueeze(1), falseLabels], 1).reshape(-1); // [B·(1+n)]
        var targets = cat([ones(b, 1, dtype: ScalarType.Int64), zeros(b, negatives, dtype: ScalarType.Int64)], 1).reshape(-1).to(device);
        var repeat = 1 + negatives;
        var logits = PairLogits(batch.InputIds.repeat_interleave(repeat, 0), batch.AttentionMask.repeat_interleave(repeat, 0), labels); // [B·(1+n), 2]
        var losses = functional.cross_entropy(logits, targets, reduction: Reduction.None); // [B·(1+n)]
        if (classWeights is null)
        {
            return losses.mean();
        }

        var weights = classWeights.index_select(0, truth).repeat_interleave(repeat, 0); // [B·(1+n)]
        return (losses * weights).sum() / weights.sum();
    }

    /// <summary>[N, 2] false/true logits of N (text, label) pairs from right-padded texts.</summary>
    internal Tensor PairLogits(Tensor ids, Tensor mask, Tensor labels)
    {
        var labelMask = _labelMask.index_select(0, labels); // [N, l]
        if (_settings.Variant == LTuningVariant.Prefix)
        {
            var prefixes = Prefixes(labels);
            var hidden = _model.forward(new LlamaInput
            {
                InputIds = ids,
                AttentionMask = cat([labelMask, mask], 1), // [N, l + T]
                PrefixKeyValues = prefixes,
            }).LastHiddenState; // [N, T, d]
            return Head(PoolingOps.Apply(hidden, mask, _settings.Pooling), labels);
        }

        var prompt = _labelProjection!.forward(_labelHidden).index_select(0, labels); // [N, l, d]
        if (_settings.Placement == LabelPlacement.Before)
        {
            var embeds = cat([prompt, _model.EmbedTokens.call(ids)], 1); // [N, l + T, d]
            var full = cat([labelMask, mask], 1); // [N, l + T]
            var hidden = _model.forward(new LlamaInput { InputsEmbeds = embeds, AttentionMask = full }).LastHiddenState; // [N, l + T, d]
            return Head(PoolingOps.Apply(hidden, cat([zeros_like(labelMask), mask], 1), _settings.Pooling), labels); // text tokens only
        }

        // After: left-pad the texts so every label prompt directly follows its text.
        var (leftIds, leftMask) = LeftPad(ids, mask);
        var afterEmbeds = cat([_model.EmbedTokens.call(leftIds), prompt], 1); // [N, T + l, d]
        var afterMask = cat([leftMask, labelMask], 1); // [N, T + l]
        var afterHidden = _model.forward(new LlamaInput
        {
            InputsEmbeds = afterEmbeds,
            AttentionMask = afterMask,
            PositionIds = AttentionMasks.PositionIdsFromMask(afterMask),
        }).LastHiddenState;
        return Head(PoolingOps.Apply(afterHidden, AfterPoolingMask(leftMask, labelMask), _settings.Pooling), labels);
    }

    /// <summary>
    /// After-placement scoring with a KV cache: the texts run once, their cache is repeated for each label, and only
    /// the K label suffixes run per text.
    /// </summary>
    internal Tensor CachedAfterLogits(TokenBatch batch)
    {
        var b = batch.InputIds.shape[0];
        var k = ClassCount;
        var device = batch.InputIds.device;
        var (leftIds, leftMask) = LeftPad(batch.InputIds, batch.AttentionMask);
        using var textCache = new LlamaKvCache(_model.Config.NumHiddenLayers);
        var textHidden = _model.forward(new LlamaInput
        {
            InputIds = leftIds,
            AttentionMask = leftMask,
            PositionIds = AttentionMasks.PositionIdsFromMask(leftMask),
            Cache = textCache,
        }).LastHiddenState; // [B, T, d]
        using var cache = textCache.Select(arange(b, device: device).repeat_interleave(k)); // [B·K] rows: each text's cache K times
        var labels = arange(k, device: device).repeat(b); // [B·K]
        var prompt = _labelProjection!.forward(_labelHidden).index_select(0, labels); // [B·K, l, d]
        var labelMask = _labelMask.index_select(0, labels); // [B·K, l]
        var textMask = leftMask.repeat_interleave(k, 0); // [B·K, T]
        var lengths = textMask.sum(1, keepdim: true); // [B·K, 1]
        var positions = lengths + (labelMask.cumsum(1) - 1).clamp_min(0); // [B·K, l]
        var hidden = _model.forward(new LlamaInput
        {
            InputsEmbeds = prompt,
            AttentionMask = cat([textMask, labelMask], 1), // [B·K, T + l]
            PositionIds = positions,
            Cache = cache,
        }).LastHiddenState; // [B·K, l, d]
        var pairs = Head(PoolAfterCached(textHidden, leftMask, hidden, labelMask, k), labels); // [B·K, 2]
        return (pairs[.., 1] - pairs[.., 0]).view(b, k); // [B, K]
    }

    /// <summary>[N, 2] false/true logits from the pooled states [N, d] of N pairs with the given labels [N].</summary>
    private Tensor Head(Tensor pooled, Tensor labels)
    {
        if (_labelMatch is null)
        {
            return _head.forward(pooled);
        }

        var label = _labelMatch.forward(_labelDown!.forward(_labelMean!)).index_select(0, labels); // [K, d] -> [K, r] -> [K, d] -> [N, d]
        return _head.forward(cat([pooled, pooled * label], 1)); // [N, 2d] -> [N, 2]
    }

    private List<(Tensor Key, Tensor Value)> Prefixes(Tensor labels)
    {
        var config = _model.Config;
        var k = ClassCount;
        var pooled = _labelPool!.forward(_labelHidden).squeeze(-1) * _labelMask.to(_labelHidden.dtype); // [K, l]
        var shape = new long[] { k, config.NumHiddenLayers, _labelLength, config.KeyValueHeadCount, config.HeadDimension };
        var keys = _prefixKey!.forward(pooled).view(shape).permute(1, 0, 3, 2, 4); // [m, K, kvH, l, Dh]
        var values = _prefixValue!.forward(pooled).view(shape).permute(1, 0, 3, 2, 4); // [m, K, kvH, l, Dh]
        var result = new List<(Tensor, Tensor)>(config.NumHiddenLayers);
        for (var layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            result.Add((keys[layer].index_select(0, labels).contiguous(), values[layer].index_select(0, labels).contiguous())); // [N, kvH, l, Dh]
        }

        return result;
    }

    /// <summary>
    /// Initialises G so that the label prompts start at the scale of the model's token embeddings. The label states come
    /// from the final norm (RMS around 1) while token embeddings are often 20–100× smaller; with a default-initialised G
    /// the prompts would swamp the text in the residual stream (After) or in attention (Before), and the true/false
    /// head would see almost nothing of the text.
    /// </summary>
    private static void ScaleToEmbeddings(Linear projection, LlamaModel model, Tensor labelHidden, Tensor labelMask)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var embeddings = model.parameters().First(); // embed_tokens.weight [V, d]
        var embedRms = embeddings.to(ScalarType.Float32).square().mean().sqrt().item<float>();
        var realTokens = labelMask.sum().item<long>() * labelHidden.shape[2];
        var hiddenRms = MathF.Sqrt(labelHidden.to(ScalarType.Float32).square().sum().item<float>() / Math.Max(1, realTokens));
        var std = embedRms / (Math.Max(hiddenRms, 1e-6f) * MathF.Sqrt(labelHidden.shape[2]));
        projection.weight!.normal_(0, std);
        projection.bias!.zero_();
    }

    /// <summary>
    /// Which positions the head pools with the label after the text: the label's with the paper's head (the text's
    /// states do not depend on the label, so they would only shift every class's score alike), the text's and the
    /// label's with the matching head, which can weigh the text's own states against the label's encoding.
    /// </summary>
    private Tensor AfterPoolingMask(Tensor textMask, Tensor labelMask)
        => cat([_settings.Head == LTuningHead.Matching ? textMask : zeros_like(textMask), labelMask], 1); // [N, T + l]

    /// <summary>
    /// The cached path's pooling, equal to pooling <see cref="AfterPoolingMask"/> over each pair's text and label states
    /// but without copying a text's states K times: the text part is pooled once per text and combined with each
    /// label's part. <paramref name="textHidden"/> is [B, T, d] with mask [B, T]; <paramref name="labelHidden"/> is
    /// [B·K, l, d] with mask [B·K, l]. Returns [B·K, d].
    /// </summary>
    private Tensor PoolAfterCached(Tensor textHidden, Tensor textMask, Tensor labelHidden, Tensor labelMask, int k)
    {
        if (_settings.Head != LTuningHead.Matching || _settings.Pooling == Pooling.Last)
        {
            return PoolingOps.Apply(labelHidden, labelMask, _settings.Pooling); // the last position is the label's
        }

        if (_settings.Pooling == Pooling.Max)
        {
            var textMax = PoolingOps.Apply(textHidden, textMask, Pooling.Max).repeat_interleave(k, 0); // [B·K, d]
            return maximum(textMax, PoolingOps.Apply(labelHidden, labelMask, Pooling.Max));
        }

        var textWeights = textMask.to(textHidden.dtype).unsqueeze(-1); // [B, T, 1]
        var labelWeights = labelMask.to(labelHidden.dtype).unsqueeze(-1); // [B·K, l, 1]
        var sum = (textHidden * textWeights).sum(1).repeat_interleave(k, 0) + (labelHidden * labelWeights).sum(1); // [B·K, d]
        var count = textWeights.sum(1).repeat_interleave(k, 0) + labelWeights.sum(1); // [B·K, 1]
        return sum / count.clamp_min(1);
    }

    /// <summary>Moves each row's real tokens to the right end (left padding).</summary>
    private static (Tensor Ids, Tensor Mask) LeftPad(Tensor ids, Tensor mask)
    {
        var t = ids.shape[1];
        var lengths = mask.sum(1, keepdim: true); // [N, 1]
        var positions = arange(t, device: ids.device).unsqueeze(0); // [1, T]
        var source = (positions - (t - lengths)).remainder(t); // [N, T]: right-padded index for each left-padded slot
        return (ids.gather(1, source), mask.gather(1, source));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _labelHidden.Dispose();
            _labelMask.Dispose();
            _labelMean?.Dispose();
        }

        base.Dispose(disposing);
    }
}
