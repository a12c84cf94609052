namespace Microsoft.ML.LabelTuning.Training;

/// <summary>A snapshot of training progress, reported after each optimizer step and each validation.</summary>
/// <param name="Epoch">The current epoch, from 1.</param>
/// <param name="Epochs">The number of epochs planned.</param>
/// <param name="Step">Optimizer steps taken so far.</param>
/// <param name="TotalSteps">Optimizer steps planned.</param>
/// <param name="Loss">Mean training loss over the last optimizer step.</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
/// <param name="TokensPerSecond">Training throughput over the last step, padding included.</param>
/// <param name="Elapsed">Time since training started (this process).</param>
/// <param name="EstimatedRemaining">Estimated time to finish.</param>
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
    /// <summary>Gets whether this report is an end-of-epoch validation.</summary>
    public bool IsValidation => ValidationLoss.HasValue;
}
