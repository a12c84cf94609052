using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>Everything the loop needs beyond the model and the data, derived once from the user's options.</summary>
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
/// The shared training loop: length-grouped batches with dynamic padding, AdamW with warmup then linear decay,
/// gradient accumulation and clipping, per-epoch validation with early stopping, atomic checkpoints with exact resume,
/// cancellation, and progress reports. One dispose scope per step.
/// </summary>
internal static class TrainingLoop
{
    private const string CheckpointTensors = "checkpoint.safetensors";
    private const string CheckpointState = "checkpoint.json";
    private const string StateMetadataKey = "training_state";
    private const string ParamPrefix = "param.";
    private const string OptimPrefix = "optim.";
    private const string BestPrefix = "best.";

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

        model.FreezeBase();
        var trainable = model.TrainableParameters();
        var groups = BuildGroups(trainable, plan);
        using var optimizer = new AdamW(groups);
        var lengths = train.Select(e => e.Ids.Length).ToArray();
        var batchesPerEpoch = (train.Count + plan.BatchSize - 1) / plan.BatchSize;
        var stepsPerEpoch = (batchesPerEpoch + plan.GradientAccumulationSteps - 1) / plan.GradientAccumulationSteps;
        var totalSteps = (long)stepsPerEpoch * plan.Epochs;
        var schedule = new LearningRateSchedule(plan.LearningRate, totalSteps, plan.WarmupRatio);
        var classWeights = plan.ClassWeights is null ? null : tensor(plan.ClassWeights).to(plan.Device);

        var state = new LoopState();
        var resumed = TryResume(plan, trainable, optimizer, state, channel, out var bestWeights);
        var best = state.BestValidationLoss;
        var clock = Stopwatch.StartNew();
        long tokensThisRun = 0;
        var lastLoss = double.NaN;
        TimeSpan? expectedStep = null, expectedEpoch = null;

