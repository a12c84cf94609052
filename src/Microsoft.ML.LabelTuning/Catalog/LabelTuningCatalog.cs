using Microsoft.ML.Data;

namespace Microsoft.ML.LabelTuning;

/// <summary>What this library adds to <c>mlContext.MulticlassClassification</c> besides trainers (each method's folder under Methods/ holds its own catalog).</summary>
public static class LabelTuningCatalog
{
    /// <summary>Entity-level precision, recall and F1 of BIO tags (CoNLL-style exact span and type match).</summary>
    /// <param name="catalog">The multiclass catalog.</param>
    /// <param name="data">Scored data with the true and predicted tag vectors.</param>
    /// <param name="labelColumnName">The true tags (vector of keys).</param>
    /// <param name="predictedLabelColumnName">The predicted tags (vector of keys).</param>
    public static Evaluation.EntityMetrics EvaluateEntities(
        this MulticlassClassificationCatalog catalog,
        IDataView data,
        string labelColumnName = DefaultColumnNames.Label,
        string predictedLabelColumnName = DefaultColumnNames.PredictedLabel)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return Evaluation.EntityEvaluator.Evaluate(data, labelColumnName, predictedLabelColumnName);
    }
}
