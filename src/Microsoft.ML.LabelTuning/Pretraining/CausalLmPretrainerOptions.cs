using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>
/// Options of <see cref="CausalLmPretrainer"/>: full-parameter next-token training of a LLaMA model from random
/// initialisation on packed text. The pretrainer never writes into this object.
/// </summary>
/// <remarks>
/// The learning-rate schedule and the data order depend only on the optimizer step, so a run stopped at any point
/// (by <see cref="MaxMinutes"/>, cancellation or a crash) resumes from its last checkpoint to exactly the weights an
/// uninterrupted run reaches. Options that change the arithmetic (architecture, data, batch, sequence length, rates,
/// seed) are fingerprinted in the checkpoint; resuming with different ones is refused. <see cref="MaxTokens"/>,
/// <see cref="MaxMinutes"/> and the intervals may change between resumes.
/// </remarks>
public sealed class CausalLmPretrainerOptions
{
    /// <summary>The architecture to train from random initialisation. Its vocabulary must cover the tokenizer's ids. Required.</summary>
    public LlamaConfig? ModelConfig { get; set; }

    /// <summary>A folder holding <c>tokenizer.model</c> or <c>tokenizer.json</c> (with their config files). Required.</summary>
    public string TokenizerFolder { get; set; } = string.Empty;

    /// <summary>
    /// UTF-8 training text files. Documents are separated by one blank line; each document is encoded as
    /// BOS + tokens + EOS and the documents are concatenated in file order. Required, at least one.
    /// </summary>
    public IReadOnlyList<string> CorpusFiles { get; set; } = [];

    /// <summary>A held-out file in the same format, scored every <see cref="EvalEverySteps"/> steps (perplexity). Default null.</summary>
    public string? ValidationFile { get; set; }

    /// <summary>Tokens per training window (the model sees T tokens and predicts the T next ones). 8 to 32768. Default 256.</summary>
    public int SequenceLength { get; set; } = 256;

    /// <summary>Windows per optimizer step. Positive. Default 16.</summary>
    public int BatchSize { get; set; } = 16;

    /// <summary>Peak AdamW learning rate, reached after <see cref="WarmupSteps"/>. Positive. Default 1e-3.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Optimizer steps of linear warmup from 0 to the peak. Non-negative. Default 200.</summary>
    public int WarmupSteps { get; set; } = 200;

    /// <summary>
    /// The floor of the decay as a fraction of the peak: the rate falls from the peak to
    /// <c>peak × MinLearningRateRatio</c> at <see cref="MaxTokens"/>. 0 to 1. Default 0.1.
    /// </summary>
    public double MinLearningRateRatio { get; set; } = 0.1;

    /// <summary>
    /// The shape of the learning rate after warmup. <see cref="PretrainingSchedule.WarmupStableDecay"/> holds the peak
    /// and decays linearly over the last <see cref="DecayFraction"/> of the steps, so the token budget can be raised
    /// at any time before the decay starts; <see cref="PretrainingSchedule.Cosine"/> decays from the end of warmup.
    /// Default <see cref="PretrainingSchedule.WarmupStableDecay"/>.
    /// </summary>
    public PretrainingSchedule Schedule { get; set; } = PretrainingSchedule.WarmupStableDecay;

    /// <summary>The fraction of the run's steps, at its end, over which warmup-stable-decay decays to the floor. (0, 1]. Default 0.15.</summary>
    public double DecayFraction { get; set; } = 0.15;

    /// <summary>
    /// Steps of linear re-warmup after a start from a <see cref="PortableStateFolder"/> state, whose AdamW moments are
    /// reset (they are not kept in the portable state). Non-negative. Default 50.
    /// </summary>
    public int ResumeWarmupSteps { get; set; } = 50;

    /// <summary>
    /// A folder holding a compact, portable copy of the run (float32 weights, position, hashes and the metrics) meant
    /// to be committed to a repository: when <see cref="CheckpointFolder"/> holds no checkpoint, the run starts from
    /// this state (its AdamW moments reset, see <see cref="ResumeWarmupSteps"/>); the state is rewritten at every
    /// checkpoint. A state of another corpus, tokenizer or recipe is refused. Default null (none).
    /// </summary>
    public string? PortableStateFolder { get; set; }

    /// <summary>Decoupled AdamW weight decay on matrices (not on norm weights). Non-negative. Default 0.1.</summary>
    public double WeightDecay { get; set; } = 0.1;

    /// <summary>AdamW β1. In [0, 1). Default 0.9.</summary>
    public double Beta1 { get; set; } = 0.9;

    /// <summary>AdamW β2. In [0, 1). Default 0.95 (LLaMA's).</summary>
    public double Beta2 { get; set; } = 0.95;

    /// <summary>Gradients are clipped to this global L2 norm; 0 disables clipping. Non-negative. Default 1.0.</summary>
    public double MaxGradientNorm { get; set; } = 1.0;

    /// <summary>
    /// Training tokens of the whole run (steps × batch × sequence length): the schedule ends here and
    /// training stops. Null means one pass over the corpus. Positive when set. Default null.
    /// </summary>
    public long? MaxTokens { get; set; }

    /// <summary>Wall-clock minutes for this process; when spent, a checkpoint is written and <see cref="CausalLmPretrainer.Run"/> returns (resume later). Null = no limit. Default null.</summary>
    public double? MaxMinutes { get; set; }

    /// <summary>Folder for checkpoints, the metrics file and the best model; a run resumes from it when it holds one. Default null (no checkpoints).</summary>
    public string? CheckpointFolder { get; set; }

