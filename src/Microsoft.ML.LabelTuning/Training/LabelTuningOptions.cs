using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>
/// Options every label-tuning trainer shares: where the base model is, which columns to read, and how to train.
/// Trainers never write into this object; derived values live in an internal plan.
/// </summary>
public abstract class LabelTuningOptions
{
    /// <summary>
    /// Folder of a Hugging Face LLaMA-family model: config.json, model.safetensors (or a sharded
    /// model.safetensors.index.json) and tokenizer.model or tokenizer.json. Required.
    /// </summary>
    public string ModelPath { get; set; } = string.Empty;

    /// <summary>Name of the label column. Multiclass trainers need Key&lt;UInt32&gt; (use MapValueToKey); binary trainers need Boolean. Default "Label".</summary>
    public string LabelColumnName { get; set; } = DefaultColumnNames.Label;

    /// <summary>Name of the text column (String). Default "Text".</summary>
    public string TextColumnName { get; set; } = "Text";

    /// <summary>Optional second text column for sentence pairs (as in NLI). Default null.</summary>
    public string? SecondTextColumnName { get; set; }

    /// <summary>Name of the output score column. Default "Score".</summary>
    public string ScoreColumnName { get; set; } = DefaultColumnNames.Score;

    /// <summary>Name of the output predicted-label column. Default "PredictedLabel".</summary>
    public string PredictedLabelColumnName { get; set; } = DefaultColumnNames.PredictedLabel;

    /// <summary>Tokens per example, special tokens included; longer inputs are truncated (and counted). 8 to 32768. Default 256.</summary>
    public int MaxSequenceLength { get; set; } = 256;

    /// <summary>How inputs longer than <see cref="MaxSequenceLength"/> are cut. Default <see cref="Truncation.Head"/>.</summary>
    public Truncation Truncation { get; set; } = Truncation.Head;

    /// <summary>Examples per optimizer micro-batch. Positive. Default 8.</summary>
    public int BatchSize { get; set; } = 8;

    /// <summary>Passes over the training data. Positive. Default 3.</summary>
    public int Epochs { get; set; } = 3;

    /// <summary>Peak learning rate of AdamW. Positive. Default 1e-4.</summary>
    public double LearningRate { get; set; } = 1e-4;

    /// <summary>Decoupled AdamW weight decay; not applied to biases, norms or embeddings. Non-negative. Default 0.01.</summary>
    public double WeightDecay { get; set; } = 0.01;

    /// <summary>Fraction of all optimizer steps spent warming up linearly; the rest decays linearly to zero. 0 to 1. Default 0.1.</summary>
    public double WarmupRatio { get; set; } = 0.1;

    /// <summary>Micro-batches whose gradients are summed before each optimizer step. Positive. Default 1.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>Gradients are clipped to this global L2 norm; 0 disables clipping. Non-negative. Default 1.0.</summary>
    public double MaxGradientNorm { get; set; } = 1.0;

    /// <summary>Optional validation data, scored after every epoch. Needed for early stopping. Default null.</summary>
    public IDataView? ValidationSet { get; set; }

    /// <summary>Epochs without a validation-loss improvement before training stops (the best epoch's weights are kept); 0 disables. Default 0.</summary>
    public int EarlyStoppingPatience { get; set; }

    /// <summary>Seed for initialisation, shuffling and dropout. Null takes the MLContext's seed (or 0). Default null.</summary>
    public int? Seed { get; set; }

    /// <summary>Optional per-class loss weights, one per class in key order, each positive. Default null (uniform).</summary>
    public float[]? ClassWeights { get; set; }

    /// <summary>Receives progress after each optimizer step and each validation. Default null.</summary>
    public IProgress<TrainingProgress>? Progress { get; set; }

    /// <summary>Stops training at the next step; with <see cref="CheckpointFolder"/> set, a checkpoint is written first. Default none.</summary>
    public CancellationToken CancellationToken { get; set; }

    /// <summary>Folder for training checkpoints (written atomically); when it holds one from the same run, training resumes from it. Default null.</summary>
    public string? CheckpointFolder { get; set; }

    /// <summary>Optimizer steps between checkpoints (an epoch's end always writes one). Positive. Default 200.</summary>
    public int CheckpointEverySteps { get; set; } = 200;

    /// <summary>When true, the saved model embeds the base model's weights, config and tokenizer, so the zip is self-contained. Default false.</summary>
    public bool EmbedBaseModel { get; set; }

    /// <summary>Compute dtype: "float32" (default), "bfloat16" or "float16". Low precision is meant for CUDA; on CPU bf16 is correct but very slow.</summary>
    public string Dtype { get; set; } = "float32";

    /// <summary>
    /// Intra-op CPU threads torch uses while this trainer fits (the previous count is restored afterwards; torch's
    /// count is process-wide). Null takes the <c>LABELTUNING_THREADS</c> environment variable, else the processor
    /// count. Positive. Default null.
    /// </summary>
    public int? NumberOfThreads { get; set; }

    /// <summary>
    /// What happens when the memory estimate made before training (parameters, gradients, AdamW state, activations and
    /// attention masks for the batch size and the longest example) exceeds the memory available. With
    /// <see cref="MemoryCheck.Warn"/> (the default) the micro-batch is lowered automatically (halved until it fits)
    /// and each batch runs as several micro-batches whose gradients are accumulated, so the effective batch and the
    /// results stay the same (within float rounding; dropout draws differ per micro-batch); when even one row does
    /// not fit, training goes on with a warning. Either way the warning reaches the ML.NET log and
    /// <see cref="Progress"/> (a <see cref="TrainingProgressKind.Warning"/> report). <see cref="MemoryCheck.Fail"/>
    /// throws an <see cref="InvalidOperationException"/> before the first step when the batch as configured does not
    /// fit; <see cref="MemoryCheck.Off"/> makes no estimate. CPU only.
    /// </summary>
    public MemoryCheck MemoryCheck { get; set; } = MemoryCheck.Warn;

