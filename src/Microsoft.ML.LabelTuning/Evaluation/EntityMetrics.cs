using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;

namespace Microsoft.ML.LabelTuning.Evaluation;

/// <summary>Entity-level precision, recall and F1 (CoNLL-style: an entity counts only when its span and type both match).</summary>
/// <param name="Precision">Correct predicted entities over all predicted entities.</param>
/// <param name="Recall">Correct predicted entities over all true entities.</param>
/// <param name="F1">The harmonic mean of precision and recall.</param>
/// <param name="TrueEntities">Entities in the labels.</param>
/// <param name="PredictedEntities">Entities in the predictions.</param>
/// <param name="PerType">The same figures for each entity type (PER, LOC, ...).</param>
public sealed record EntityMetrics(double Precision, double Recall, double F1, int TrueEntities, int PredictedEntities, IReadOnlyDictionary<string, EntityTypeMetrics> PerType);

/// <summary>Entity-level figures for one entity type.</summary>
/// <param name="Precision">Precision for this type.</param>
/// <param name="Recall">Recall for this type.</param>
/// <param name="F1">F1 for this type.</param>
/// <param name="Support">True entities of this type.</param>
public sealed record EntityTypeMetrics(double Precision, double Recall, double F1, int Support);

/// <summary>Scores BIO (or IOB2) tag sequences at the entity level.</summary>
internal static class EntityEvaluator
{
    public static EntityMetrics Evaluate(IDataView data, string labelColumnName, string predictedLabelColumnName)
    {
        var labelClasses = ColumnReader.RequireKeyVectorLabel(data.Schema, labelColumnName);
        var predictedClasses = ColumnReader.RequireKeyVectorLabel(data.Schema, predictedLabelColumnName);
        var labelColumn = data.Schema[labelColumnName];
        var predictedColumn = data.Schema[predictedLabelColumnName];
        var truth = new List<(int Row, int Start, int End, string Type)>();
        var predicted = new List<(int Row, int Start, int End, string Type)>();
        using var cursor = data.GetRowCursor([labelColumn, predictedColumn]);
        var getLabels = cursor.GetGetter<VBuffer<uint>>(labelColumn);
        var getPredicted = cursor.GetGetter<VBuffer<uint>>(predictedColumn);
        VBuffer<uint> labels = default, predictions = default;
        var row = 0;
        while (cursor.MoveNext())
        {
            getLabels(ref labels);
            getPredicted(ref predictions);
            truth.AddRange(Spans(labels.DenseValues().Select(k => Tag(k, labelClasses)).ToArray()).Select(s => (row, s.Start, s.End, s.Type)));
            predicted.AddRange(Spans(predictions.DenseValues().Select(k => Tag(k, predictedClasses)).ToArray()).Select(s => (row, s.Start, s.End, s.Type)));
            row++;
        }

        var truthSet = truth.ToHashSet();
        var correct = predicted.Count(truthSet.Contains);
        var perType = truth.Select(t => t.Type).Concat(predicted.Select(p => p.Type)).Distinct().OrderBy(t => t, StringComparer.Ordinal)
            .ToDictionary(type => type, type =>
            {
                var t = truth.Count(e => e.Type == type);
                var p = predicted.Count(e => e.Type == type);
                var c = predicted.Count(e => e.Type == type && truthSet.Contains(e));
                var (precision, recall, f1) = Scores(c, p, t);
                return new EntityTypeMetrics(precision, recall, f1, t);
            });
        var (allPrecision, allRecall, allF1) = Scores(correct, predicted.Count, truth.Count);
        return new EntityMetrics(allPrecision, allRecall, allF1, truth.Count, predicted.Count, perType);
    }

    /// <summary>Entity spans of a tag sequence: B-X starts an entity, I-X continues one of type X (an I-X after O or another type starts one, as conlleval does).</summary>
    internal static IEnumerable<(int Start, int End, string Type)> Spans(IReadOnlyList<string> tags)
    {
        string? type = null;
        var start = 0;
        for (var i = 0; i <= tags.Count; i++)
        {
            var tag = i < tags.Count ? tags[i] : "O";
            var (prefix, tagType) = tag.Length > 2 && tag[1] == '-' ? (tag[0], tag[2..]) : ('O', string.Empty);
            var continues = prefix == 'I' && type == tagType;
            if (type is not null && !continues)
            {
                yield return (start, i, type);
                type = null;
            }

            if (prefix is 'B' or 'I' && !continues)
            {
                type = tagType;
                start = i;
            }
        }
    }

    private static string Tag(uint key, LabelClasses classes) => key == 0 || key > classes.Count ? "O" : classes.Names[(int)key - 1];

    private static (double Precision, double Recall, double F1) Scores(int correct, int predicted, int truth)
    {
        var precision = predicted == 0 ? 0 : (double)correct / predicted;
        var recall = truth == 0 ? 0 : (double)correct / truth;
        var f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
        return (precision, recall, f1);
    }
}