    /// <summary>Minutes between checkpoints (one is also written when the run stops). Positive. Default 10.</summary>
    public double CheckpointIntervalMinutes { get; set; } = 10;

    /// <summary>Optimizer steps between checkpoints, in addition to the time interval; 0 disables. Non-negative. Default 0.</summary>
    public int CheckpointEverySteps { get; set; }

    /// <summary>Optimizer steps between validation runs (and at the end). Positive. Default 500.</summary>
    public int EvalEverySteps { get; set; } = 500;

    /// <summary>At most this many validation tokens are scored per evaluation; 0 = the whole file. Non-negative. Default 0.</summary>
    public long EvalMaxTokens { get; set; }

    /// <summary>Optimizer steps between metrics lines. Positive. Default 10.</summary>
    public int LogEverySteps { get; set; } = 10;

    /// <summary>The JSON-lines metrics file; null writes <c>metrics.jsonl</c> in <see cref="CheckpointFolder"/> (or nothing without one). Default null.</summary>
    public string? MetricsFile { get; set; }

    /// <summary>Seed of the initialisation, the window order and every random draw (re-seeded per step). Default 0.</summary>
    public int Seed { get; set; }

    /// <summary>Receives a report after every logged step and every validation (synchronously, on the training thread). Default null.</summary>
    public IProgress<PretrainingProgress>? Progress { get; set; }

    /// <summary>Stops training before the next step; with a <see cref="CheckpointFolder"/>, a checkpoint is written first. Default none.</summary>
    public CancellationToken CancellationToken { get; set; }

    internal void Validate()
    {
        if (ModelConfig is null)
        {
            throw new ArgumentException("ModelConfig must describe the model to pretrain.", nameof(ModelConfig));
        }

        ModelConfig.Validate();
        if (string.IsNullOrWhiteSpace(TokenizerFolder))
        {
            throw new ArgumentException("TokenizerFolder must name a folder with tokenizer.model or tokenizer.json.", nameof(TokenizerFolder));
        }

        if (CorpusFiles is null || CorpusFiles.Count == 0)
        {
            throw new ArgumentException("CorpusFiles must name at least one text file.", nameof(CorpusFiles));
        }

        foreach (var file in CorpusFiles)
        {
            if (!File.Exists(file))
            {
                throw new FileNotFoundException($"Corpus file '{file}' does not exist.", file);
            }
        }

        if (ValidationFile is not null && !File.Exists(ValidationFile))
        {
            throw new FileNotFoundException($"Validation file '{ValidationFile}' does not exist.", ValidationFile);
        }

        Require(SequenceLength is >= 8 and <= 32768, nameof(SequenceLength), SequenceLength, "must be between 8 and 32768");
        Require(BatchSize > 0, nameof(BatchSize), BatchSize, "must be positive");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "must be a positive finite number");
        Require(WarmupSteps >= 0, nameof(WarmupSteps), WarmupSteps, "must be non-negative");
        Require(MinLearningRateRatio is >= 0 and <= 1, nameof(MinLearningRateRatio), MinLearningRateRatio, "must be between 0 and 1");
        Require(Enum.IsDefined(Schedule), nameof(Schedule), Schedule, "must be Cosine or WarmupStableDecay");
        Require(DecayFraction > 0 && DecayFraction <= 1, nameof(DecayFraction), DecayFraction, "must be in (0, 1]");
        Require(ResumeWarmupSteps >= 0, nameof(ResumeWarmupSteps), ResumeWarmupSteps, "must be non-negative");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "must be non-negative");
        Require(Beta1 is >= 0 and < 1, nameof(Beta1), Beta1, "must be in [0, 1)");
        Require(Beta2 is >= 0 and < 1, nameof(Beta2), Beta2, "must be in [0, 1)");
        Require(MaxGradientNorm >= 0 && double.IsFinite(MaxGradientNorm), nameof(MaxGradientNorm), MaxGradientNorm, "must be non-negative (0 disables clipping)");
        Require(MaxTokens is null or > 0, nameof(MaxTokens), MaxTokens ?? 0, "must be positive when set");
        Require(MaxMinutes is null || (MaxMinutes > 0 && double.IsFinite(MaxMinutes.Value)), nameof(MaxMinutes), MaxMinutes ?? 0, "must be a positive finite number when set");
        Require(CheckpointIntervalMinutes > 0 && double.IsFinite(CheckpointIntervalMinutes), nameof(CheckpointIntervalMinutes), CheckpointIntervalMinutes, "must be a positive finite number");
        Require(CheckpointEverySteps >= 0, nameof(CheckpointEverySteps), CheckpointEverySteps, "must be non-negative");
        Require(EvalEverySteps > 0, nameof(EvalEverySteps), EvalEverySteps, "must be positive");
        Require(EvalMaxTokens >= 0, nameof(EvalMaxTokens), EvalMaxTokens, "must be non-negative");
        Require(LogEverySteps > 0, nameof(LogEverySteps), LogEverySteps, "must be positive");
    }

    private static void Require(bool condition, string name, object value, string rule)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} {rule} but is {value}.");
        }
    }
}

/// <summary>The learning-rate shape of a pretraining run after its linear warmup.</summary>
public enum PretrainingSchedule
{
    /// <summary>Hold the peak, then decay linearly to the floor over the last <see cref="CausalLmPretrainerOptions.DecayFraction"/> of the steps.</summary>
    WarmupStableDecay,

    /// <summary>Cosine decay from the peak to the floor between the end of warmup and the last step.</summary>
    Cosine,
}
