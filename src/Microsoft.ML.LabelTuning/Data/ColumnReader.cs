using Microsoft.ML.Data;

namespace Microsoft.ML.LabelTuning.Data;

/// <summary>A text example: one text, or a pair (as in NLI).</summary>
internal readonly record struct TextInput(string Text, string? SecondText);

/// <summary>The classes of a Key&lt;UInt32&gt; label column.</summary>
/// <param name="Names">Class names in key order (from the KeyValues annotation, or "0", "1", … without one).</param>
/// <param name="KeyValues">The KeyValues annotation to carry to PredictedLabel, when the column has one.</param>
internal sealed record LabelClasses(IReadOnlyList<string> Names, VBuffer<ReadOnlyMemory<char>>? KeyValues)
{
    public int Count => Names.Count;
}

/// <summary>Schema checks and row reading for text-classification inputs, with errors that name the column.</summary>
internal static class ColumnReader
{
    public static DataViewSchema.Column RequireTextColumn(DataViewSchema schema, string name, string role)
    {
        var column = RequireColumn(schema, name, role);
        if (column.Type is not TextDataViewType)
        {
            throw new ArgumentOutOfRangeException(role, $"Column '{name}' ({role}) must be String (text) but is {column.Type}.");
        }

        return column;
    }

    public static DataViewSchema.Column RequireColumn(DataViewSchema schema, string name, string role)
    {
        var column = schema.GetColumnOrNull(name);
        if (column is null)
        {
            var available = string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"));
            throw new ArgumentOutOfRangeException(role, $"Column '{name}' ({role}) was not found in the input data. Available columns: {available}.");
        }

        return column.Value;
    }

    /// <summary>Checks a multiclass label column: Key&lt;UInt32&gt; with at least two classes.</summary>
    public static LabelClasses RequireKeyLabel(DataViewSchema schema, string name)
    {
        var column = RequireColumn(schema, name, "label");
        if (column.Type is not KeyDataViewType key || key.RawType != typeof(uint))
        {
            throw new ArgumentOutOfRangeException("label",
                $"Column '{name}' must be Key<UInt32> (map labels with MapValueToKey first) but is {column.Type}.");
        }

        return ReadClasses(column, key, name);
    }

    /// <summary>Checks a token-classification label column: a vector of Key&lt;UInt32&gt;.</summary>
    public static LabelClasses RequireKeyVectorLabel(DataViewSchema schema, string name)
    {
        var column = RequireColumn(schema, name, "label");
        if (column.Type is not VectorDataViewType { ItemType: KeyDataViewType key } || key.RawType != typeof(uint))
        {
            throw new ArgumentOutOfRangeException("label",
                $"Column '{name}' must be a vector of Key<UInt32> (one tag per word; map tags with MapValueToKey first) but is {column.Type}.");
        }

        return ReadClasses(column, key, name);
    }

    public static void RequireBooleanLabel(DataViewSchema schema, string name)
    {
        var column = RequireColumn(schema, name, "label");
        if (column.Type is not BooleanDataViewType)
        {
            throw new ArgumentOutOfRangeException("label", $"Column '{name}' must be Boolean for binary classification but is {column.Type}.");
        }
    }

    private static LabelClasses ReadClasses(DataViewSchema.Column column, KeyDataViewType key, string name)
    {
        if (key.Count < 2)
        {
            throw new ArgumentOutOfRangeException("label", $"Column '{name}' has {key.Count} class(es); classification needs at least two.");
        }

        var count = checked((int)key.Count);
        if (column.Annotations.Schema.GetColumnOrNull(AnnotationUtils.Kinds.KeyValues) is { Type: VectorDataViewType { ItemType: TextDataViewType } })
        {
            var values = default(VBuffer<ReadOnlyMemory<char>>);
            column.GetKeyValues(ref values);
            var names = values.DenseValues().Select(v => v.ToString()).ToArray();
            if (names.Length == count)
            {
                return new LabelClasses(names, values);
            }
        }

        return new LabelClasses(Enumerable.Range(0, count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray(), null);
    }

    /// <summary>Reads every row's texts and 0-based class (-1 where the key is missing).</summary>
    public static List<(TextInput Input, int Label)> ReadKeyLabeled(IDataView data, string text, string? second, string label)
        => ReadLabeled<uint>(data, text, second, label, key => (int)key - 1);

    /// <summary>Reads every row's texts and Boolean label as class 1 (true) or 0 (false).</summary>
    public static List<(TextInput Input, int Label)> ReadBooleanLabeled(IDataView data, string text, string? second, string label)
        => ReadLabeled<bool>(data, text, second, label, value => value ? 1 : 0);

    /// <summary>Reads only the texts (scoring).</summary>
    public static List<TextInput> ReadTexts(IDataView data, string text, string? second)
        => ReadLabeled<bool>(data, text, second, null, _ => 0).Select(r => r.Input).ToList();

    /// <summary>Reads every row's sentence and its per-word label keys.</summary>
    public static List<(string Text, uint[] Labels)> ReadWordLabeled(IDataView data, string text, string label)
    {
        var textColumn = RequireTextColumn(data.Schema, text, "text");
        var labelColumn = RequireColumn(data.Schema, label, "label");
        var result = new List<(string, uint[])>();
        using var cursor = data.GetRowCursor([textColumn, labelColumn]);
        var getText = cursor.GetGetter<ReadOnlyMemory<char>>(textColumn);
        var getLabels = cursor.GetGetter<VBuffer<uint>>(labelColumn);
        ReadOnlyMemory<char> t = default;
        VBuffer<uint> labels = default;
        while (cursor.MoveNext())
        {
            getText(ref t);
            getLabels(ref labels);
            result.Add((t.ToString(), labels.DenseValues().ToArray()));
        }

        return result;
    }

    private static List<(TextInput Input, int Label)> ReadLabeled<TLabel>(
        IDataView data, string text, string? second, string? label, Func<TLabel, int> toClass)
    {
        var result = new List<(TextInput, int)>();
        var textColumn = RequireTextColumn(data.Schema, text, "text");
        var secondColumn = second is null ? (DataViewSchema.Column?)null : RequireTextColumn(data.Schema, second, "second text");
        var labelColumn = label is null ? (DataViewSchema.Column?)null : RequireColumn(data.Schema, label, "label");
        var columns = new[] { textColumn, secondColumn, labelColumn }.OfType<DataViewSchema.Column>().ToList();

        using var cursor = data.GetRowCursor(columns);
        var getText = cursor.GetGetter<ReadOnlyMemory<char>>(textColumn);
        var getSecond = secondColumn is { } sc ? cursor.GetGetter<ReadOnlyMemory<char>>(sc) : null;
        var getLabel = labelColumn is { } lc ? cursor.GetGetter<TLabel>(lc) : null;
        ReadOnlyMemory<char> t = default, t2 = default;
        TLabel value = default!;
        while (cursor.MoveNext())
        {
            getText(ref t);
            getSecond?.Invoke(ref t2);
            getLabel?.Invoke(ref value);
            result.Add((new TextInput(t.ToString(), getSecond is null ? null : t2.ToString()), getLabel is null ? 0 : toClass(value)));
        }

        return result;
    }
}
