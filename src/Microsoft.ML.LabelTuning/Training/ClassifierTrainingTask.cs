using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.Runtime;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>Everything the fine-tuning task needs beyond the model and the data, derived once from the user's options.</summary>
internal sealed record TrainingPlan(
    int BatchSize,
    int Epochs,
    double LearningRate,
    double WeightDecay,
    double WarmupRatio,
    int GradientAccumulationSteps,
    double MaxGradientNorm,
    int EarlyStoppingPatience,
    int Seed,
    float[]? ClassWeights,
    int PadId,
    Device Device,
    IProgress<TrainingProgress>? Progress,
    CancellationToken CancellationToken,
    string? CheckpointFolder,
    int CheckpointEverySteps,
    string RunFingerprint,
    IReadOnlyDictionary<string, double>? GroupLearningRateScales = null,
    int? MicroBatchSize = null)
{
    /// <summary>
    /// Gets the rows one forward and backward pass takes: each batch of <see cref="BatchSize"/> rows is split into
    /// chunks of this size whose losses are weighted by their share of the batch, so the gradient is the batch's
    /// (the memory check lowers it when the batch would not fit).
    /// </summary>
    public int MicroBatch => Math.Min(MicroBatchSize ?? BatchSize, BatchSize);
}

/// <summary>What training produced, for the model card and the benchmarks.</summary>
internal sealed record TrainingSummary(long Steps, int EpochsRun, double FinalLoss, double? BestValidationLoss, double TokensPerSecond, long TrainableParameters, bool Resumed);

/// <summary>
/// Fine-tuning a classifier as a task of <see cref="TrainingEngine"/>: length-grouped batches with dynamic padding,
/// gradient accumulation over <see cref="TrainingPlan.GradientAccumulationSteps"/> batches (each split into
/// micro-batches when memory asks), warmup then linear decay, validation loss and accuracy after every epoch with
/// early stopping on the best epoch's weights, and progress reports with the ETA. The data position is a pure
/// function of the step (epoch = step / steps per epoch), so a checkpoint resumes exactly.
/// </summary>
internal sealed class ClassifierTrainingTask : ITrainingTask, IDisposable
{
    /// <summary>Micro-batches run before training to measure the time per token (the first only warms the allocator).</summary>
    internal const int WarmupMicroBatches = 3;

    /// <summary>
    /// Padded tokens at most per warm-up micro-batch: longer micro-batches are cut to their first rows for the timing
    /// (at least one), so that timing a large model's step does not cost a step (per-token time is extrapolated).
    /// </summary>
    internal const int WarmupTokens = 4096;

    private const string BestPrefix = "best.";

    private readonly IClassifierModel _model;
    private readonly IReadOnlyList<Example> _train;
    private readonly IReadOnlyList<Example>? _validation;
    private readonly TrainingPlan _plan;
    private readonly IChannel? _channel;
    private readonly int[] _lengths;
    private readonly int _stepsPerEpoch;
    private readonly Tensor? _classWeights;
    private readonly Stopwatch _clock = new();
    private IReadOnlyList<int[]>? _batches;
    private int _batchesEpoch = -1;
    private Dictionary<string, Tensor>? _bestWeights;
    private TimeSpan? _expectedStep;
    private TimeSpan? _expectedEpoch;

    private ClassifierTrainingTask(IClassifierModel model, IReadOnlyList<Example> train, IReadOnlyList<Example>? validation, TrainingPlan plan, IChannel? channel)
    {
        _model = model;
        _train = train;
        _validation = validation;
        _plan = plan;
        _channel = channel;
        model.FreezeBase();
        Parameters = model.TrainableParameters();
        _lengths = train.Select(e => e.Ids.Length).ToArray();
        var batchesPerEpoch = (train.Count + plan.BatchSize - 1) / plan.BatchSize;
        _stepsPerEpoch = (batchesPerEpoch + plan.GradientAccumulationSteps - 1) / plan.GradientAccumulationSteps;
        TotalSteps = (long)_stepsPerEpoch * plan.Epochs;
        _classWeights = plan.ClassWeights is null ? null : tensor(plan.ClassWeights).to(plan.Device);
    }

    public string Kind => "classifier";

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    public long TotalSteps { get; }