        try
        {
            if (state.Epoch < plan.Epochs)
            {
                (expectedStep, expectedEpoch) = Warmup(model, train, plan, classWeights, trainable, lengths, state.Epoch, stepsPerEpoch);
                var remainingSteps = totalSteps - state.Step;
                var eta = TimeSpan.FromTicks((long)(expectedStep.Value.Ticks * (double)remainingSteps));
                channel?.Info($"expected {expectedStep.Value.TotalSeconds:G3} s per step, {Format(expectedEpoch.Value)} per epoch, " +
                    $"{Format(eta)} for the {remainingSteps} step(s) to go (measured on warm-up micro-batches)");
                plan.Progress?.Report(new TrainingProgress(state.Epoch + 1, plan.Epochs, state.Step, totalSteps, double.NaN, 0, 0, clock.Elapsed, eta)
                {
                    Kind = TrainingProgressKind.Estimate,
                    ExpectedStepTime = expectedStep,
                    ExpectedEpochTime = expectedEpoch,
                });
                clock.Restart();
            }

            for (var epoch = state.Epoch; epoch < plan.Epochs; epoch++)
            {
                model.SetTraining(true);
                var batches = LengthGroupedBatcher.Plan(lengths, plan.BatchSize, plan.Seed, epoch);
                var batchIndex = epoch == state.Epoch ? state.BatchInEpoch : 0;
                while (batchIndex < batches.Count)
                {
                    plan.CancellationToken.ThrowIfCancellationRequested();
                    var stepClock = Stopwatch.StartNew();
                    var micro = Math.Min(plan.GradientAccumulationSteps, batches.Count - batchIndex);
                    double stepLoss = 0;
                    long stepTokens = 0;
                    for (var m = 0; m < micro; m++)
                    {
                        var rows = batches[batchIndex + m];
                        var chunkIndex = 0;
                        foreach (var chunk in rows.Chunk(plan.MicroBatch))
                        {
                            using var scope = NewDisposeScope();
                            // Dropout depends only on the step (exact resume); a chunk of a split batch draws its own.
                            random.manual_seed(plan.Seed + (state.Step * 1009) + m + (chunkIndex * 7919L));
                            var examples = chunk.Select(i => train[i]).ToList();
                            var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), plan.PadId, plan.Device);
                            Tensor loss;
                            float value;
                            if (chunk.Length == rows.Length)
                            {
                                loss = model.Loss(batch, examples, classWeights) / micro;
                                loss.backward();
                                value = loss.item<float>() * micro;
                            }
                            else
                            {
                                var share = (double)chunk.Length / rows.Length; // mean over the batch = Σ share × mean over the chunk
                                loss = model.Loss(batch, examples, classWeights) * (share / micro);
                                loss.backward();
                                value = (float)(loss.item<float>() * micro / share);
                            }

                            if (!float.IsFinite(value))
                            {
                                throw new InvalidOperationException(
                                    $"The training loss became {value} at step {state.Step + 1} (epoch {epoch + 1}). Likely causes: a learning rate " +
                                    $"too high ({plan.LearningRate}), float16 overflow, or corrupt base weights. Lower LearningRate or use float32.");
                            }

                            stepLoss += chunk.Length == rows.Length ? value / micro : value * ((double)chunk.Length / rows.Length) / micro;
                            stepTokens += batch.TokenCount;
                            chunkIndex++;
                        }
                    }

                    if (plan.MaxGradientNorm > 0)
                    {
                        using var clipScope = NewDisposeScope(); // the returned norm and the .grad handles it reads
                        nn.utils.clip_grad_norm_(trainable.Select(p => p.Parameter), plan.MaxGradientNorm);
                    }

                    var lr = schedule.At(state.Step);
                    optimizer.Step(lr);
                    optimizer.ZeroGrad();
                    batchIndex += micro;
                    state.Step++;
                    state.Epoch = epoch;
                    state.BatchInEpoch = batchIndex;
                    tokensThisRun += stepTokens;
                    lastLoss = stepLoss;

                    var elapsed = clock.Elapsed;
                    var stepsThisRun = state.Step - state.StartStep;
                    var remaining = TimeSpan.FromTicks(stepsThisRun == 0 ? 0 : elapsed.Ticks / stepsThisRun * (totalSteps - state.Step));
                    var report = new TrainingProgress(epoch + 1, plan.Epochs, state.Step, totalSteps, stepLoss, lr,
                        stepTokens / Math.Max(1e-9, stepClock.Elapsed.TotalSeconds), elapsed, remaining)
                    {
                        ExpectedStepTime = expectedStep,
                        ExpectedEpochTime = expectedEpoch,
                    };
                    plan.Progress?.Report(report);
                    if (state.Step % 10 == 0 || state.Step == totalSteps)
                    {
                        channel?.Info($"epoch {epoch + 1}/{plan.Epochs} step {state.Step}/{totalSteps} loss {stepLoss:F4} lr {lr:G3} {report.TokensPerSecond:F0} tok/s");
                    }

                    if (plan.CheckpointFolder is not null && state.Step % plan.CheckpointEverySteps == 0 && batchIndex < batches.Count)
                    {
                        WriteCheckpoint(plan, trainable, optimizer, state, bestWeights);
                    }
                }

                state.Epoch = epoch + 1;
                state.BatchInEpoch = 0;
                if (validation is { Count: > 0 })
                {
                    var (validLoss, accuracy) = Evaluate(model, validation, plan, classWeights);
                    channel?.Info($"epoch {epoch + 1}: validation loss {validLoss:F4}, accuracy {accuracy:P2}");
                    plan.Progress?.Report(new TrainingProgress(epoch + 1, plan.Epochs, state.Step, totalSteps, lastLoss, schedule.At(state.Step - 1),
                        0, clock.Elapsed, TimeSpan.Zero, validLoss, accuracy) { Kind = TrainingProgressKind.Validation });
                    if (best is null || validLoss < best.Value)
                    {
                        best = validLoss;
                        state.BestValidationLoss = validLoss;
                        state.EpochsWithoutImprovement = 0;
                        DisposeAll(bestWeights);
                        bestWeights = Snapshot(trainable);
                    }
                    else
                    {
                        state.EpochsWithoutImprovement++;
                    }
                }

                if (plan.CheckpointFolder is not null)
                {
                    WriteCheckpoint(plan, trainable, optimizer, state, bestWeights);
                }

