using System.Diagnostics;
using Microsoft.ML.LabelTuning.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>How <see cref="TrainingEngine"/> optimizes, evaluates and checkpoints one run.</summary>
/// <param name="Groups">AdamW's parameter groups (learning-rate scale and weight decay each).</param>
/// <param name="Schedule">The learning rate of every step.</param>
/// <param name="MaxGradientNorm">Gradients are clipped to this global L2 norm; 0 disables clipping.</param>
/// <param name="Fingerprint">The hash of everything that changes the run's arithmetic; a checkpoint of another is refused.</param>
/// <param name="FingerprintCovers">What the fingerprint covers, in words, for the refusal.</param>
internal sealed record EngineSettings(
    IReadOnlyList<ParameterGroup> Groups,
    LearningRateSchedule Schedule,
    double MaxGradientNorm,
    string Fingerprint,
    string FingerprintCovers)
{
    /// <summary>Gets AdamW's β1. Default 0.9.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Gets AdamW's β2. Default 0.999.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Gets the evaluations without improvement after which training stops; 0 disables early stopping. Default 0.</summary>
    public int EarlyStoppingPatience { get; init; }

    /// <summary>Gets the folder of the run's checkpoint; null writes none. Default null.</summary>
    public string? CheckpointFolder { get; init; }

    /// <summary>Gets the optimizer steps between checkpoints; 0 disables. Default 0.</summary>
    public int CheckpointEverySteps { get; init; }

    /// <summary>Gets the minutes between checkpoints; null disables. Default null.</summary>
    public double? CheckpointIntervalMinutes { get; init; }

    /// <summary>Gets the minutes this process may train before it writes a checkpoint and returns; null = no limit. Default null.</summary>
    public double? MaxMinutes { get; init; }

    /// <summary>Gets whether a resumed checkpoint must hold AdamW's moments of every parameter. Default false.</summary>
    public bool RequireMoments { get; init; }

    /// <summary>Gets the token that stops training before the next step (a checkpoint is written first). Default none.</summary>
    public CancellationToken CancellationToken { get; init; }

    /// <summary>Gets where the engine's own log lines go (resume, cancellation, early stopping). Default none.</summary>
    public Action<string>? Log { get; init; }
}

/// <summary>The mutable state of a run while the engine trains it; what the tasks read and the engine checkpoints.</summary>
internal sealed class TrainingRun(AdamW optimizer)
{
    /// <summary>Gets the optimizer.</summary>
    public AdamW Optimizer { get; } = optimizer;

    /// <summary>Gets or sets the optimizer steps of the whole run.</summary>
    public long Step { get; set; }

    /// <summary>Gets the step this process started at.</summary>
    public long StartStep { get; internal set; }

    /// <summary>Gets or sets whether the run continued from a checkpoint or a task's own state.</summary>
    public bool Resumed { get; set; }

    /// <summary>Gets or sets the training seconds of earlier processes (before the meter starts).</summary>
    public double TrainSeconds { get; set; }

    /// <summary>Gets or sets the lowest evaluation so far.</summary>
    public double? BestValue { get; set; }

    /// <summary>Gets or sets the step of <see cref="BestValue"/>.</summary>
    public long BestStep { get; set; }

    /// <summary>Gets or sets the evaluations since the last improvement.</summary>
    public int EvaluationsWithoutImprovement { get; set; }

    /// <summary>Gets or sets the step at which AdamW's moments were reset, or null.</summary>
    public long? MomentsResetAtStep { get; set; }

    /// <summary>Gets or sets the steps of learning-rate re-warmup after <see cref="MomentsResetAtStep"/>.</summary>
    public int ResumeWarmupSteps { get; set; }

    /// <summary>Gets the loss of the last step (NaN before the first).</summary>
    public double LastLoss { get; internal set; } = double.NaN;

    /// <summary>Gets the rate of the last step.</summary>
    public double LastLearningRate { get; internal set; }

    /// <summary>Gets whether early stopping ended the run.</summary>
    public bool StoppedEarly { get; internal set; }

    /// <summary>Gets the progress and ETA meter (set before <see cref="ITrainingTask.BeforeFirstStep"/>).</summary>
    public ProgressMeter Meter { get; internal set; } = new(0, 0, 0);
}

