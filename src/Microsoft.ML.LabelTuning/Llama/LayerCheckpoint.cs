using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// Gradient checkpointing of one decoder layer (Chen et al. 2016, "Training deep nets with sublinear memory cost"):
/// the forward pass runs the layer without recording a graph and keeps only its input; the backward pass runs the
/// layer again, this time recording, and differentiates that. Activation memory then holds one hidden-width vector
/// per token and layer plus one layer's full activations at a time, instead of every layer's, for about one more
/// forward pass of compute.
/// </summary>
/// <remarks>
/// A custom autograd function (TorchSharp's counterpart of <c>torch.autograd.Function</c>) whose inputs are the
/// layer's input, the attention context's tensors, this layer's prefix keys and values, and the layer's trainable
/// parameters (LoRA factors): the parameters are inputs so that the node is part of the graph even when nothing
/// upstream needs gradients (the frozen embedding), and their gradients are returned rather than accumulated behind
/// the engine's back. The CPU random state is saved before the forward pass and restored for the recomputation, so
/// dropout draws the same masks and the gradients equal those of the plain pass.
/// </remarks>
internal sealed class LayerCheckpoint : autograd.SingleTensorFunction<LayerCheckpoint>
{
    // Argument positions: two plain objects, then tensors (null where absent), then the trainable parameters.
    private const int LayerArg = 0;
    private const int RecipeArg = 1;
    private const int InputArg = 2;
    private const int CosArg = 3;
    private const int SinArg = 4;
    private const int MaskArg = 5;
    private const int PositionsArg = 6;
    private const int PrefixKeyArg = 7;
    private const int PrefixValueArg = 8;
    private const int RandomStateArg = 9;
    private const int FirstParameterArg = 10;

    /// <inheritdoc/>
    /// <summary>
    /// The managed handles of the gradients the previous backward call on this thread handed to the autograd engine.
    /// The engine copies each one as the call returns, so nothing needs the handles after that; left to the step's
    /// dispose scope they would keep every layer's input gradient (one hidden-width vector per token and layer) alive
    /// until the step ends, which is what checkpointing is meant to avoid.
    /// </summary>
    [ThreadStatic]
    private static List<Tensor>? t_handedBack;

    public override string Name => nameof(LayerCheckpoint);

    /// <summary>
    /// The layer's output, [B, T, D] (or [B, 1, D] at <paramref name="positions"/>), computed without keeping its
    /// activations; they are recomputed in the backward pass.
    /// </summary>
    public static Tensor Run(LlamaDecoderLayer layer, Tensor x, AttentionContext context, Tensor? positions)
    {
        if (context.Cache is not null)
        {
            throw new InvalidOperationException("Gradient checkpointing recomputes a layer, which a KV cache would extend twice; it is for training only.");
        }

        var index = layer.SelfAttention.LayerIndex;
        var prefix = context.Prefix is { } all && all[index].Key.shape[2] > 0 ? all[index] : ((Tensor Key, Tensor Value)?)null;
        var parameters = layer.parameters().Where(p => p.requires_grad).ToArray();
        var args = new object?[FirstParameterArg + parameters.Length];
        args[LayerArg] = layer;
        args[RecipeArg] = new Recipe(context.UseCausalFlag, index, parameters);
        args[InputArg] = x;
        args[CosArg] = context.Cos;
        args[SinArg] = context.Sin;
        args[MaskArg] = context.Mask;
        args[PositionsArg] = positions;
        args[PrefixKeyArg] = prefix?.Key;
        args[PrefixValueArg] = prefix?.Value;
        args[RandomStateArg] = layer.training ? random.get_rng_state() : null;
        for (var i = 0; i < parameters.Length; i++)
        {
            args[FirstParameterArg + i] = parameters[i];
        }

        return apply(args!);
    }

