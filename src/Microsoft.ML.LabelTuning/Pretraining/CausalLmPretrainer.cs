using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using AdamW = Microsoft.ML.LabelTuning.Training.AdamW;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>
/// Pretrains a LLaMA causal language model from random initialisation: packed windows of text, next-token
/// cross-entropy, AdamW on every parameter, linear warmup then cosine decay to a floor, periodic validation
/// perplexity, a metrics file, and atomic checkpoints that resume exactly (weights, optimizer moments and step,
/// data position, random state). The best model by validation perplexity is kept in <c>best/</c>.
/// </summary>
/// <example>
/// <code>
/// var summary = new CausalLmPretrainer(new CausalLmPretrainerOptions
/// {
///     ModelConfig = config, TokenizerFolder = "models/labeltuning-default",
///     CorpusFiles = ["corpus.txt"], ValidationFile = "valid.txt", CheckpointFolder = "run",
/// }).Run();
/// </code>
/// </example>
public sealed class CausalLmPretrainer
{
    private readonly CausalLmPretrainerOptions _options;

    /// <summary>Validates the options; nothing is read until <see cref="Run"/>.</summary>
    /// <param name="options">The options; they are not modified.</param>
    /// <exception cref="ArgumentException">An option is missing or out of range.</exception>
    public CausalLmPretrainer(CausalLmPretrainerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
    }

