using Microsoft.ML.Data;

namespace Sentiment;

/// <summary>What the prediction engine returns: the label as text and one probability per class (in key order).</summary>
public sealed class ReviewPrediction
{
    [ColumnName("PredictedText")]
    public string PredictedText { get; set; } = string.Empty;

    public float[] Score { get; set; } = [];
}
