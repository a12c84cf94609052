using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>Schema propagation for the estimators (IEstimator.GetOutputSchema), with errors that name the column.</summary>
internal static class EstimatorSchemas
{
    public static SchemaShape Multiclass(SchemaShape input, LabelTuningOptions options)
    {
        var columns = CheckInputs(input, options);
        var label = Find(input, options.LabelColumnName, "label");
        if (label.Kind != SchemaShape.Column.VectorKind.Scalar || !label.IsKey)
        {
            throw new ArgumentOutOfRangeException("label",
                $"Column '{options.LabelColumnName}' must be Key<UInt32> (map labels with MapValueToKey first) but is {label.ItemType}{(label.Kind == SchemaShape.Column.VectorKind.Scalar ? string.Empty : " vector")}.");
        }

        columns[options.ScoreColumnName] = new SchemaShape.Column(options.ScoreColumnName, SchemaShape.Column.VectorKind.Vector,
            NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.AnnotationsForMulticlassScoreColumn(label)));
        // PredictedLabel carries the label's key values, so MapKeyToValue works downstream.
        var keyValues = label.Annotations.Where(a => a.Name == AnnotationUtils.Kinds.KeyValues);
        columns[options.PredictedLabelColumnName] = new SchemaShape.Column(options.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar,
            NumberDataViewType.UInt32, true, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation().Concat(keyValues)));
        return new SchemaShape(columns.Values);
    }

    public static SchemaShape Tokens(SchemaShape input, LabelTuningOptions options)
    {
        var columns = CheckInputs(input, options);
        var label = Find(input, options.LabelColumnName, "label");
        if (label.Kind == SchemaShape.Column.VectorKind.Scalar || !label.IsKey)
        {
            throw new ArgumentOutOfRangeException("label",
                $"Column '{options.LabelColumnName}' must be a vector of Key<UInt32> (one tag per word; map tags with MapValueToKey first) but is {label.ItemType}.");
        }

        var keyValues = label.Annotations.Where(a => a.Name == AnnotationUtils.Kinds.KeyValues);
        columns[options.PredictedLabelColumnName] = new SchemaShape.Column(options.PredictedLabelColumnName, SchemaShape.Column.VectorKind.VariableVector,
            NumberDataViewType.UInt32, true, new SchemaShape(keyValues));
        return new SchemaShape(columns.Values);
    }

    public static SchemaShape Binary(SchemaShape input, LabelTuningOptions options)
    {
        var columns = CheckInputs(input, options);
        var label = Find(input, options.LabelColumnName, "label");
        if (label.Kind != SchemaShape.Column.VectorKind.Scalar || label.ItemType is not BooleanDataViewType)
        {
            throw new ArgumentOutOfRangeException("label", $"Column '{options.LabelColumnName}' must be Boolean for binary classification but is {label.ItemType}.");
        }

        columns[options.ScoreColumnName] = new SchemaShape.Column(options.ScoreColumnName, SchemaShape.Column.VectorKind.Scalar,
            NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation()));
        columns[DefaultColumnNames.Probability] = new SchemaShape.Column(DefaultColumnNames.Probability, SchemaShape.Column.VectorKind.Scalar,
            NumberDataViewType.Single, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation(true)));
        columns[options.PredictedLabelColumnName] = new SchemaShape.Column(options.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar,
            BooleanDataViewType.Instance, false, new SchemaShape(AnnotationUtils.GetTrainerOutputAnnotation()));
        return new SchemaShape(columns.Values);
    }

    private static Dictionary<string, SchemaShape.Column> CheckInputs(SchemaShape input, LabelTuningOptions options)
    {
        CheckText(input, options.TextColumnName, "text");
        if (options.SecondTextColumnName is not null)
        {
            CheckText(input, options.SecondTextColumnName, "second text");
        }

        return input.ToDictionary(c => c.Name);
    }

    private static void CheckText(SchemaShape input, string name, string role)
    {
        var column = Find(input, name, role);
        if (column.Kind != SchemaShape.Column.VectorKind.Scalar || column.ItemType is not TextDataViewType)
        {
            throw new ArgumentOutOfRangeException(role, $"Column '{name}' ({role}) must be String (text) but is {column.ItemType}.");
        }
    }

    private static SchemaShape.Column Find(SchemaShape input, string name, string role)
    {
        if (!input.TryFindColumn(name, out var column))
        {
            throw new ArgumentOutOfRangeException(role,
                $"Column '{name}' ({role}) was not found in the input data. Available columns: {string.Join(", ", input.Select(c => $"'{c.Name}'"))}.");
        }

        return column;
    }
}
