using System.Text.Json;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>Everything a saved model records besides tensors: how to rebuild, encode and name its outputs.</summary>
internal sealed record ClassifierDescription(
    TuningMethod Method,
    JsonElement Settings,
    string[] ClassNames,
    string TextColumn,
    string? SecondTextColumn,
    int MaxSequenceLength,
    Truncation Truncation,
    int BatchSize,
    bool TokenLevel,
    string BaseModelPath,
    string BaseModelSha256,
    bool BaseModelEmbedded,
    string[] EmbeddedFiles,
    string Dtype,
    string ScoreColumn,
    string PredictedLabelColumn,
    bool ClassNamesAreKeyValues,
    string? TextPrefix = null);

/// <summary>
/// A trained classifier ready to score: the decoder with its adapter and head, the text encoder, and the device.
/// Scoring runs in length-sorted batches under no_grad and returns rows in input order.
/// </summary>
internal sealed class ClassifierRuntime : IDisposable
{
    private WordEncoder? _words;

    public ClassifierRuntime(IClassifierModel classifier, TextEncoder encoder, Device device, ClassifierDescription description)
    {
        Classifier = classifier;
        Encoder = encoder;
        Device = device;
        Description = description;
        classifier.SetTraining(false);
    }

    public IClassifierModel Classifier { get; }

    /// <summary>Gets the classifier as the decoder-plus-head model most methods use (PEFT interop needs it).</summary>
    public LlamaSequenceClassifier Sequence => Classifier as LlamaSequenceClassifier
        ?? throw new NotSupportedException($"{Description.Method} models are not a decoder with a single head; PEFT has no equivalent adapter type.");

    public TextEncoder Encoder { get; }

    /// <summary>Gets the word-level encoder token classification uses.</summary>
    public WordEncoder Words => _words ??= new WordEncoder(Encoder.Tokenizer, Description.MaxSequenceLength);

    public Device Device { get; }

    public ClassifierDescription Description { get; }

    public int ClassCount => Description.ClassNames.Length;

    /// <summary>Gets the label column's KeyValues, carried to PredictedLabel.</summary>
    public Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>>? KeyValues { get; init; }

    /// <summary>Gets the summary of the training that produced this runtime (null after loading).</summary>
    public TrainingSummary? LastTraining { get; init; }

    /// <summary>
    /// What the output columns read for each input, in input order: class probabilities [K] for sequence models,
    /// or per-word class probabilities flattened [words × K] for token models.
    /// </summary>
    public float[][] Score(IReadOnlyList<TextInput> inputs)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var scores = Description.TokenLevel ? PredictWordProbabilities(inputs) : PredictProbabilities(inputs);
        if (inputs.Count > 0)
        {
            LastScoringRowsPerSecond = inputs.Count / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
        }

        return scores;
    }

    /// <summary>Gets the scoring throughput of the last <see cref="Score"/> call with rows, in rows per second; null before.</summary>
    public double? LastScoringRowsPerSecond { get; private set; }

    /// <summary>Per-word class probabilities, flattened [words × K], for each input; words past the length limit get zeros.</summary>
    public float[][] PredictWordProbabilities(IReadOnlyList<TextInput> inputs)
    {
        var results = new float[inputs.Count][];
        if (inputs.Count == 0)
        {
            return results;
        }

        var words = inputs.Select(i => WordEncoder.SplitWords(i.Text)).ToArray();
        var firsts = new int[inputs.Count][];
        var encoded = new int[inputs.Count][];
        for (var i = 0; i < inputs.Count; i++)
        {
            encoded[i] = Words.Encode(words[i], out firsts[i], out _);
        }

        var batches = LengthGroupedBatcher.Plan(encoded.Select(e => e.Length).ToArray(), Description.BatchSize, 0, 0, shuffle: false);
        using var noGrad = no_grad();
        foreach (var indices in batches)
        {
            using var scope = NewDisposeScope();
            var batch = TokenBatch.Collate(indices.Select(i => encoded[i]).ToList(), Words.PadId, Device);
            var probabilities = Classifier.Logits(batch).to(ScalarType.Float32).softmax(-1).cpu(); // [b, T, K]
            var length = (int)probabilities.shape[1];
            var flat = probabilities.data<float>().ToArray();
            for (var row = 0; row < indices.Length; row++)
            {
                var input = indices[row];
                var result = new float[words[input].Length * ClassCount];
                for (var w = 0; w < words[input].Length; w++)
                {
                    var position = firsts[input][w];
                    if (position >= 0)
                    {
                        flat.AsSpan(((row * length) + position) * ClassCount, ClassCount).CopyTo(result.AsSpan(w * ClassCount, ClassCount));
                    }
                }

                results[input] = result;
            }
        }

        return results;
    }

    /// <summary>Class probabilities for each input, in input order.</summary>
    public float[][] PredictProbabilities(IReadOnlyList<TextInput> inputs)
    {
        var results = new float[inputs.Count][];
        if (inputs.Count == 0)
        {
            return results;
        }

        var encoded = inputs.Select(i => Encoder.Encode(i, out _)).ToArray();
        var batches = LengthGroupedBatcher.Plan(encoded.Select(e => e.Length).ToArray(), Description.BatchSize, 0, 0, shuffle: false);
        using var noGrad = no_grad();
        foreach (var indices in batches)
        {
            using var scope = NewDisposeScope();
            var batch = TokenBatch.Collate(indices.Select(i => encoded[i]).ToList(), Encoder.PadId, Device);
            var probabilities = Classifier.Logits(batch).to(ScalarType.Float32).softmax(-1).cpu(); // [b, K]
            var flat = probabilities.data<float>().ToArray();
            for (var row = 0; row < indices.Length; row++)
            {
                results[indices[row]] = flat.AsSpan(row * ClassCount, ClassCount).ToArray();
            }
        }

        return results;
    }

    public void Dispose() => Classifier.Dispose();
}
