namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>How a classifier trained with one prefix did on the validation set.</summary>
/// <param name="Accuracy">Fraction of rows classified correctly.</param>
/// <param name="MacroF1">Unweighted mean of the classes' F1 scores.</param>
/// <param name="Recall">Recall of each class, in key order (NaN for a class with no validation rows).</param>
/// <param name="ConfusionMatrix">Counts [true class][predicted class].</param>
public sealed record PrefixEvaluation(double Accuracy, double MacroF1, IReadOnlyList<double> Recall, IReadOnlyList<IReadOnlyList<int>> ConfusionMatrix)
{
    /// <summary>Gets the number of validation rows scored.</summary>
    public int Count => ConfusionMatrix.Sum(r => r.Sum());

    /// <summary>Computes the metrics from true and predicted classes.</summary>
    internal static PrefixEvaluation From(IReadOnlyList<int> truth, IReadOnlyList<int> predicted, int classCount)
    {
        var matrix = new int[classCount][];
        for (var c = 0; c < classCount; c++)
        {
            matrix[c] = new int[classCount];
        }

        for (var i = 0; i < truth.Count; i++)
        {
            matrix[truth[i]][predicted[i]]++;
        }

        var correct = Enumerable.Range(0, classCount).Sum(c => matrix[c][c]);
        var recall = new double[classCount];
        var f1 = new List<double>();
        for (var c = 0; c < classCount; c++)
        {
            var actual = matrix[c].Sum();
            var guessed = Enumerable.Range(0, classCount).Sum(r => matrix[r][c]);
            recall[c] = actual == 0 ? double.NaN : (double)matrix[c][c] / actual;
            if (actual > 0 || guessed > 0)
            {
                f1.Add(2.0 * matrix[c][c] / (actual + guessed));
            }
        }

        return new PrefixEvaluation(
            truth.Count == 0 ? 0 : (double)correct / truth.Count,
            f1.Count == 0 ? 0 : f1.Average(),
            recall,
            matrix.Select(r => (IReadOnlyList<int>)r).ToArray());
    }
}

/// <summary>One scored candidate of the search.</summary>
/// <param name="Round">The round that proposed it (0 for the baseline).</param>
/// <param name="Prefix">The prefix; null for no prefix.</param>
/// <param name="Score">The selection metric on the validation set.</param>
/// <param name="Evaluation">Every metric on the validation set.</param>
/// <param name="TrainingTime">Time spent training and scoring this candidate.</param>
public sealed record PrefixCandidateResult(int Round, string? Prefix, double Score, PrefixEvaluation Evaluation, TimeSpan TrainingTime);

/// <summary>What GPTA's search did: every scored candidate, the winner, and what went wrong along the way.</summary>
/// <param name="BestPrefix">The prefix of the final model (null: no prefix won).</param>
/// <param name="BestScore">Its validation score.</param>
/// <param name="Candidates">Every scored candidate, in the order they were trained.</param>
/// <param name="RoundsCompleted">Rounds whose request was answered (whether or not a candidate survived).</param>
/// <param name="RejectedCandidates">Candidates dropped before training: empty, too long, refusals, duplicates, or quoting the data.</param>
/// <param name="FailedReplies">Replies that were unusable (malformed, empty, over-long, refused or failed) and retried or skipped.</param>
/// <param name="StoppedByTimeBudget">Whether the time budget ended the search early.</param>
/// <param name="TranscriptPath">The JSON Lines transcript of the conversation.</param>
public sealed record PrefixSearchResult(
    string? BestPrefix,
    double BestScore,
    IReadOnlyList<PrefixCandidateResult> Candidates,
    int RoundsCompleted,
    int RejectedCandidates,
    int FailedReplies,
    bool StoppedByTimeBudget,
    string TranscriptPath);
