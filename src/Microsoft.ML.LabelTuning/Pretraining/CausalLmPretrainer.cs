using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>
/// Pretrains a LLaMA causal language model from random initialisation: packed windows of text, next-token
/// cross-entropy, AdamW on every parameter, linear warmup then warmup-stable-decay (or cosine) to a floor, periodic
/// validation perplexity, a metrics file, and atomic checkpoints that resume exactly (weights, optimizer moments and
/// step, data position, random state). It runs on the library's one training engine (the same loop, optimizer,
/// schedule and checkpoint format as fine-tuning). The best model by validation perplexity is kept in <c>best/</c>.
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
        var inputs = new PretrainingInputs(corpus.ContentHash, validation?.ContentHash ?? "none", PortablePretrainingState.Sha256Of(tokenizer.TokenizerFile), recipe);
        var metricsPath = o.MetricsFile ?? (o.CheckpointFolder is null ? null : Path.Combine(o.CheckpointFolder, PretrainingCheckpoint.MetricsFileName));
        if (o.CheckpointFolder is not null)
        {
            Directory.CreateDirectory(o.CheckpointFolder);
            PretrainingCheckpoint.MigrateFormat1(o.CheckpointFolder, Console.Error.WriteLine);
        }

        random.manual_seed(o.Seed);
        using var model = new LlamaForCausalLM(config);
        var parameters = model.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        var task = new CausalLmTrainingTask(o, model, parameters, corpus, validation, totalSteps, fingerprint, inputs, metricsPath);
        var settings = new EngineSettings(
            [
                new ParameterGroup("decay", parameters.Where(p => p.parameter.dim() >= 2).ToList(), 1.0, o.WeightDecay),
                new ParameterGroup("no_decay", parameters.Where(p => p.parameter.dim() < 2).ToList(), 1.0, 0),
            ],
            ScheduleFor(totalSteps),
            o.MaxGradientNorm,
            fingerprint,
            "other architecture, data, tokenizer, batch, sequence length, rates or seed")
        {
            Beta1 = o.Beta1,
            Beta2 = o.Beta2,
            CheckpointFolder = o.CheckpointFolder,
            CheckpointEverySteps = o.CheckpointEverySteps,
            CheckpointIntervalMinutes = o.CheckpointIntervalMinutes,
            MaxMinutes = o.MaxMinutes,
            RequireMoments = true,
            CancellationToken = o.CancellationToken,
        };

        var run = TrainingEngine.Run(task, settings);
        var thisCallTokens = (run.Step - run.StartStep) * tokensPerStep;
        return new PretrainingSummary(
            run.Step,
            totalSteps,
            run.Step * tokensPerStep,
            run.Meter.TrainSeconds,
            thisCallTokens / Math.Max(1e-9, run.Meter.StepSeconds),
            task.LastLoss,
            run.BestValue,
            run.BestStep,
            run.Step >= totalSteps,
            run.Resumed);
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
    /// </summary>
    internal LearningRateSchedule ScheduleFor(long totalSteps)
        => new(_options.Schedule == PretrainingSchedule.Cosine ? ScheduleShape.Cosine : ScheduleShape.WarmupStableDecay,
            _options.LearningRate, totalSteps, _options.WarmupSteps, _options.MinLearningRateRatio, _options.DecayFraction);

    /// <summary>The rate of the step with this 0-based index in a run of <paramref name="totalSteps"/> (before any re-warmup).</summary>
    internal double LearningRateAt(long step, long totalSteps) => ScheduleFor(totalSteps).At(step);

    /// <summary>Mean next-token cross-entropy (nats) of the model on a batch of windows [B, T + 1].</summary>
    internal static Tensor NextTokenLoss(LlamaForCausalLM model, Tensor windows)
    {
        var length = windows.shape[1] - 1;
        var inputs = windows.narrow(1, 0, length);                     // [B, T]
        var targets = windows.narrow(1, 1, length);                    // [B, T]
        var logits = model.call(new LlamaInput { InputIds = inputs }); // [B, T, V]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), targets.reshape(-1)); // [B*T, V] vs [B*T]
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
}
