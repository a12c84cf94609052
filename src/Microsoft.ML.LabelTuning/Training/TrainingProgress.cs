namespace Microsoft.ML.LabelTuning.Training;

/// <summary>What a <see cref="TrainingProgress"/> report is about.</summary>
public enum TrainingProgressKind
{
    /// <summary>An optimizer step was taken.</summary>
    Step,

    /// <summary>An epoch ended and the validation set was scored.</summary>
    Validation,

    /// <summary>
    /// Before the first step: a warning the user should see (for example that the memory estimate exceeds the memory
    /// available, or that the micro-batch was lowered to fit); <see cref="TrainingProgress.Message"/> says it.
    /// </summary>
    Warning,

    /// <summary>
    /// Before the first step: the expected time per optimizer step and per epoch, measured on a few warm-up
    /// micro-batches (<see cref="TrainingProgress.ExpectedStepTime"/>, <see cref="TrainingProgress.ExpectedEpochTime"/>).
    /// </summary>
    Estimate,
}

/// <summary>A snapshot of training progress, reported after each optimizer step and each validation, and before the first step.</summary>
/// <param name="Epoch">The current epoch, from 1.</param>
/// <param name="Epochs">The number of epochs planned.</param>
/// <param name="Step">Optimizer steps taken so far.</param>
/// <param name="TotalSteps">Optimizer steps planned.</param>
/// <param name="Loss">Mean training loss over the last optimizer step (NaN before the first step).</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
/// <param name="TokensPerSecond">Training throughput over the last step, padding included.</param>
/// <param name="Elapsed">Time since training started (this process).</param>
/// <param name="EstimatedRemaining">Estimated time to finish (the ETA): from the steps taken so far, or, before the first step, from the warm-up.</param>
/// <param name="ValidationLoss">Validation loss, on validation reports only.</param>
/// <param name="ValidationAccuracy">Validation accuracy, on validation reports only.</param>
public sealed record TrainingProgress(
    int Epoch,
    int Epochs,
    long Step,
    long TotalSteps,
    double Loss,
    double LearningRate,
    double TokensPerSecond,
    TimeSpan Elapsed,
    TimeSpan EstimatedRemaining,
    double? ValidationLoss = null,
    double? ValidationAccuracy = null)
{
    /// <summary>Gets what this report is about. Default <see cref="TrainingProgressKind.Step"/>.</summary>
    public TrainingProgressKind Kind { get; init; } = TrainingProgressKind.Step;

    /// <summary>Gets the warning's text, on <see cref="TrainingProgressKind.Warning"/> reports; else null.</summary>
    public string? Message { get; init; }

    /// <summary>Gets the expected time of one optimizer step, measured on warm-up micro-batches; null until measured.</summary>
    public TimeSpan? ExpectedStepTime { get; init; }

    /// <summary>Gets the expected time of one epoch, from the warm-up and the epoch's planned batches; null until measured.</summary>
    public TimeSpan? ExpectedEpochTime { get; init; }

    /// <summary>Gets whether this report is an end-of-epoch validation.</summary>
    public bool IsValidation => ValidationLoss.HasValue;

    /// <summary>Gets whether this report is an optimizer step (not a validation, a warning or an estimate).</summary>
    public bool IsStep => Kind == TrainingProgressKind.Step && !IsValidation;
}