    /// <inheritdoc/>
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var layer = (LlamaDecoderLayer)vars[LayerArg];
        var recipe = (Recipe)vars[RecipeArg];
        var tensors = new List<Tensor>();
        for (var i = InputArg; i < FirstParameterArg; i++)
        {
            tensors.Add((vars[i] as Tensor)!); // null where absent: saved as nothing
        }

        ctx.save_for_backward(tensors);
        ctx.save_data(nameof(LlamaDecoderLayer), layer);
        ctx.save_data(nameof(Recipe), recipe);
        return Compute(layer, recipe, tensors, replay: false); // no graph: apply runs forward with gradients off
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        AutogradHandles.Release(ref t_handedBack);
        var layer = (LlamaDecoderLayer)ctx.get_data(nameof(LlamaDecoderLayer));
        var recipe = (Recipe)ctx.get_data(nameof(Recipe));
        var gradients = new List<Tensor>(new Tensor[FirstParameterArg + recipe.Parameters.Count]);
        using var scope = NewDisposeScope(); // the saved input and the recomputed activations go when this layer's backward is done
        var saved = ctx.get_saved_variables(); // InputArg .. RandomStateArg, null where absent
        using (enable_grad())
        {
            var inputs = new List<Tensor>(saved.Count);
            var wrt = new List<(int Arg, Tensor Tensor)>();
            for (var i = 0; i < saved.Count; i++)
            {
                var tensor = saved[i];
                var arg = InputArg + i;
                if (tensor is not null && (arg is InputArg or PrefixKeyArg or PrefixValueArg) && tensor.requires_grad)
                {
                    tensor = tensor.detach().requires_grad_(true);
                    wrt.Add((arg, tensor));
                }

                inputs.Add(tensor!);
            }

            for (var i = 0; i < recipe.Parameters.Count; i++)
            {
                wrt.Add((FirstParameterArg + i, recipe.Parameters[i]));
            }

            var output = Compute(layer, recipe, inputs, replay: true);
            var computed = autograd.grad([output], wrt.Select(w => w.Tensor).ToList(), [grad_output]);
            for (var i = 0; i < wrt.Count; i++)
            {
                // Moved out so that an exception between here and the engine's copy still disposes them with the step.
                gradients[wrt[i].Arg] = computed[i].MoveToOuterDisposeScope();
            }
        }

        return AutogradHandles.HandBack(gradients, grad_output, ref t_handedBack);
    }

    /// <summary>
    /// Runs the layer on the tensors (in <see cref="InputArg"/> order); a <paramref name="replay"/> runs under the
    /// random state of the first run and then puts the current state back.
    /// </summary>
    private static Tensor Compute(LlamaDecoderLayer layer, Recipe recipe, IReadOnlyList<Tensor> tensors, bool replay)
    {
        var x = tensors[InputArg - InputArg];
        var positions = tensors[PositionsArg - InputArg];
        var prefixKey = tensors[PrefixKeyArg - InputArg];
        var randomState = tensors[RandomStateArg - InputArg];
        IReadOnlyList<(Tensor Key, Tensor Value)>? prefix = prefixKey is null
            ? null
            : Enumerable.Repeat((prefixKey, tensors[PrefixValueArg - InputArg]), recipe.LayerIndex + 1).ToArray(); // read at LayerIndex
        var context = new AttentionContext(tensors[CosArg - InputArg], tensors[SinArg - InputArg], tensors[MaskArg - InputArg], recipe.UseCausalFlag, prefix, Cache: null);
        Tensor? resume = null;
        if (replay && randomState is not null)
        {
            resume = random.get_rng_state();
            random.set_rng_state(randomState);
        }

        try
        {
            return positions is null ? layer.call(x, context) : layer.ForwardAt(x, context, positions);
        }
        finally
        {
            if (resume is not null)
            {
                random.set_rng_state(resume); // dropout after this layer draws as it would have without the rerun
                resume.Dispose();
            }
        }
    }

    /// <summary>What the recomputation needs besides tensors.</summary>
    private sealed record Recipe(bool UseCausalFlag, int LayerIndex, IReadOnlyList<Tensor> Parameters);
}
