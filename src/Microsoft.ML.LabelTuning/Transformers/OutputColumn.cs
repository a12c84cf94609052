using Microsoft.ML.Data;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// One column a label-tuning transformer adds: its name, type and annotations, and how to read its value from the
/// scored row (class probabilities).
/// </summary>
internal sealed class OutputColumn
{
    private readonly Func<Func<float[]>, Delegate> _makeGetter;

    private OutputColumn(string name, DataViewType type, DataViewSchema.Annotations annotations, Func<Func<float[]>, Delegate> makeGetter)
    {
        Name = name;
        Type = type;
        Annotations = annotations;
        _makeGetter = makeGetter;
    }

    public string Name { get; }

    public DataViewType Type { get; }

    public DataViewSchema.Annotations Annotations { get; }

    public Delegate MakeGetter(Func<float[]> scores) => _makeGetter(scores);

    /// <summary>The multiclass Score column: a vector of class probabilities with slot names.</summary>
    public static OutputColumn ClassScores(string name, string[] classNames)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        builder.AddSlotNames(classNames.Length, (ref VBuffer<ReadOnlyMemory<char>> value)
            => value = new VBuffer<ReadOnlyMemory<char>>(classNames.Length, classNames.Select(c => c.AsMemory()).ToArray()));
        AddScoreKind(builder, AnnotationUtils.Const.ScoreColumnKind.MulticlassClassification);
        return new OutputColumn(name, new VectorDataViewType(NumberDataViewType.Single, classNames.Length), builder.ToAnnotations(),
            scores => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> value) =>
            {
                var row = scores();
                var editor = VBufferEditor.Create(ref value, row.Length);
                row.CopyTo(editor.Values);
                value = editor.Commit();
            }));
    }

    /// <summary>The multiclass PredictedLabel column: a key (1-based) carrying the label column's key values.</summary>
    public static OutputColumn PredictedKey(string name, int classCount, VBuffer<ReadOnlyMemory<char>>? keyValues)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        if (keyValues is { } values)
        {
            builder.AddKeyValues(classCount, TextDataViewType.Instance, (ref VBuffer<ReadOnlyMemory<char>> value) => values.CopyTo(ref value));
        }

        return new OutputColumn(name, new KeyDataViewType(typeof(uint), classCount), builder.ToAnnotations(),
            scores => (ValueGetter<uint>)((ref uint value) => value = (uint)ArgMax(scores()) + 1));
    }

    /// <summary>The token-classification PredictedLabel column: one key per word (0 where the word was truncated).</summary>
    public static OutputColumn PredictedWordKeys(string name, int classCount, VBuffer<ReadOnlyMemory<char>>? keyValues)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        if (keyValues is { } values)
        {
            builder.AddKeyValues(classCount, TextDataViewType.Instance, (ref VBuffer<ReadOnlyMemory<char>> value) => values.CopyTo(ref value));
        }

        return new OutputColumn(name, new VectorDataViewType(new KeyDataViewType(typeof(uint), classCount)), builder.ToAnnotations(),
            scores => (ValueGetter<VBuffer<uint>>)((ref VBuffer<uint> value) =>
            {
                var row = scores(); // [words × K]
                var words = row.Length / classCount;
                var editor = VBufferEditor.Create(ref value, words);
                for (var w = 0; w < words; w++)
                {
                    var slice = row.AsSpan(w * classCount, classCount);
                    editor.Values[w] = slice.IndexOfAnyExcept(0f) < 0 ? 0u : (uint)ArgMax(slice) + 1;
                }

                value = editor.Commit();
            }));
    }

    /// <summary>The binary Score column: the logit of the positive class (log-odds).</summary>
    public static OutputColumn BinaryScore(string name)
    {
        var builder = new DataViewSchema.Annotations.Builder();
        AddScoreKind(builder, AnnotationUtils.Const.ScoreColumnKind.BinaryClassification);
        return new OutputColumn(name, NumberDataViewType.Single, builder.ToAnnotations(),
            scores => (ValueGetter<float>)((ref float value) =>
            {
                var row = scores();
                value = MathF.Log(Math.Max(row[1], 1e-30f)) - MathF.Log(Math.Max(row[0], 1e-30f));
            }));
    }

    /// <summary>The binary Probability column: P(true).</summary>
    public static OutputColumn BinaryProbability(string name)
        => new(name, NumberDataViewType.Single, DataViewSchema.Annotations.Empty,
            scores => (ValueGetter<float>)((ref float value) => value = scores()[1]));

    /// <summary>The binary PredictedLabel column: P(true) &gt; 0.5.</summary>
    public static OutputColumn BinaryPredictedLabel(string name)
        => new(name, BooleanDataViewType.Instance, DataViewSchema.Annotations.Empty,
            scores => (ValueGetter<bool>)((ref bool value) => value = scores()[1] > 0.5f));

    private static void AddScoreKind(DataViewSchema.Annotations.Builder builder, string kind)
    {
        builder.Add(AnnotationUtils.Kinds.ScoreColumnKind, TextDataViewType.Instance,
            (ref ReadOnlyMemory<char> value) => value = kind.AsMemory());
        builder.Add(AnnotationUtils.Kinds.ScoreValueKind, TextDataViewType.Instance,
            (ref ReadOnlyMemory<char> value) => value = AnnotationUtils.Const.ScoreValueKind.Score.AsMemory());
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
            {
                best = i;
            }
        }

        return best;
    }
}