    /// <summary>
    /// Whether each decoder layer is checkpointed while training: only its input is kept for the backward pass and its
    /// activations are recomputed there, so activation memory grows with one layer rather than all of them, for about
    /// a third more compute per step. The gradients are the same. <see cref="Training.GradientCheckpointing.Auto"/>
    /// (the default) turns it on when the memory estimate of a batch does not fit otherwise (before micro-batching is
    /// considered); it then needs <see cref="MemoryCheck"/> other than Off, and is off with Off.
    /// </summary>
    public GradientCheckpointing GradientCheckpointing { get; set; } = GradientCheckpointing.Auto;

    /// <summary>
    /// Optional text put before every input (training and scoring alike) and saved with the model, e.g. an instruction
    /// such as "Classify the sentiment of this review:". Its tokens follow BOS and are never truncated in favour of the
    /// text. Sequence classification only. Default null (no prefix). GPTA's assistant writes this.
    /// </summary>
    public string? TextPrefix { get; set; }

    internal virtual void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath))
        {
            throw new ArgumentException("ModelPath must name a Hugging Face model folder.", nameof(ModelPath));
        }

        RequireColumnName(LabelColumnName, nameof(LabelColumnName));
        RequireColumnName(TextColumnName, nameof(TextColumnName));
        RequireColumnName(ScoreColumnName, nameof(ScoreColumnName));
        RequireColumnName(PredictedLabelColumnName, nameof(PredictedLabelColumnName));
        if (SecondTextColumnName is not null)
        {
            RequireColumnName(SecondTextColumnName, nameof(SecondTextColumnName));
        }

        Require(MaxSequenceLength is >= 8 and <= 32768, nameof(MaxSequenceLength), MaxSequenceLength, "must be between 8 and 32768");
        Require(BatchSize > 0, nameof(BatchSize), BatchSize, "must be positive");
        Require(Epochs > 0, nameof(Epochs), Epochs, "must be positive");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), LearningRate, "must be a positive finite number");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), WeightDecay, "must be non-negative");
        Require(WarmupRatio is >= 0 and <= 1, nameof(WarmupRatio), WarmupRatio, "must be between 0 and 1");
        Require(NumberOfThreads is null or > 0, nameof(NumberOfThreads), NumberOfThreads ?? 0, "must be positive when set");
        Require(GradientAccumulationSteps > 0, nameof(GradientAccumulationSteps), GradientAccumulationSteps, "must be positive");
        Require(MaxGradientNorm >= 0 && double.IsFinite(MaxGradientNorm), nameof(MaxGradientNorm), MaxGradientNorm, "must be non-negative (0 disables clipping)");
        Require(EarlyStoppingPatience >= 0, nameof(EarlyStoppingPatience), EarlyStoppingPatience, "must be non-negative");
        Require(CheckpointEverySteps > 0, nameof(CheckpointEverySteps), CheckpointEverySteps, "must be positive");
        if (EarlyStoppingPatience > 0 && ValidationSet is null)
        {
            throw new ArgumentException("EarlyStoppingPatience needs a ValidationSet to measure improvement.", nameof(EarlyStoppingPatience));
        }

        if (ClassWeights is not null && ClassWeights.Any(w => !(w > 0) || !float.IsFinite(w)))
        {
            throw new ArgumentOutOfRangeException(nameof(ClassWeights), "Every class weight must be a positive finite number.");
        }

        if (!Enum.IsDefined(GradientCheckpointing))
        {
            throw new ArgumentOutOfRangeException(nameof(GradientCheckpointing), GradientCheckpointing, "GradientCheckpointing must be Auto, On or Off.");
        }

        _ = Runtime.DeviceSelection.ParseDtype(Dtype);
    }

    /// <summary>
    /// Learning-rate multipliers for groups of trainable parameters, keyed by parameter-name prefix (e.g. DePT's
    /// <c>adapter.lora_embedding_</c>); null when every parameter trains at <see cref="LearningRate"/>.
    /// </summary>
    internal virtual IReadOnlyDictionary<string, double>? LearningRateScales() => null;

    /// <summary>
    /// New options of <typeparamref name="TOptions"/> with the arguments a catalog's short overload takes; a null argument
    /// keeps the options class's default, so every default is written once, in the options class.
    /// </summary>
    internal static TOptions WithDefaults<TOptions>(
        string modelPath, string? labelColumnName, string? textColumnName, int? epochs, int? batchSize, double? learningRate, int? maxSequenceLength)
        where TOptions : LabelTuningOptions, new()
    {
        var options = new TOptions { ModelPath = modelPath };
        options.LabelColumnName = labelColumnName ?? options.LabelColumnName;
        options.TextColumnName = textColumnName ?? options.TextColumnName;
        options.Epochs = epochs ?? options.Epochs;
        options.BatchSize = batchSize ?? options.BatchSize;
        options.LearningRate = learningRate ?? options.LearningRate;
        options.MaxSequenceLength = maxSequenceLength ?? options.MaxSequenceLength;
        return options;
    }

    /// <summary>A shallow copy with <see cref="TextPrefix"/> replaced, so a caller can vary the prefix without writing into the user's options.</summary>
    internal LabelTuningOptions WithTextPrefix(string? prefix)
    {
        var copy = (LabelTuningOptions)MemberwiseClone();
        copy.TextPrefix = prefix;
        return copy;
    }

    private protected static void Require(bool condition, string name, object value, string rule)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} {rule} but is {value}.");
        }
    }

    private static void RequireColumnName(string? name, string option)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException($"{option} must name a column.", option);
        }
    }
}