    /// <summary>Trains <paramref name="model"/> on <paramref name="train"/> and returns what training did.</summary>
    public static TrainingSummary Run(
        IClassifierModel model,
        IReadOnlyList<Example> train,
        IReadOnlyList<Example>? validation,
        TrainingPlan plan,
        IChannel? channel)
    {
        if (train.Count == 0)
        {
            throw new InvalidOperationException("The training data has no labelled rows.");
        }

        using var task = new ClassifierTrainingTask(model, train, validation, plan, channel);
        var settings = new EngineSettings(
            BuildGroups(task.Parameters, plan),
            LearningRateSchedule.Linear(plan.LearningRate, task.TotalSteps, plan.WarmupRatio),
            plan.MaxGradientNorm,
            plan.RunFingerprint,
            "other data, options or base model")
        {
            EarlyStoppingPatience = plan.EarlyStoppingPatience,
            CheckpointFolder = plan.CheckpointFolder,
            CheckpointEverySteps = plan.CheckpointEverySteps,
            CancellationToken = plan.CancellationToken,
            Log = channel is null ? null : message => channel.Info(message),
        };
        var run = TrainingEngine.Run(task, settings);
        return new TrainingSummary(run.Step, (int)(run.Step / task._stepsPerEpoch), run.LastLoss, run.BestValue,
            run.Meter.Tokens / Math.Max(1e-9, run.Meter.Elapsed.TotalSeconds), task.Parameters.Sum(p => p.Parameter.numel()), run.Resumed);
    }

    public bool StartFresh(TrainingRun run) => false;

    public void Restore(TrainingRun run, JsonObject? state, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var (epoch, batch) = Position(run.Step);
        if (state?["epoch"]?.GetValue<int>() is { } savedEpoch && state["batch_in_epoch"]?.GetValue<int>() is { } savedBatch && (savedEpoch, savedBatch) != (epoch, batch))
        {
            throw new InvalidDataException(
                $"The checkpoint is at step {run.Step} with data position (epoch {savedEpoch}, batch {savedBatch}) but the step implies (epoch {epoch}, batch {batch}); the data or batch size changed.");
        }

        if (state?["has_best_weights"]?.GetValue<bool>() == true)
        {
            var restored = new Dictionary<string, Tensor>();
            foreach (var (name, parameter) in Parameters)
            {
                if (!tensors.TryGetValue(BestPrefix + name, out var saved))
                {
                    DisposeAll(restored);
                    throw new InvalidDataException($"The checkpoint has no tensor '{BestPrefix}{name}'.");
                }

                restored[name] = saved.to(parameter.dtype, parameter.device).clone().DetachFromDisposeScope();
            }

            _bestWeights = restored;
        }

        _channel?.Info($"resuming from checkpoint at step {run.Step} (epoch {epoch + 1}, batch {batch})");
    }

    public void BeforeFirstStep(TrainingRun run)
    {
        _clock.Start();
        if (run.Step >= TotalSteps)
        {
            return;
        }

        var (epoch, _) = Position(run.Step);
        (_expectedStep, _expectedEpoch) = Warmup(epoch);
        var remainingSteps = TotalSteps - run.Step;
        var eta = run.Meter.Expected(_expectedStep.Value, run.Step);
        _channel?.Info($"expected {_expectedStep.Value.TotalSeconds:G3} s per step, {ProgressMeter.Format(_expectedEpoch.Value)} per epoch, " +
            $"{ProgressMeter.Format(eta)} for the {remainingSteps} step(s) to go (measured on warm-up micro-batches)");
        _plan.Progress?.Report(new TrainingProgress(epoch + 1, _plan.Epochs, run.Step, TotalSteps, double.NaN, 0, 0, _clock.Elapsed, eta)
        {
            Kind = TrainingProgressKind.Estimate,
            ExpectedStepTime = _expectedStep,
            ExpectedEpochTime = _expectedEpoch,
        });
    }

