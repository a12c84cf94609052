using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>What every trial of a <see cref="LabelTuningExperiment"/> shares: the base model, the columns, and the fixed training settings.</summary>
public sealed class LabelTuningExperimentSettings
{
    /// <summary>Gets or sets the Hugging Face LLaMA-family model folder every trial tunes. Required.</summary>
    public string ModelPath { get; set; } = string.Empty;

    /// <summary>
    /// Gets or sets the label column: Key&lt;UInt32&gt; or String (multiclass; a String label is mapped to keys, in sorted
    /// order, and the mapping is part of the returned model) or Boolean (binary). Default "Label".
    /// </summary>
    public string LabelColumnName { get; set; } = DefaultColumnNames.Label;

    /// <summary>Gets or sets the text column. Default "Text".</summary>
    public string TextColumnName { get; set; } = "Text";

    /// <summary>Gets or sets an optional second text column for sentence pairs. Default null.</summary>
    public string? SecondTextColumnName { get; set; }

    /// <summary>Gets or sets the tokens per example (a search parameter overrides it). 8 to 32768. Default 128.</summary>
    public int MaxSequenceLength { get; set; } = 128;

    /// <summary>Gets or sets the examples per batch (a search parameter overrides it). Positive. Default 8.</summary>
    public int BatchSize { get; set; } = 8;

    /// <summary>Gets or sets the seed of the tuner and of every trial's training. Null takes the MLContext's seed (or 0). Default null.</summary>
    public int? Seed { get; set; }

    /// <summary>Gets or sets the compute dtype of every trial. Default "float32".</summary>
    public string Dtype { get; set; } = "float32";

    /// <summary>
    /// Gets or sets the intra-op CPU threads every trial trains with (see <see cref="LabelTuningOptions.NumberOfThreads"/>).
    /// Null takes the <c>LABELTUNING_THREADS</c> environment variable, else the processor count. Positive. Default null.
    /// </summary>
    public int? NumberOfThreads { get; set; }

    /// <summary>
    /// Gets or sets a callback that completes every trial's options after the sampled values are set (for example a
    /// warmup ratio or class weights). An exception it throws fails that trial only. Default null.
    /// </summary>
    public Action<LabelTuningOptions>? ConfigureOptions { get; set; }

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath))
        {
            throw new ArgumentException("LabelTuningExperimentSettings.ModelPath must name a Hugging Face model folder.", nameof(ModelPath));
        }

        if (!Directory.Exists(ModelPath))
        {
            throw new DirectoryNotFoundException($"LabelTuningExperimentSettings.ModelPath '{ModelPath}' was not found.");
        }

        if (MaxSequenceLength is < 8 or > 32768)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, $"MaxSequenceLength must be between 8 and 32768 but is {MaxSequenceLength}.");
        }

        if (NumberOfThreads is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(NumberOfThreads), NumberOfThreads, $"NumberOfThreads must be positive but is {NumberOfThreads}.");
        }

        if (BatchSize <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, $"BatchSize must be positive but is {BatchSize}.");
        }
    }
}