/// <summary>
/// The one training engine of fine-tuning and pretraining: AdamW with decoupled weight decay, one
/// <see cref="LearningRateSchedule"/> (with re-warmup after a moment reset), global gradient clipping, an evaluation
/// hook with best tracking and early stopping, the progress/ETA meter, cancellation and a time limit, and one atomic,
/// versioned checkpoint (<see cref="TrainingCheckpoint"/>) that resumes exactly. What a step computes, what an
/// evaluation means and the data position are the task's (<see cref="ITrainingTask"/>).
/// </summary>
internal static class TrainingEngine
{
    /// <summary>Trains <paramref name="task"/> to its last step (or a stop) and returns the run's final state.</summary>
    public static TrainingRun Run(ITrainingTask task, EngineSettings settings)
    {
        using var heap = NativeHeap.ForTraining(); // training's buffers stay resident for reuse until the fit ends
        using var optimizer = new AdamW(settings.Groups, settings.Beta1, settings.Beta2);
        var run = new TrainingRun(optimizer);
        long? lastWritten = null;
        if (settings.CheckpointFolder is { } folder && Resume(task, settings, run, folder))
        {
            lastWritten = run.Step;
        }
        else
        {
            run.Resumed = task.StartFresh(run);
        }

        run.StartStep = run.Step;
        run.Meter = new ProgressMeter(run.Step, task.TotalSteps, run.TrainSeconds);
        task.BeforeFirstStep(run);
        run.Meter.Start();
        var sinceCheckpoint = Stopwatch.StartNew();

        void Checkpoint()
        {
            Write(task, settings, run);
            lastWritten = run.Step;
            sinceCheckpoint.Restart();
            task.OnCheckpointWritten(run);
        }

        try
        {
            while (run.Step < task.TotalSteps)
            {
                settings.CancellationToken.ThrowIfCancellationRequested();
                if (settings.MaxMinutes is { } minutes && run.Meter.Elapsed.TotalMinutes >= minutes)
                {
                    break;
                }

                var stepClock = Stopwatch.StartNew();
                var lr = settings.Schedule.At(run.Step) * LearningRateSchedule.RewarmFactor(run.Step, run.MomentsResetAtStep, run.ResumeWarmupSteps);
                var loss = task.ForwardBackward(run.Step, lr);
                if (settings.MaxGradientNorm > 0)
                {
                    using var clipScope = NewDisposeScope(); // the returned norm and the .grad handles it reads
                    nn.utils.clip_grad_norm_(task.Parameters.Select(p => p.Parameter), settings.MaxGradientNorm);
                }

                optimizer.Step(lr);
                optimizer.ZeroGrad();
                run.Step++;
                run.LastLoss = loss.Loss;
                run.LastLearningRate = lr;
                var report = run.Meter.Step(run.Step, loss.Loss, lr, loss.Tokens, stepClock.Elapsed.TotalSeconds);
                task.OnStep(run, report);

                double? evaluation = null;
                if (task.EvaluationDue(run.Step))
                {
                    var evalClock = Stopwatch.StartNew();
                    var value = task.Evaluate(run);
                    run.Meter.AddSeconds(evalClock.Elapsed.TotalSeconds);
                    evaluation = value;
                    if (run.BestValue is null || value < run.BestValue)
                    {
                        run.BestValue = value;
                        run.BestStep = run.Step;
                        run.EvaluationsWithoutImprovement = 0;
                        task.OnImproved(run, value);
                    }
                    else
                    {
                        run.EvaluationsWithoutImprovement++;
                    }
                }

                task.AfterStep(run, report, evaluation);
                var due = task.IsBoundary(run.Step)
                    || run.Step == task.TotalSteps
                    || (settings.CheckpointEverySteps > 0 && run.Step % settings.CheckpointEverySteps == 0)
                    || (settings.CheckpointIntervalMinutes is { } interval && sinceCheckpoint.Elapsed.TotalMinutes >= interval);
                if (settings.CheckpointFolder is not null && due)
                {
                    Checkpoint();
                }

                if (evaluation is not null && settings.EarlyStoppingPatience > 0 && run.EvaluationsWithoutImprovement >= settings.EarlyStoppingPatience)
                {
                    settings.Log?.Invoke($"early stopping at step {run.Step}: no improvement in {settings.EarlyStoppingPatience} evaluation(s)");
                    run.StoppedEarly = true;
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            if (settings.CheckpointFolder is not null)
            {
                Checkpoint();
                settings.Log?.Invoke($"training cancelled at step {run.Step}; checkpoint written to '{settings.CheckpointFolder}'");
            }

            throw;
        }

        if (settings.CheckpointFolder is not null && lastWritten != run.Step)
        {
            Checkpoint(); // stopped by the time limit, or a start from a task's state with no step to take
        }

        task.Finish(run);
        return run;
    }

    /// <summary>
    /// Copies <c>{keyPrefix}{name}</c> from <paramref name="tensors"/> into each parameter (casting to its dtype), after
    /// checking that every one is present with the parameter's shape.
    /// </summary>
    public static void CopyParameters(
        IReadOnlyDictionary<string, Tensor> tensors, string keyPrefix, IReadOnlyList<(string Name, Parameter Parameter)> parameters, string path)
    {
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
        {
            var key = keyPrefix + name;
            if (!tensors.TryGetValue(key, out var value))
            {
                throw new InvalidDataException($"Checkpoint tensors '{path}' have no tensor '{key}'.");
            }

            if (!value.shape.SequenceEqual(parameter.shape))
            {
                throw new InvalidDataException(
                    $"Tensor '{key}' has shape [{string.Join(", ", value.shape)}] in '{path}' but the model holds [{string.Join(", ", parameter.shape)}].");
            }

            parameter.copy_(value);
        }
    }

    private static bool Resume(ITrainingTask task, EngineSettings settings, TrainingRun run, string folder)
    {
        TrainingCheckpoint.DeleteTemporaryFiles(folder);
        using var scope = NewDisposeScope();
        if (TrainingCheckpoint.Read(folder) is not { } checkpoint)
        {
            return false;
        }

        var (saved, tensors) = checkpoint;
        var path = Path.Combine(folder, TrainingCheckpoint.TensorsFileName);
        if (saved.TaskKind != task.Kind)
        {
            throw new InvalidDataException($"Checkpoint '{path}' was written by a '{saved.TaskKind}' run, not a '{task.Kind}' run.");
        }

        if (saved.Fingerprint != settings.Fingerprint)
        {
            throw new InvalidOperationException(
                $"The checkpoint in '{folder}' belongs to a different run ({settings.FingerprintCovers}); another run's checkpoint is never resumed. " +
                "Use an empty CheckpointFolder for a new run, or the same options to resume.");
        }

        CopyParameters(tensors, TrainingCheckpoint.ParameterPrefix, task.Parameters, path);
        var moments = tensors.Where(kv => kv.Key.StartsWith(TrainingCheckpoint.OptimizerPrefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[TrainingCheckpoint.OptimizerPrefix.Length..], kv => kv.Value);
        if (settings.RequireMoments && saved.OptimizerSteps > 0)
        {
            foreach (var (name, _) in task.Parameters)
            {
                if (!moments.ContainsKey($"{name}.exp_avg") || !moments.ContainsKey($"{name}.exp_avg_sq"))
                {
                    throw new InvalidDataException($"Checkpoint tensors '{path}' lack the AdamW moments of '{name}'.");
                }
            }
        }

        run.Optimizer.LoadStateDict(moments, saved.OptimizerSteps);
        run.Step = saved.Step;
        run.TrainSeconds = saved.TrainSeconds;
        run.BestValue = saved.BestValue;
        run.BestStep = saved.BestStep;
        run.EvaluationsWithoutImprovement = saved.EvaluationsWithoutImprovement;
        run.MomentsResetAtStep = saved.MomentsResetAtStep;
        run.ResumeWarmupSteps = saved.ResumeWarmupSteps;
        run.Resumed = true;
        task.Restore(run, saved.Task, tensors);
        return true;
    }

    private static void Write(ITrainingTask task, EngineSettings settings, TrainingRun run)
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, parameter) in task.Parameters)
        {
            tensors[TrainingCheckpoint.ParameterPrefix + name] = parameter.detach().cpu();
        }

        foreach (var (name, value) in run.Optimizer.StateDict())
        {
            tensors[TrainingCheckpoint.OptimizerPrefix + name] = value.cpu();
        }

        var (taskState, extra) = task.Save(run);
        foreach (var (name, value) in extra)
        {
            tensors.Add(name, value);
        }

        TrainingCheckpoint.Write(settings.CheckpointFolder!, tensors, new TrainingCheckpointState
        {
            TaskKind = task.Kind,
            Step = run.Step,
            OptimizerSteps = run.Optimizer.StepCount,
            Fingerprint = settings.Fingerprint,
            TrainSeconds = run.Meter.TrainSeconds,
            BestValue = run.BestValue,
            BestStep = run.BestStep,
            EvaluationsWithoutImprovement = run.EvaluationsWithoutImprovement,
            MomentsResetAtStep = run.MomentsResetAtStep,
            ResumeWarmupSteps = run.ResumeWarmupSteps,
            Task = taskState,
        });
    }
}
