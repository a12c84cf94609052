using Microsoft.ML.LabelTuning.Data;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>
/// What every tuning method's model offers the shared training loop, the scoring runtime and persistence:
/// class logits, its training loss, and its trainable parameters (chosen by type, never by name matching).
/// </summary>
internal interface IClassifierModel : IDisposable
{
    /// <summary>Gets the number of classes.</summary>
    int ClassCount { get; }

    /// <summary>Gets whether the model scores each token (NER) rather than each sequence.</summary>
    bool TokenLevel { get; }

    /// <summary>The trainable parameters with stable names (the names key saved models and checkpoints).</summary>
    IReadOnlyList<(string Name, Parameter Parameter)> TrainableParameters();

    /// <summary>Freezes everything, then unfreezes the trainable parameters.</summary>
    void FreezeBase();

    /// <summary>Switches dropout on (training) or off (scoring).</summary>
    void SetTraining(bool training);

    /// <summary>Class logits: [B, K] for sequences, [B, T, K] for tokens.</summary>
    Tensor Logits(TokenBatch batch);

    /// <summary>The training loss of a batch; randomness (dropout, sampled negatives) comes from torch's seeded generator.</summary>
    Tensor Loss(TokenBatch batch, IReadOnlyList<Example> examples, Tensor? classWeights);

    /// <summary>
    /// The rows and positions per row that a training micro-batch of <paramref name="batchSize"/> texts of
    /// <paramref name="sequenceLength"/> tokens puts through the decoder: more positions for soft prompts and prefixes,
    /// more rows where each text is paired with several labels. The memory estimate is made for this shape.
    /// </summary>
    (int Rows, int Positions) TrainingShape(int batchSize, int sequenceLength) => (batchSize, sequenceLength);
}
