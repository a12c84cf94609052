using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>
/// The frozen LLaMA decoder, an optional input adapter, and a label head: the shape of Hugging Face's
/// LlamaForSequenceClassification (keys <c>model.*</c> and <c>score.weight</c>), pooled over the attention mask.
/// In token mode (NER) the head scores every real token instead of the pooled state.
/// </summary>
internal sealed class LlamaSequenceClassifier : Module<TokenBatch, Tensor>, IClassifierModel
{
    [TorchSharp.Utils.ComponentName(Name = "model")] private readonly LlamaModel _model;
    [TorchSharp.Utils.ComponentName(Name = "score")] private readonly Linear _score;
    private readonly IInputAdapter _adapter;

    public LlamaSequenceClassifier(LlamaModel model, int classCount, IInputAdapter? adapter, Pooling pooling, bool causal, bool tokenLevel)
        : base(nameof(LlamaSequenceClassifier))
    {
        _model = model;
        var reference = model.parameters().First(); // Embedding.weight would allocate a new tensor handle each read
        _score = Linear(model.Config.HiddenSize, classCount, hasBias: false, device: reference.device, dtype: reference.dtype);
        _adapter = adapter ?? TokenInputAdapter.Instance;
        Pooling = pooling;
        Causal = causal;
        TokenLevel = tokenLevel;
        ClassCount = classCount;
        RegisterComponents();
        if (_adapter is Module adapterModule)
        {
            register_module("adapter", adapterModule);
        }
    }

    /// <summary>Gets the decoder.</summary>
    public LlamaModel Model => _model;

    /// <summary>Gets the label head (HF key <c>score.weight</c>).</summary>
    public Linear Score => _score;

    /// <summary>Gets the input adapter.</summary>
    public IInputAdapter Adapter => _adapter;

    /// <summary>Gets the pooling rule.</summary>
    public Pooling Pooling { get; }

    /// <summary>Gets whether attention is causal (false: LS-unLLaMA's bidirectional attention).</summary>
    public bool Causal { get; }

    /// <summary>Gets whether the head scores each token (NER) rather than the pooled sequence.</summary>
    public bool TokenLevel { get; }

    /// <summary>Gets the number of classes.</summary>
    public int ClassCount { get; }

    /// <summary>
    /// The trainable parameters, chosen by module type: LoRA factors, the input adapter's parameters, and the head,
    /// which is always trained.
    /// </summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters()
    {
        var result = new List<(string, Parameter)>();
        foreach (var (name, module) in named_modules())
        {
            if (module is LoraLinear lora)
            {
                var i = 0;
                foreach (var parameter in lora.AdapterParameters)
                {
                    result.Add(($"{name}.{(i++ == 0 ? "lora_A" : "lora_B")}.weight", parameter));
                }
            }
        }

        result.AddRange(_adapter.TrainableParameters.Select(p => ($"adapter.{p.Name}", p.Parameter)));
        result.Add(("score.weight", _score.weight!));
        return result;
    }

    /// <summary>Freezes everything, then unfreezes the trainable parameters.</summary>
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

    /// <inheritdoc/>
    public void SetTraining(bool training) => train(training);

    /// <inheritdoc/>
    public Tensor Logits(TokenBatch batch) => forward(batch);

    /// <inheritdoc/>
    public (int Rows, int Positions) TrainingShape(int batchSize, int sequenceLength) => (batchSize, sequenceLength + _adapter.VirtualTokenCount);

    /// <summary>Cross-entropy over classes (sequence mode) or over labelled tokens (token mode).</summary>
    public Tensor Loss(TokenBatch batch, IReadOnlyList<Example> examples, Tensor? classWeights)
    {
        var logits = forward(batch);
        if (TokenLevel)
        {
            var length = batch.InputIds.shape[1];
            var labels = new long[examples.Count * length];
            Array.Fill(labels, -100L);
            for (var row = 0; row < examples.Count; row++)
            {
                var tokenLabels = examples[row].TokenLabels!;
                for (var t = 0; t < tokenLabels.Length; t++)
                {
                    labels[(row * length) + t] = tokenLabels[t];
                }
            }

            var target = tensor(labels, [examples.Count * length]).to(logits.device);
            return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), target, weight: classWeights, ignore_index: -100); // [B*T, K]
        }

        var classes = tensor(examples.Select(e => (long)e.Label).ToArray()).to(logits.device);
        return nn.functional.cross_entropy(logits, classes, weight: classWeights);
    }

    /// <summary>Sequence mode: [B, K] logits. Token mode: [B, T, K] logits for the T real-token positions.</summary>
    public override Tensor forward(TokenBatch batch)
    {
        var adapted = _adapter.Adapt(_model, batch.InputIds, batch.AttentionMask, Causal);
        if (!TokenLevel && Pooling == Pooling.Last)
        {
            // Only the pooled position's final state is needed: the last layer runs its queries and MLP on it alone.
            var last = PoolingOps.LastPositions(adapted.PoolingMask);                                      // [B]
            var state = _model.forward(adapted.Input with { OutputPositions = last }).LastHiddenState; // [B, 1, D]
            return _score.forward(state.squeeze(1)); // [B, K]
        }

        var hidden = _model.forward(adapted.Input).LastHiddenState; // [B, V + T, D]
        if (TokenLevel)
        {
            var tokens = hidden.narrow(1, adapted.VirtualTokens, batch.InputIds.shape[1]); // [B, T, D]
            return _score.forward(tokens); // [B, T, K]
        }

        var pooled = PoolingOps.Apply(hidden, adapted.PoolingMask, Pooling); // [B, D]
        return _score.forward(pooled); // [B, K]
    }
}