    /// <summary>
    /// Trains until the token budget is reached or <see cref="CausalLmPretrainerOptions.MaxMinutes"/> is spent,
    /// resuming from the checkpoint folder when it holds a checkpoint of the same run.
    /// </summary>
    /// <returns>What the run did.</returns>
    /// <exception cref="OperationCanceledException">The token was cancelled (a checkpoint was written first).</exception>
    /// <exception cref="InvalidOperationException">The checkpoint belongs to another run, or the loss diverged.</exception>
    public PretrainingSummary Run()
    {
        TorchRuntime.EnsureInitialized();
        var o = _options;
        var config = o.ModelConfig!;
        var tokenizer = LlamaTextTokenizer.FromModelFolder(o.TokenizerFolder);
        if (tokenizer.VocabSize > config.VocabSize)
        {
            throw new ArgumentException(
                $"The tokenizer in '{o.TokenizerFolder}' has {tokenizer.VocabSize} ids but ModelConfig.VocabSize is {config.VocabSize}; the embedding must cover every id.",
                nameof(o.ModelConfig));
        }

        var cacheFolder = o.CheckpointFolder is null ? null : Path.Combine(o.CheckpointFolder, "cache");
        var corpus = PackedCorpus.Build(o.CorpusFiles, tokenizer, o.SequenceLength, TorchRuntime.Threads, cacheFolder);
        if (corpus.WindowCount < 1)
        {
            throw new InvalidOperationException(
                $"The corpus ({string.Join(", ", o.CorpusFiles)}) holds {corpus.Tokens.Length} tokens, fewer than one window of {o.SequenceLength + 1}.");
        }

        var validation = o.ValidationFile is null
            ? null
            : PackedCorpus.Build([o.ValidationFile], tokenizer, o.SequenceLength, TorchRuntime.Threads, cacheFolder);
        if (validation is { WindowCount: < 1 })
        {
            throw new InvalidOperationException(
                $"The validation file '{o.ValidationFile}' holds {validation.Tokens.Length} tokens, fewer than one window of {o.SequenceLength + 1}.");
        }

        var tokensPerStep = (long)o.BatchSize * o.SequenceLength;
        var maxTokens = o.MaxTokens ?? corpus.WindowCount * o.SequenceLength;
        var totalSteps = Math.Max(1, (maxTokens + tokensPerStep - 1) / tokensPerStep);
        var recipe = Recipe(config, corpus, validation);
        var fingerprint = FingerprintOf(recipe);
        var validationHash = validation?.ContentHash ?? "none";
        var tokenizerSha = PortablePretrainingState.Sha256Of(tokenizer.TokenizerFile);
        var metricsPath = o.MetricsFile ?? (o.CheckpointFolder is null ? null : Path.Combine(o.CheckpointFolder, PretrainingCheckpoint.MetricsFileName));

        random.manual_seed(o.Seed);
        using var model = new LlamaForCausalLM(config);
        var parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        using var optimizer = new AdamW(
            [
                new ParameterGroup("decay", parameters.Where(p => p.parameter.dim() >= 2).ToList(), 1.0, o.WeightDecay),
                new ParameterGroup("no_decay", parameters.Where(p => p.parameter.dim() < 2).ToList(), 1.0, 0),
            ],
            o.Beta1,
            o.Beta2);

        var state = new PretrainingState { Fingerprint = fingerprint };
        var resumed = false;
        var history = new List<string>();
        if (o.CheckpointFolder is not null)
        {
            Directory.CreateDirectory(o.CheckpointFolder);
            if (PretrainingCheckpoint.ReadState(o.CheckpointFolder) is { } saved)
            {
                if (saved.Fingerprint != fingerprint)
                {
                    throw new InvalidOperationException(
                        $"The checkpoint in '{o.CheckpointFolder}' belongs to another run (other architecture, data, tokenizer, batch, sequence length, rates or seed). " +
                        "Use an empty CheckpointFolder for a new run, or the same options to resume.");
                }

                PretrainingCheckpoint.Load(o.CheckpointFolder, saved, parameters, optimizer);
                state = saved;
                resumed = true;
                if (o.PortableStateFolder is not null && PortablePretrainingState.Read(o.PortableStateFolder) is { } portable)
                {
                    history.AddRange(portable.History);
                }
            }
            else if (o.PortableStateFolder is not null && PortablePretrainingState.Read(o.PortableStateFolder) is { } portable)
            {
                PortablePretrainingState.CheckMatches(o.PortableStateFolder, portable, corpus.ContentHash, validationHash, tokenizerSha, fingerprint, recipe);
                PortablePretrainingState.LoadWeights(o.PortableStateFolder, portable, parameters);
                state = new PretrainingState
                {
                    Step = portable.Step,
                    OptimizerSteps = 0,
                    Tokens = portable.Tokens,
                    Epoch = portable.Epoch,
                    WindowInEpoch = portable.WindowInEpoch,
                    TrainSeconds = portable.TrainSeconds,
                    Fingerprint = fingerprint,
                    MomentsResetAtStep = portable.Step,
                    ResumeWarmupSteps = o.ResumeWarmupSteps,
                };
                history.AddRange(portable.History);
                history.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{DateTime.UtcNow:yyyy-MM-dd}: continued from the portable state at step {portable.Step} ({portable.Tokens:N0} tokens) on {TorchRuntime.Threads} thread(s); AdamW moments reset, learning rate re-warmed over {o.ResumeWarmupSteps} steps"));
                resumed = true;
                var portableMetrics = Path.Combine(o.PortableStateFolder, PretrainingCheckpoint.MetricsFileName);
                if (metricsPath is not null && File.Exists(portableMetrics))
                {
                    AtomicFile.WriteText(metricsPath, File.ReadAllText(portableMetrics));
                }
            }

            if (!resumed)
            {
                history.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{DateTime.UtcNow:yyyy-MM-dd}: started from random initialisation (seed {o.Seed}) on {TorchRuntime.Threads} thread(s)"));
            }

            AtomicFile.WriteText(Path.Combine(o.CheckpointFolder, HfModelFolder.ConfigFileName),
                (config with { Architectures = ["LlamaForCausalLM"], TorchDtype = "float32" }).ToJson());
        }

        if (metricsPath is not null)
        {
            PretrainingMetrics.TruncateAfter(metricsPath, state.Step);
        }

        var order = new WindowOrder(corpus.WindowCount, o.Seed);
        var expected = order.Locate(state.Step * o.BatchSize);
        if (expected.Epoch != state.Epoch || expected.IndexInEpoch != state.WindowInEpoch)
        {
            throw new InvalidDataException(
                $"The checkpoint in '{o.CheckpointFolder}' is at step {state.Step} with data position (epoch {state.Epoch}, window {state.WindowInEpoch}) but the step implies (epoch {expected.Epoch}, window {expected.IndexInEpoch}).");
        }

        var run = new RunState(state, Stopwatch.StartNew());
        var portableInfo = new PortableStateInfo
        {
            Fingerprint = fingerprint,
            CorpusHash = corpus.ContentHash,
            ValidationHash = validationHash,
            TokenizerSha256 = tokenizerSha,
            Recipe = recipe,
            History = history,
        };
        var window = new long[o.BatchSize * (o.SequenceLength + 1)];
        var lastCheckpoint = Stopwatch.StartNew();
        var completed = state.Step >= totalSteps;
        model.train();

        try
        {
            while (run.Step < totalSteps)
            {
                o.CancellationToken.ThrowIfCancellationRequested();
                if (o.MaxMinutes is { } minutes && run.ProcessClock.Elapsed.TotalMinutes >= minutes)
                {
                    break;
                }

                var stepClock = Stopwatch.StartNew();
                var lr = LearningRateAt(run.Step, totalSteps) * RewarmFactor(run.Step, state);
                var loss = TrainStep(model, parameters, optimizer, corpus, order, run.Step, lr, window);
                run.Step++;
                run.StepSeconds += stepClock.Elapsed.TotalSeconds;
                run.TrainSeconds += stepClock.Elapsed.TotalSeconds;
                run.IntervalLoss += loss;
                run.IntervalSteps++;
                run.IntervalSeconds += stepClock.Elapsed.TotalSeconds;
                run.LastLearningRate = lr;

                var evalDue = validation is not null && (run.Step % o.EvalEverySteps == 0 || run.Step == totalSteps);
                if (run.Step % o.LogEverySteps == 0 || evalDue || run.Step == totalSteps)
                {
                    double? perplexity = null;
                    if (evalDue)
                    {
                        var evalClock = Stopwatch.StartNew();
                        perplexity = Evaluate(model, validation!, o.BatchSize, o.EvalMaxTokens, out var scoredTokens);
                        run.TrainSeconds += evalClock.Elapsed.TotalSeconds;
                        if (o.CheckpointFolder is not null && (run.BestPerplexity is null || perplexity < run.BestPerplexity))
                        {
                            run.BestPerplexity = perplexity;
                            run.BestStep = run.Step;
                            PretrainingCheckpoint.WriteBest(o.CheckpointFolder, model, config, new BestModelInfo
                            {
                                Step = run.Step,
                                Tokens = run.Step * tokensPerStep,
                                ValidationPerplexity = perplexity.Value,
                                ValidationTokens = scoredTokens,
                                TrainSeconds = run.TrainSeconds,
                                TrainLoss = run.IntervalLoss / run.IntervalSteps,
                                Threads = TorchRuntime.Threads,
                                SavedAt = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
                            });
                        }
                        else if (run.BestPerplexity is null || perplexity < run.BestPerplexity)
                        {
                            run.BestPerplexity = perplexity;
                            run.BestStep = run.Step;
                        }
                    }

                    Report(run, totalSteps, tokensPerStep, perplexity, metricsPath);
                }

                var checkpointDue = (o.CheckpointEverySteps > 0 && run.Step % o.CheckpointEverySteps == 0)
                    || lastCheckpoint.Elapsed.TotalMinutes >= o.CheckpointIntervalMinutes;
                if (o.CheckpointFolder is not null && checkpointDue && run.Step < totalSteps)
                {
                    WriteCheckpoint(run, parameters, optimizer, order, tokensPerStep, state, portableInfo, metricsPath);
                    lastCheckpoint.Restart();
                }
            }
        }
        catch (OperationCanceledException)
        {
            if (o.CheckpointFolder is not null)
            {
                WriteCheckpoint(run, parameters, optimizer, order, tokensPerStep, state, portableInfo, metricsPath);
            }

            throw;
        }

        if (o.CheckpointFolder is not null)
        {
            WriteCheckpoint(run, parameters, optimizer, order, tokensPerStep, state, portableInfo, metricsPath);
        }

        completed = run.Step >= totalSteps;
        var thisCallTokens = (run.Step - state.Step) * tokensPerStep;
        return new PretrainingSummary(
            run.Step,
            totalSteps,
            run.Step * tokensPerStep,
            run.TrainSeconds,
            thisCallTokens / Math.Max(1e-9, run.StepSeconds),
            run.LastLoss,
            run.BestPerplexity,
            run.BestStep,
            completed,
            resumed);
    }

