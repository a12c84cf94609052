using System.Text.Json.Nodes;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>The loss of one optimizer step, as a task computed it.</summary>
/// <param name="Loss">The mean loss over the step's examples.</param>
/// <param name="Tokens">The tokens the step processed (padding included).</param>
internal readonly record struct StepLoss(double Loss, long Tokens);

/// <summary>What one training task (classifier fine-tuning, causal-LM pretraining) gives <see cref="TrainingEngine"/>.</summary>
/// <remarks>
/// The engine owns the loop, AdamW, the schedule, gradient clipping, the best evaluation and early stopping, the
/// progress clock and the checkpoint; the task owns its model, its data order and what its evaluation means. Every
/// member is called on the training thread, in this order: <see cref="Restore"/> or <see cref="StartFresh"/>, then
/// <see cref="BeforeFirstStep"/>, then per step <see cref="ForwardBackward"/>, <see cref="OnStep"/>,
/// <see cref="Evaluate"/> and <see cref="OnImproved"/> when due, <see cref="AfterStep"/>, and
/// <see cref="OnCheckpointWritten"/> after each checkpoint; <see cref="Finish"/> at the end.
/// </remarks>
internal interface ITrainingTask
{
    /// <summary>Gets the name written into checkpoints (<c>classifier</c>, <c>causal-lm</c>); another task's checkpoint is refused.</summary>
    string Kind { get; }

    /// <summary>Gets the parameters to train, with stable names (checkpoint keys).</summary>
    IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    /// <summary>Gets the optimizer steps of the whole run.</summary>
    long TotalSteps { get; }

    /// <summary>
    /// Starts a run that has no checkpoint: from scratch (returns false), or from a state of the task's own that
    /// keeps no optimizer moments (sets <paramref name="run"/>'s step and re-warmup, returns true).
    /// </summary>
    bool StartFresh(TrainingRun run);

    /// <summary>Restores the task's section of a checkpoint and its extra tensors (CPU, in the caller's scope).</summary>
    void Restore(TrainingRun run, JsonObject? state, IReadOnlyDictionary<string, Tensor> tensors);

    /// <summary>Runs once before the first step of this process (for example to measure the time per step).</summary>
    void BeforeFirstStep(TrainingRun run);

    /// <summary>
    /// The forward and backward passes of optimizer step <paramref name="step"/> (0-based): seeds its random draws from
    /// the step, accumulates the gradients of the step's examples, and returns their mean loss. The engine clips,
    /// steps AdamW and clears the gradients afterwards.
    /// </summary>
    StepLoss ForwardBackward(long step, double learningRate);

    /// <summary>Called after every optimizer step (progress reports).</summary>
    void OnStep(TrainingRun run, StepReport report);

    /// <summary>Whether an evaluation follows the step that brought the run to <paramref name="step"/> steps.</summary>
    bool EvaluationDue(long step);

    /// <summary>Evaluates the model; lower is better (a validation loss, a perplexity).</summary>
    double Evaluate(TrainingRun run);

    /// <summary>Called when an evaluation improved on the best so far (keep the weights).</summary>
    void OnImproved(TrainingRun run, double value);

    /// <summary>Called after the step and its evaluation, if any (periodic logs).</summary>
    void AfterStep(TrainingRun run, StepReport report, double? evaluation);

    /// <summary>Whether the step that brought the run to <paramref name="step"/> steps ends a pass over the data (a checkpoint is always written there).</summary>
    bool IsBoundary(long step);

    /// <summary>The task's section of a checkpoint at the run's step, and its extra tensors (CPU copies, prefixed).</summary>
    (JsonObject State, IReadOnlyDictionary<string, Tensor> Tensors) Save(TrainingRun run);

    /// <summary>Called after each checkpoint was committed (write derived artifacts).</summary>
    void OnCheckpointWritten(TrainingRun run);

    /// <summary>Called when the run ends without error (restore the best weights).</summary>
    void Finish(TrainingRun run);
}
