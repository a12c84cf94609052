namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>A snapshot of a pretraining run, reported after logged steps and after each validation.</summary>
/// <param name="Step">Optimizer steps taken in the whole run (resumes included).</param>
/// <param name="TotalSteps">Optimizer steps the schedule plans.</param>
/// <param name="Tokens">Training tokens seen in the whole run (steps × batch × sequence length).</param>
/// <param name="Loss">Mean next-token cross-entropy (nats) over the steps since the previous report.</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
/// <param name="TokensPerSecond">Training throughput since the previous report.</param>
/// <param name="Elapsed">Training wall time of the whole run (resumes included, evaluation and checkpoints excluded).</param>
/// <param name="ValidationPerplexity">Perplexity on the validation file, on validation reports only.</param>
public sealed record PretrainingProgress(
    long Step,
    long TotalSteps,
    long Tokens,
    double Loss,
    double LearningRate,
    double TokensPerSecond,
    TimeSpan Elapsed,
    double? ValidationPerplexity = null)
{
    /// <summary>Gets whether this report carries a validation perplexity.</summary>
    public bool IsValidation => ValidationPerplexity.HasValue;
}

/// <summary>What a call to <see cref="CausalLmPretrainer.Run"/> did.</summary>
/// <param name="Steps">Optimizer steps of the whole run so far.</param>
/// <param name="TotalSteps">Optimizer steps the schedule plans.</param>
/// <param name="Tokens">Training tokens seen so far.</param>
/// <param name="TrainSeconds">Training wall time of the whole run so far.</param>
/// <param name="TokensPerSecond">Throughput of this call.</param>
/// <param name="LastLoss">Mean training loss of the last logged interval.</param>
/// <param name="BestValidationPerplexity">The lowest validation perplexity so far, if any validation ran.</param>
/// <param name="BestStep">The step of <paramref name="BestValidationPerplexity"/>.</param>
/// <param name="Completed">True when the run reached its token budget; false when stopped by time.</param>
/// <param name="Resumed">True when this call resumed from a checkpoint.</param>
public sealed record PretrainingSummary(
    long Steps,
    long TotalSteps,
    long Tokens,
    double TrainSeconds,
    double TokensPerSecond,
    double LastLoss,
    double? BestValidationPerplexity,
    long BestStep,
    bool Completed,
    bool Resumed);