    /// <summary>
    /// Writes a first portable state into <see cref="CausalLmPretrainerOptions.PortableStateFolder"/> from the weights
    /// of an exported model folder at <paramref name="step"/> of this run's recipe: a one-time migration for a run whose
    /// full checkpoint was lost but whose exported weights were kept. The position (tokens, data order) follows from the
    /// step; the AdamW moments start from zero. Refused when the folder already holds a state.
    /// </summary>
    /// <param name="modelFolder">A Hugging Face folder with the run's weights (any float dtype; converted to float32).</param>
    /// <param name="step">The optimizer step those weights are from.</param>
    /// <param name="trainSeconds">The wall time the run had spent to reach them.</param>
    /// <param name="note">How the weights came to be, recorded first in the state's history.</param>
    /// <exception cref="InvalidOperationException">No portable folder is set, or it already holds a state.</exception>
    public void WritePortableStateFromModel(string modelFolder, long step, double trainSeconds, string note)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelFolder);
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        TorchRuntime.EnsureInitialized();
        var o = _options;
        var folder = o.PortableStateFolder
            ?? throw new InvalidOperationException("PortableStateFolder must name the folder to write the state to.");
        if (PortablePretrainingState.Read(folder) is not null)
        {
            throw new InvalidOperationException(
                $"'{Path.Combine(folder, PortablePretrainingState.StateFileName)}' already holds a state; the run would restart from another point. Delete it first if that is meant.");
        }

        var config = o.ModelConfig!;
        var tokenizer = LlamaTextTokenizer.FromModelFolder(o.TokenizerFolder);
        var cacheFolder = o.CheckpointFolder is null ? null : Path.Combine(o.CheckpointFolder, "cache");
        var corpus = PackedCorpus.Build(o.CorpusFiles, tokenizer, o.SequenceLength, TorchRuntime.Threads, cacheFolder);
        var validation = o.ValidationFile is null
            ? null
            : PackedCorpus.Build([o.ValidationFile], tokenizer, o.SequenceLength, TorchRuntime.Threads, cacheFolder);
        var recipe = Recipe(config, corpus, validation);
        var (epoch, index) = new WindowOrder(corpus.WindowCount, o.Seed).Locate(step * o.BatchSize);
        using var model = CheckpointLoader.LoadCausalLM(modelFolder);
        var loaded = model.Config;
        if ((loaded.HiddenSize, loaded.IntermediateSize, loaded.NumHiddenLayers, loaded.NumAttentionHeads, loaded.KeyValueHeadCount, loaded.VocabSize, loaded.TieWordEmbeddings)
            != (config.HiddenSize, config.IntermediateSize, config.NumHiddenLayers, config.NumAttentionHeads, config.KeyValueHeadCount, config.VocabSize, config.TieWordEmbeddings))
        {
            throw new InvalidDataException(
                $"The model in '{modelFolder}' (hidden {loaded.HiddenSize}, {loaded.NumHiddenLayers} layers, vocab {loaded.VocabSize}) has another architecture than ModelConfig (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, vocab {config.VocabSize}).");
        }

        var parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        PortablePretrainingState.Write(folder, parameters, new PortableStateInfo
        {
            Step = step,
            Tokens = step * o.BatchSize * o.SequenceLength,
            Epoch = epoch,
            WindowInEpoch = index,
            TrainSeconds = trainSeconds,
            Fingerprint = FingerprintOf(recipe),
            CorpusHash = corpus.ContentHash,
            ValidationHash = validation?.ContentHash ?? "none",
            TokenizerSha256 = PortablePretrainingState.Sha256Of(tokenizer.TokenizerFile),
            Recipe = recipe,
            History = [note],
        }, metricsPath: null);
    }

    /// <summary>
    /// Linear warmup to the peak over <see cref="CausalLmPretrainerOptions.WarmupSteps"/>, then the options'
    /// <see cref="CausalLmPretrainerOptions.Schedule"/> down to <c>peak × MinLearningRateRatio</c> at the last step.
    /// A pure function of the step.
    /// </summary>
    internal double LearningRateAt(long step, long totalSteps)
        => _options.Schedule == PretrainingSchedule.Cosine
            ? Schedule(step, totalSteps, _options.LearningRate, _options.WarmupSteps, _options.MinLearningRateRatio)
            : WarmupStableDecay(step, totalSteps, _options.LearningRate, _options.WarmupSteps, _options.MinLearningRateRatio, _options.DecayFraction);

    /// <summary>
    /// Warmup-stable-decay as a pure function: linear warmup, the peak until the last
    /// <c>ceil(totalSteps × decayFraction)</c> steps, then a linear fall to <c>peak × floorRatio</c> at the last step.
    /// </summary>
    internal static double WarmupStableDecay(long step, long totalSteps, double peak, int warmupSteps, double floorRatio, double decayFraction)
    {
        if (step < warmupSteps)
        {
            return peak * (step + 1) / warmupSteps;
        }

        var decaySteps = Math.Max(1, (long)Math.Ceiling(totalSteps * decayFraction));
        var decayStart = Math.Max(warmupSteps, totalSteps - decaySteps);
        if (step < decayStart)
        {
            return peak;
        }

        var progress = Math.Clamp((double)(step + 1 - decayStart) / Math.Max(1, totalSteps - decayStart), 0, 1);
        var floor = peak * floorRatio;
        return peak - ((peak - floor) * progress);
    }

    /// <summary>The linear re-warmup factor after the AdamW moments were reset (a start from a portable state).</summary>
    internal static double RewarmFactor(long step, PretrainingState state)
        => state.MomentsResetAtStep is { } reset && state.ResumeWarmupSteps > 0 && step >= reset
            ? Math.Min(1.0, (double)(step - reset + 1) / state.ResumeWarmupSteps)
            : 1.0;

    /// <summary>The schedule as a pure function (see <see cref="LearningRateAt"/>).</summary>
    internal static double Schedule(long step, long totalSteps, double peak, int warmupSteps, double floorRatio)
    {
        if (step < warmupSteps)
        {
            return peak * (step + 1) / warmupSteps;
        }

        var progress = Math.Clamp((double)(step - warmupSteps) / Math.Max(1, totalSteps - warmupSteps), 0, 1);
        var floor = peak * floorRatio;
        return floor + ((peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }

    /// <summary>Mean next-token cross-entropy (nats) of the model on a batch of windows [B, T + 1].</summary>
    internal static Tensor NextTokenLoss(LlamaForCausalLM model, Tensor windows)
    {
        var length = windows.shape[1] - 1;
        var inputs = windows.narrow(1, 0, length);                     // [B, T]
        var targets = windows.narrow(1, 1, length);                    // [B, T]
        var logits = model.call(new LlamaInput { InputIds = inputs }); // [B, T, V]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), targets.reshape(-1)); // [B*T, V] vs [B*T]
    }

    private float TrainStep(
        LlamaForCausalLM model,
        IReadOnlyList<(string Name, Parameter Parameter)> parameters,
        AdamW optimizer,
        PackedCorpus corpus,
        WindowOrder order,
        long step,
        double lr,
        long[] buffer)
    {
        using var scope = NewDisposeScope();
        random.manual_seed(unchecked((_options.Seed * 1_000_003L) + step)); // every draw depends only on the step: exact resume
        var t = _options.SequenceLength;
        for (var row = 0; row < _options.BatchSize; row++)
        {
            var w = order.WindowAt((step * _options.BatchSize) + row);
            corpus.CopyWindow(w, buffer.AsSpan(row * (t + 1), t + 1));
        }

        var windows = tensor(buffer, [_options.BatchSize, t + 1]);     // [B, T + 1]
        var loss = NextTokenLoss(model, windows);
        loss.backward();
        var value = loss.item<float>();
        if (!float.IsFinite(value))
        {
            throw new InvalidOperationException(
                $"The pretraining loss became {value} at step {step + 1} (learning rate {lr:G3}). Lower LearningRate or raise WarmupSteps, and resume from the last checkpoint.");
        }

        if (_options.MaxGradientNorm > 0)
        {
            nn.utils.clip_grad_norm_(parameters.Select(p => p.Parameter), _options.MaxGradientNorm);
        }

        optimizer.Step(lr);
        optimizer.ZeroGrad();
        return value;
    }

    /// <summary>Perplexity over the validation windows in order (at most <paramref name="maxTokens"/> targets; 0 = all).</summary>
    internal static double Evaluate(LlamaForCausalLM model, PackedCorpus data, int batchSize, long maxTokens, out long scoredTokens)
    {
        model.eval();
        using var noGrad = no_grad();
        var t = data.SequenceLength;
        var windows = data.WindowCount;
        if (maxTokens > 0)
        {
            windows = Math.Max(1, Math.Min(windows, maxTokens / t));
        }

        double nllSum = 0;
        var buffer = new long[batchSize * (t + 1)];
        for (long start = 0; start < windows; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var rows = (int)Math.Min(batchSize, windows - start);
            for (var row = 0; row < rows; row++)
            {
                data.CopyWindow(start + row, buffer.AsSpan(row * (t + 1), t + 1));
            }

            var batch = tensor(buffer.AsSpan(0, rows * (t + 1)).ToArray(), [rows, t + 1]); // [b, T + 1]
            nllSum += NextTokenLoss(model, batch).item<float>() * rows * t;
        }

        model.train();
        scoredTokens = windows * t;
        return Math.Exp(nllSum / scoredTokens);
    }

    private void Report(RunState run, long totalSteps, long tokensPerStep, double? perplexity, string? metricsPath)
    {
        var loss = run.IntervalSteps > 0 ? run.IntervalLoss / run.IntervalSteps : (double?)null;
        var speed = run.IntervalSteps > 0 ? run.IntervalSteps * tokensPerStep / Math.Max(1e-9, run.IntervalSeconds) : (double?)null;
        if (loss is { } l)
        {
            run.LastLoss = l;
        }

        var metric = new PretrainingMetric
        {
            Step = run.Step,
            Tokens = run.Step * tokensPerStep,
            Loss = loss,
            LearningRate = run.LastLearningRate,
            TokensPerSecond = speed,
            ValidationPerplexity = perplexity,
            ElapsedSeconds = Math.Round(run.TrainSeconds, 3),
        };
        if (metricsPath is not null)
        {
            PretrainingMetrics.Append(metricsPath, metric);
        }

        _options.Progress?.Report(new PretrainingProgress(run.Step, totalSteps, metric.Tokens, loss ?? run.LastLoss, run.LastLearningRate,
            speed ?? 0, TimeSpan.FromSeconds(run.TrainSeconds), perplexity));
        run.IntervalLoss = 0;
        run.IntervalSteps = 0;
        run.IntervalSeconds = 0;
    }

    private void WriteCheckpoint(
        RunState run,
        IReadOnlyList<(string Name, Parameter Parameter)> parameters,
        AdamW optimizer,
        WindowOrder order,
        long tokensPerStep,
        PretrainingState started,
        PortableStateInfo portable,
        string? metricsPath)
    {
        var (epoch, index) = order.Locate(run.Step * _options.BatchSize);
        PretrainingCheckpoint.Write(_options.CheckpointFolder!, parameters, optimizer, new PretrainingState
        {
            MomentsResetAtStep = started.MomentsResetAtStep,
            ResumeWarmupSteps = started.ResumeWarmupSteps,
            Step = run.Step,
            OptimizerSteps = optimizer.StepCount,
            Tokens = run.Step * tokensPerStep,
            Epoch = epoch,
            WindowInEpoch = index,
            TrainSeconds = run.TrainSeconds,
            BestValidationPerplexity = run.BestPerplexity,
            BestStep = run.BestStep,
            Fingerprint = started.Fingerprint,
        });
        if (_options.PortableStateFolder is not null)
        {
            PortablePretrainingState.Write(_options.PortableStateFolder, parameters, portable with
            {
                Step = run.Step,
                Tokens = run.Step * tokensPerStep,
                Epoch = epoch,
                WindowInEpoch = index,
                TrainSeconds = run.TrainSeconds,
            }, metricsPath);
        }
    }

    /// <summary>Everything that changes the arithmetic of the run, as text (hashed into the fingerprint).</summary>
    private string Recipe(LlamaConfig config, PackedCorpus corpus, PackedCorpus? validation)
    {
        var o = _options;
        var text = new StringBuilder()
            .AppendLine((config with { SourcePath = null, TorchDtype = null, Architectures = null }).ToJson())
            .AppendLine(CultureInfo.InvariantCulture, $"corpus={corpus.ContentHash} valid={validation?.ContentHash ?? "none"}")
            .AppendLine(CultureInfo.InvariantCulture, $"T={o.SequenceLength} B={o.BatchSize} lr={o.LearningRate:R} warmup={o.WarmupSteps} floor={o.MinLearningRateRatio:R}")
            .AppendLine(CultureInfo.InvariantCulture, $"wd={o.WeightDecay:R} b1={o.Beta1:R} b2={o.Beta2:R} clip={o.MaxGradientNorm:R} seed={o.Seed}");
        if (o.Schedule != PretrainingSchedule.Cosine)
        {
            // Cosine runs keep the fingerprint they had before schedules were selectable.
            text.AppendLine(CultureInfo.InvariantCulture, $"schedule={o.Schedule} decay={o.DecayFraction:R}");
        }

        return text.ToString();
    }

    private static string FingerprintOf(string recipe)
        => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(recipe)))[..32].ToLowerInvariant();

    /// <summary>The mutable position of a run while it trains.</summary>
    private sealed class RunState(PretrainingState saved, Stopwatch processClock)
    {
        public Stopwatch ProcessClock { get; } = processClock;

        public long Step { get; set; } = saved.Step;

        public double TrainSeconds { get; set; } = saved.TrainSeconds;

        public double StepSeconds { get; set; }

        public double? BestPerplexity { get; set; } = saved.BestValidationPerplexity;

        public long BestStep { get; set; } = saved.BestStep;

        public double IntervalLoss { get; set; }

        public int IntervalSteps { get; set; }

        public double IntervalSeconds { get; set; }

        public double LastLearningRate { get; set; }

        public double LastLoss { get; set; } = double.NaN;
    }
}
