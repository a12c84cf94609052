using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// <see cref="LlamaModel"/> plus the language-model head: <c>logits = lm_head(model(x))</c>, [B, T, V]. State-dict
/// keys equal Hugging Face's <c>LlamaForCausalLM</c>: <c>model.*</c> and <c>lm_head.weight</c>; with tied
/// embeddings the head reuses <c>model.embed_tokens.weight</c> and has no key of its own.
/// </summary>
internal sealed class LlamaForCausalLM : nn.Module<LlamaInput, Tensor>
{
    [TorchSharp.Utils.ComponentName(Name = "model")]
    private readonly LlamaModel _model;

    [TorchSharp.Utils.ComponentName(Name = "lm_head")]
    private readonly Linear? _lmHead;

    /// <summary>Builds the model with Hugging Face's initialisation.</summary>
    public LlamaForCausalLM(LlamaConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32)
        : this(config, device, dtype, initializeWeights: true)
    {
    }

    /// <summary>Builds the model; with <paramref name="initializeWeights"/> false the weights are left uninitialised (to be loaded).</summary>
    public LlamaForCausalLM(LlamaConfig config, Device? device, ScalarType dtype, bool initializeWeights)
        : base(nameof(LlamaForCausalLM))
    {
        _model = new LlamaModel(config, device, dtype, initializeWeights);
        if (!config.TieWordEmbeddings)
        {
            _lmHead = LlamaInit.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device, dtype);
            if (initializeWeights)
            {
                LlamaInit.InitializeWeights(_lmHead, config.InitializerRange, paddingIdx: null);
            }
        }

        RegisterComponents();
    }

    /// <summary>Gets the decoder stack.</summary>
    public LlamaModel Model => _model;

    /// <summary>Gets the architecture.</summary>
    public LlamaConfig Config => _model.Config;

    /// <summary>Gets the LM head weight [V, D] (the embedding matrix when tied).</summary>
    public Tensor LmHeadWeight => _lmHead?.weight ?? _model.EmbedTokens.weight!;

    public override Tensor forward(LlamaInput input) // -> logits [B, T, V]
    {
        using var scope = torch.NewDisposeScope();
        var hidden = _model.call(input with { OutputHiddenStates = false }).LastHiddenState; // [B, T, D]
        var logits = _lmHead is null
            ? nn.functional.linear(hidden, _model.EmbedTokens.weight!)
            : _lmHead.call(hidden);
        return logits.MoveToOuterDisposeScope();
    }
}