                if (plan.EarlyStoppingPatience > 0 && state.EpochsWithoutImprovement >= plan.EarlyStoppingPatience)
                {
                    channel?.Info($"early stopping after epoch {epoch + 1}: no validation improvement for {plan.EarlyStoppingPatience} epoch(s)");
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            if (plan.CheckpointFolder is not null)
            {
                WriteCheckpoint(plan, trainable, optimizer, state, bestWeights);
                channel?.Info($"training cancelled at step {state.Step}; checkpoint written to '{plan.CheckpointFolder}'");
            }

            DisposeAll(bestWeights);
            classWeights?.Dispose();
            throw;
        }
        catch
        {
            // A failed step (a non-finite loss, a throwing progress receiver, out of memory) leaves nothing behind either.
            DisposeAll(bestWeights);
            classWeights?.Dispose();
            throw;
        }

        if (bestWeights is not null && plan.EarlyStoppingPatience > 0)
        {
            Restore(trainable, bestWeights);
        }

        DisposeAll(bestWeights);
        classWeights?.Dispose();
        model.SetTraining(false);
        return new TrainingSummary(state.Step, state.Epoch, lastLoss, best, tokensThisRun / Math.Max(1e-9, clock.Elapsed.TotalSeconds),
            trainable.Sum(p => p.Parameter.numel()), resumed);
    }

    /// <summary>Micro-batches run before training to measure the time per token (the first only warms the allocator).</summary>
    internal const int WarmupMicroBatches = 3;

    /// <summary>
    /// Runs a few forward and backward passes on the epoch's first micro-batches, as training will, and extrapolates
    /// the time per optimizer step and per epoch from the time per padded token over the epoch's planned batches.
    /// The gradients are cleared afterwards (set to none, as before the first step), so training is unchanged.
    /// </summary>
    private static (TimeSpan Step, TimeSpan Epoch) Warmup(
        IClassifierModel model, IReadOnlyList<Example> train, TrainingPlan plan, Tensor? classWeights,
        IReadOnlyList<(string Name, Parameter Parameter)> trainable, int[] lengths, int epoch, int stepsPerEpoch)
    {
        var chunks = LengthGroupedBatcher.Plan(lengths, plan.BatchSize, plan.Seed, epoch).SelectMany(b => b.Chunk(plan.MicroBatch)).ToList();
        static long Padded(int[] chunk, int[] lengths) => (long)chunk.Length * chunk.Max(i => lengths[i]);
        var runs = Math.Min(WarmupMicroBatches, chunks.Count);
        double seconds = 0;
        long tokens = 0;
        model.SetTraining(true);
        for (var k = 0; k < runs; k++)
        {
            var clock = Stopwatch.StartNew();
            using (var scope = NewDisposeScope())
            {
                random.manual_seed(plan.Seed);
                var examples = chunks[k].Select(i => train[i]).ToList();
                var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), plan.PadId, plan.Device);
                var loss = model.Loss(batch, examples, classWeights);
                loss.backward();
                _ = loss.item<float>();
            }

            if (k > 0 || runs == 1)
            {
                seconds += clock.Elapsed.TotalSeconds;
                tokens += Padded(chunks[k], lengths);
            }
        }

        foreach (var (_, parameter) in trainable)
        {
            parameter.grad = null;
        }

        var perToken = seconds / Math.Max(1, tokens);
        var epochSeconds = perToken * chunks.Sum(c => Padded(c, lengths));
        return (TimeSpan.FromSeconds(epochSeconds / Math.Max(1, stepsPerEpoch)), TimeSpan.FromSeconds(epochSeconds));
    }

    private static string Format(TimeSpan time)
        => time.TotalHours >= 1 ? $"{time.TotalHours:F1} h" : time.TotalMinutes >= 1 ? $"{time.TotalMinutes:F1} min" : $"{time.TotalSeconds:F1} s";

    private static (double Loss, double Accuracy) Evaluate(IClassifierModel model, IReadOnlyList<Example> data, TrainingPlan plan, Tensor? classWeights)
    {
        model.SetTraining(false);
        using var noGrad = no_grad();
        double lossSum = 0;
        long correct = 0, counted = 0;
        var batches = LengthGroupedBatcher.Plan(data.Select(e => e.Ids.Length).ToArray(), plan.BatchSize, plan.Seed, 0, shuffle: false);
        foreach (var indices in batches)
        {
            using var scope = NewDisposeScope();
            var examples = indices.Select(i => data[i]).ToList();
            var batch = TokenBatch.Collate(examples.Select(e => e.Ids).ToList(), plan.PadId, plan.Device);
            lossSum += model.Loss(batch, examples, classWeights).item<float>() * examples.Count;
            if (!model.TokenLevel)
            {
                var predicted = model.Logits(batch).argmax(1).cpu().data<long>().ToArray();
                correct += predicted.Where((p, i) => p == examples[i].Label).Count();
                counted += examples.Count;
            }
        }

        model.SetTraining(true);
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
                groups.Add(new ParameterGroup($"decay@{byScale.Key}", decayed, byScale.Key, plan.WeightDecay));
            }

            if (plain.Count > 0)
            {
                groups.Add(new ParameterGroup($"no_decay@{byScale.Key}", plain, byScale.Key, 0));
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

    private static Dictionary<string, Tensor> Snapshot(IReadOnlyList<(string Name, Parameter Parameter)> trainable)
        => trainable.ToDictionary(p => p.Name, p => p.Parameter.detach().clone().DetachFromDisposeScope());

    private static void Restore(IReadOnlyList<(string Name, Parameter Parameter)> trainable, IReadOnlyDictionary<string, Tensor> weights)
    {
        using var noGrad = no_grad();
        foreach (var (name, parameter) in trainable)
        {
            parameter.copy_(weights[name]);
        }
    }

    private static void DisposeAll(Dictionary<string, Tensor>? tensors)
    {
        if (tensors is null)
        {
            return;
        }

        foreach (var t in tensors.Values)
        {
            t.Dispose();
        }
    }

    private sealed class LoopState
    {
        public long Step { get; set; }

        public long StartStep { get; set; }

        public int Epoch { get; set; }

        public int BatchInEpoch { get; set; }

        public double? BestValidationLoss { get; set; }

        public int EpochsWithoutImprovement { get; set; }

        public string Fingerprint { get; set; } = string.Empty;
    }

    private static void WriteCheckpoint(
        TrainingPlan plan, IReadOnlyList<(string Name, Parameter Parameter)> trainable, AdamW optimizer, LoopState state, Dictionary<string, Tensor>? bestWeights)
    {
        using var scope = NewDisposeScope();
        Directory.CreateDirectory(plan.CheckpointFolder!);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var (name, parameter) in trainable)
        {
            tensors[$"{ParamPrefix}{name}"] = parameter.detach().cpu();
        }

        foreach (var (name, value) in optimizer.StateDict())
        {
            tensors[$"{OptimPrefix}{name}"] = value.cpu();
        }

        // The early-stopping snapshot is part of the run's state: without it a resumed run would end on its last
        // weights instead of the best epoch's.
        foreach (var (name, value) in bestWeights ?? [])
        {
            tensors[$"{BestPrefix}{name}"] = value.cpu();
        }

        state.Fingerprint = plan.RunFingerprint;
        var json = JsonSerializer.Serialize(new CheckpointStateJson(
            state.Step, state.Epoch, state.BatchInEpoch, optimizer.StepCount, state.BestValidationLoss, state.EpochsWithoutImprovement,
            plan.RunFingerprint, bestWeights is not null));

        // One file is the commit point: the loop state travels in the safetensors metadata, so the single atomic
        // rename of checkpoint.safetensors switches tensors and state together, and a kill at any moment leaves either
        // the previous checkpoint or the new one. checkpoint.json is a readable copy written afterwards; resume trusts
        // the metadata.
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["step"] = state.Step.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [StateMetadataKey] = json,
        };
        SafeTensors.WriteFile(Path.Combine(plan.CheckpointFolder!, CheckpointTensors), tensors, metadata);
        AtomicFile.WriteText(Path.Combine(plan.CheckpointFolder!, CheckpointState), json);
    }

    private static bool TryResume(
        TrainingPlan plan,
        IReadOnlyList<(string Name, Parameter Parameter)> trainable,
        AdamW optimizer,
        LoopState state,
        IChannel? channel,
        out Dictionary<string, Tensor>? bestWeights)
    {
        bestWeights = null;
        if (plan.CheckpointFolder is null || !Directory.Exists(plan.CheckpointFolder))
        {
            return false;
        }

        // A kill during a save leaves a hidden temporary file behind; the folder belongs to this run, so clear them.
        AtomicFile.DeleteTemporaryFiles(plan.CheckpointFolder, CheckpointTensors, CheckpointState);
        var statePath = Path.Combine(plan.CheckpointFolder, CheckpointState);
        var tensorPath = Path.Combine(plan.CheckpointFolder, CheckpointTensors);
        if (!File.Exists(tensorPath))
        {
            return false;
        }

        using var scope = NewDisposeScope();
        var (tensors, metadata) = SafeTensors.ReadFile(tensorPath);
        CheckpointStateJson saved;
        if (metadata.TryGetValue(StateMetadataKey, out var embedded))
        {
            saved = ParseState(embedded, $"the '{StateMetadataKey}' metadata of '{tensorPath}'");
        }
        else
        {
            // Checkpoints written before the state moved into the metadata: the JSON file must name the same step.
            if (!File.Exists(statePath))
            {
                return false;
            }

            saved = ParseState(File.ReadAllText(statePath), $"checkpoint state '{statePath}'");
            if (!metadata.TryGetValue("step", out var step) || step != saved.Step.ToString(System.Globalization.CultureInfo.InvariantCulture))
            {
                throw new InvalidDataException($"Checkpoint '{tensorPath}' is for step {step ?? "?"} but '{statePath}' says step {saved.Step}; the checkpoint is inconsistent.");
            }
        }

        if (saved.Fingerprint != plan.RunFingerprint)
        {
            throw new InvalidOperationException(
                $"The checkpoint in '{plan.CheckpointFolder}' belongs to a different run (other data, options or base model). " +
                "Use an empty CheckpointFolder for a new run, or the same data and options to resume.");
        }

        using (no_grad())
        {
            foreach (var (name, parameter) in trainable)
            {
                parameter.copy_(Require(tensors, $"{ParamPrefix}{name}", tensorPath));
            }
        }

        if (saved.HasBestWeights)
        {
            var restored = new Dictionary<string, Tensor>();
            foreach (var (name, parameter) in trainable)
            {
                restored[name] = Require(tensors, $"{BestPrefix}{name}", tensorPath).to(parameter.dtype, parameter.device).clone().DetachFromDisposeScope();
            }

            bestWeights = restored;
        }

        var optimizerState = tensors.Where(kv => kv.Key.StartsWith(OptimPrefix, StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key[OptimPrefix.Length..], kv => kv.Value);
        optimizer.LoadStateDict(optimizerState, saved.OptimizerSteps);
        state.Step = saved.Step;
        state.StartStep = saved.Step;
        state.Epoch = saved.Epoch;
        state.BatchInEpoch = saved.BatchInEpoch;
        state.BestValidationLoss = saved.BestValidationLoss;
        state.EpochsWithoutImprovement = saved.EpochsWithoutImprovement;
        channel?.Info($"resuming from checkpoint at step {saved.Step} (epoch {saved.Epoch + 1}, batch {saved.BatchInEpoch})");
        return true;
    }

    private static Tensor Require(Dictionary<string, Tensor> tensors, string name, string path)
        => tensors.TryGetValue(name, out var value) ? value : throw new InvalidDataException($"Checkpoint '{path}' has no tensor '{name}'.");

    private static CheckpointStateJson ParseState(string json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<CheckpointStateJson>(json)
                ?? throw new InvalidDataException($"The training state in {source} is empty (JSON null).");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"The training state in {source} is not valid JSON: {ex.Message}", ex);
        }
    }

    private sealed record CheckpointStateJson(
        long Step, int Epoch, int BatchInEpoch, long OptimizerSteps, double? BestValidationLoss, int EpochsWithoutImprovement, string Fingerprint,
        bool HasBestWeights = false);
}