    public StepLoss ForwardBackward(long step, double learningRate)
    {
        var (epoch, batchIndex) = Position(step);
        var batches = BatchesOf(epoch);
        var micro = Math.Min(_plan.GradientAccumulationSteps, batches.Count - batchIndex);
        double stepLoss = 0;
        long stepTokens = 0;
        for (var m = 0; m < micro; m++)
        {
            var rows = batches[batchIndex + m];
            var chunkIndex = 0;
            foreach (var chunk in rows.Chunk(_plan.MicroBatch))
            {
                using var scope = NewDisposeScope();
                // Dropout depends only on the step (exact resume); a chunk of a split batch draws its own.
                random.manual_seed(_plan.Seed + (step * 1009) + m + (chunkIndex * 7919L));
                var examples = chunk.Select(i => _train[i]).ToList();
                var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), _plan.PadId, _plan.Device);
                Tensor loss;
                float value;
                if (chunk.Length == rows.Length)
                {
                    loss = _model.Loss(batch, examples, _classWeights) / micro;
                    loss.backward();
                    value = loss.item<float>() * micro;
                }
                else
                {
                    var share = (double)chunk.Length / rows.Length; // mean over the batch = Σ share × mean over the chunk
                    loss = _model.Loss(batch, examples, _classWeights) * (share / micro);
                    loss.backward();
                    value = (float)(loss.item<float>() * micro / share);
                }

                if (!float.IsFinite(value))
                {
                    throw new InvalidOperationException(
                        $"The training loss became {value} at step {step + 1} (epoch {epoch + 1}). Likely causes: a learning rate " +
                        $"too high ({_plan.LearningRate}), float16 overflow, or corrupt base weights. Lower LearningRate or use float32.");
                }

                stepLoss += chunk.Length == rows.Length ? value / micro : value * ((double)chunk.Length / rows.Length) / micro;
                stepTokens += batch.TokenCount;
                chunkIndex++;
            }
        }

        return new StepLoss(stepLoss, stepTokens);
    }

    public void OnStep(TrainingRun run, StepReport report)
    {
        var epoch = (int)((run.Step - 1) / _stepsPerEpoch);
        var progress = new TrainingProgress(epoch + 1, _plan.Epochs, report.Step, report.TotalSteps, report.Loss, report.LearningRate,
            report.TokensPerSecond, report.Elapsed, report.Remaining)
        {
            ExpectedStepTime = _expectedStep,
            ExpectedEpochTime = _expectedEpoch,
        };
        _plan.Progress?.Report(progress);
        if (report.Step % 10 == 0 || report.Step == report.TotalSteps)
        {
            _channel?.Info($"epoch {epoch + 1}/{_plan.Epochs} step {report.Step}/{report.TotalSteps} loss {report.Loss:F4} lr {report.LearningRate:G3} {progress.TokensPerSecond:F0} tok/s");
        }
    }

    public bool EvaluationDue(long step) => IsBoundary(step) && _validation is { Count: > 0 };

    public double Evaluate(TrainingRun run)
    {
        var epoch = (int)(run.Step / _stepsPerEpoch) - 1;
        var (validLoss, accuracy) = Evaluate(_validation!);
        _channel?.Info($"epoch {epoch + 1}: validation loss {validLoss:F4}, accuracy {accuracy:P2}");
        _plan.Progress?.Report(new TrainingProgress(epoch + 1, _plan.Epochs, run.Step, TotalSteps, run.LastLoss, run.LastLearningRate,
            0, run.Meter.Elapsed, TimeSpan.Zero, validLoss, accuracy) { Kind = TrainingProgressKind.Validation });
        return validLoss;
    }

    public void OnImproved(TrainingRun run, double value)
    {
        DisposeAll(_bestWeights);
        _bestWeights = Parameters.ToDictionary(p => p.Name, p => p.Parameter.detach().clone().DetachFromDisposeScope());
    }

    public void AfterStep(TrainingRun run, StepReport report, double? evaluation)
    {
    }

    public bool IsBoundary(long step) => step % _stepsPerEpoch == 0;

    public (JsonObject State, IReadOnlyDictionary<string, Tensor> Tensors) Save(TrainingRun run)
    {
        var (epoch, batch) = Position(run.Step);
        var state = new JsonObject
        {
            ["epoch"] = epoch,
            ["batch_in_epoch"] = batch,
            ["steps_per_epoch"] = _stepsPerEpoch,
            ["has_best_weights"] = _bestWeights is not null,
        };

        // The early-stopping snapshot is part of the run's state: without it a resumed run would end on its last
        // weights instead of the best epoch's.
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, value) in _bestWeights ?? [])
        {
            tensors[BestPrefix + name] = value.cpu();
        }

        return (state, tensors);
    }

    public void OnCheckpointWritten(TrainingRun run)
    {
    }

    public void Finish(TrainingRun run)
    {
        if (_bestWeights is not null && _plan.EarlyStoppingPatience > 0)
        {
            using var noGrad = no_grad();
            foreach (var (name, parameter) in Parameters)
            {
                parameter.copy_(_bestWeights[name]);
            }
        }

        _model.SetTraining(false);
    }

    public void Dispose()
    {
        DisposeAll(_bestWeights);
        _bestWeights = null;
        _classWeights?.Dispose();
    }

    /// <summary>The data position of the step with this 0-based index: the epoch and the first batch of the step.</summary>
    private (int Epoch, int Batch) Position(long step)
        => ((int)(step / _stepsPerEpoch), (int)(step % _stepsPerEpoch) * _plan.GradientAccumulationSteps);

    private IReadOnlyList<int[]> BatchesOf(int epoch)
    {
        if (epoch != _batchesEpoch)
        {
            _model.SetTraining(true);
            _batches = LengthGroupedBatcher.Plan(_lengths, _plan.BatchSize, _plan.Seed, epoch);
            _batchesEpoch = epoch;
        }

        return _batches!;
    }

    /// <summary>
    /// Runs a few forward and backward passes on the epoch's first micro-batches (each cut to
    /// <see cref="WarmupTokens"/> padded tokens), as training will, and extrapolates the time per optimizer step and
    /// per epoch from the time per padded token over the epoch's planned batches.
    /// The gradients are cleared afterwards (set to none, as before the first step), so training is unchanged.
    /// </summary>
    private (TimeSpan Step, TimeSpan Epoch) Warmup(int epoch)
    {
        var chunks = LengthGroupedBatcher.Plan(_lengths, _plan.BatchSize, _plan.Seed, epoch).SelectMany(b => b.Chunk(_plan.MicroBatch)).ToList();
        static long Padded(int[] chunk, int[] lengths) => (long)chunk.Length * chunk.Max(i => lengths[i]);
        int[] Timed(int[] chunk) => chunk.Take(Math.Max(1, WarmupTokens / Math.Max(1, chunk.Max(i => _lengths[i])))).ToArray();
        var runs = Math.Min(WarmupMicroBatches, chunks.Count);
        double seconds = 0;
        long tokens = 0;
        _model.SetTraining(true);
        for (var k = 0; k < runs; k++)
        {
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                random.manual_seed(_plan.Seed);
                var examples = Timed(chunks[k]).Select(i => _train[i]).ToList();
                var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), _plan.PadId, _plan.Device);
                var loss = _model.Loss(batch, examples, _classWeights);
                loss.backward();
                _ = loss.item<float>();
            }

            if (k > 0 || runs == 1)
            {
                seconds += clock.Elapsed.TotalSeconds;
                tokens += Padded(Timed(chunks[k]), _lengths);
            }
        }

        foreach (var (_, parameter) in Parameters)
        {
            parameter.grad = null;
        }

        var perToken = seconds / Math.Max(1, tokens);
        var epochSeconds = perToken * chunks.Sum(c => Padded(c, _lengths));
        return (TimeSpan.FromSeconds(epochSeconds / Math.Max(1, _stepsPerEpoch)), TimeSpan.FromSeconds(epochSeconds));
    }

    private (double Loss, double Accuracy) Evaluate(IReadOnlyList<Example> data)
    {
        _model.SetTraining(false);
        using var noGrad = no_grad();
        double lossSum = 0;
        long correct = 0, counted = 0;
        var batches = LengthGroupedBatcher.Plan(data.Select(e => e.Ids.Length).ToArray(), _plan.BatchSize, _plan.Seed, 0, shuffle: false);
        foreach (var indices in batches)
        {
            using var scope = NewDisposeScope();
            var examples = indices.Select(i => data[i]).ToList();
            var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), _plan.PadId, _plan.Device);
            lossSum += _model.Loss(batch, examples, _classWeights).item<float>() * examples.Count;
            if (!_model.TokenLevel)
            {
                var predicted = _model.Logits(batch).argmax(1).cpu().data<long>().ToArray();
                correct += predicted.Where((p, i) => p == examples[i].Label).Count();
                counted += examples.Count;
            }
        }

        _model.SetTraining(true);
        return (lossSum / data.Count, counted == 0 ? double.NaN : (double)correct / counted);
    }

    private static List<ParameterGroup> BuildGroups(IReadOnlyList<(string Name, Parameter Parameter)> trainable, TrainingPlan plan)
    {
        // Weight decay applies to matrices, not to biases, norms or 1-D vectors (the usual exemption).
        var groups = new List<ParameterGroup>();
        foreach (var byScale in trainable.GroupBy(p => ScaleFor(p.Name, plan)))
        {
            var decayed = byScale.Where(p => p.Parameter.dim() >= 2).ToList();
            var plain = byScale.Where(p => p.Parameter.dim() < 2).ToList();
            if (decayed.Count > 0)
            {
                groups.Add(new ParameterGroup($"decay@{byScale.Key.ToString(CultureInfo.InvariantCulture)}", decayed, byScale.Key, plan.WeightDecay));
            }

            if (plain.Count > 0)
            {
                groups.Add(new ParameterGroup($"no_decay@{byScale.Key.ToString(CultureInfo.InvariantCulture)}", plain, byScale.Key, 0));
            }
        }

        return groups;
    }

    private static double ScaleFor(string name, TrainingPlan plan)
    {
        if (plan.GroupLearningRateScales is null)
        {
            return 1.0;
        }

        foreach (var (prefix, scale) in plan.GroupLearningRateScales)
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                return scale;
            }
        }

        return 1.0;
    }

    private static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        foreach (var t in tensors?.Values ?? Enumerable.Empty<Tensor>())
        {
            t.Dispose();
        }
    }
}
