namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>
/// Declares a numeric option as part of the sweep's search space, shaped like Microsoft.ML.SearchSpace's
/// <c>RangeAttribute</c>: values are drawn between <see cref="Min"/> and <see cref="Max"/>, uniformly or on a log scale.
/// </summary>
/// <example><code>[Range(2, 64, 12, logBase: true)] public int LoraRank { get; set; } = 12;</code></example>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class RangeAttribute : Attribute
{
    /// <summary>Declares an integer range.</summary>
    /// <param name="min">The smallest value, inclusive.</param>
    /// <param name="max">The largest value, inclusive.</param>
    /// <param name="init">The value the first (default) trial of a method uses.</param>
    /// <param name="logBase">When true, values are drawn uniformly in log space (min must be positive).</param>
    public RangeAttribute(int min, int max, int init, bool logBase = false)
    {
        Min = min;
        Max = max;
        Init = init;
        LogBase = logBase;
        IsInteger = true;
    }

    /// <summary>Declares a real range.</summary>
    /// <param name="min">The smallest value, inclusive.</param>
    /// <param name="max">The largest value, inclusive.</param>
    /// <param name="init">The value the first (default) trial of a method uses.</param>
    /// <param name="logBase">When true, values are drawn uniformly in log space (min must be positive).</param>
    public RangeAttribute(double min, double max, double init, bool logBase = false)
    {
        Min = min;
        Max = max;
        Init = init;
        LogBase = logBase;
    }

    /// <summary>Gets the smallest value.</summary>
    public double Min { get; }

    /// <summary>Gets the largest value.</summary>
    public double Max { get; }

    /// <summary>Gets the value of the default trial.</summary>
    public double Init { get; }

    /// <summary>Gets a value indicating whether values are drawn on a log scale.</summary>
    public bool LogBase { get; }

    /// <summary>Gets a value indicating whether the range holds integers.</summary>
    public bool IsInteger { get; }

    /// <summary>
    /// Gets or sets a value indicating whether <see cref="Min"/>, <see cref="Max"/> and <see cref="Init"/> are multiples of
    /// the option's default in each options class (so one declaration on a shared base property, such as the learning
    /// rate, gives every method a range around its own default). Default false.
    /// </summary>
    public bool RelativeToDefault { get; set; }
}

/// <summary>
/// Declares an option as a choice among candidates, shaped like Microsoft.ML.SearchSpace's <c>ChoiceAttribute</c>.
/// The default trial takes the option's own default when it is a candidate, and the first candidate otherwise.
/// </summary>
/// <example><code>[Choice(Pooling.Last, Pooling.Mean)] public Pooling Pooling { get; set; }</code></example>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false, Inherited = true)]
public sealed class ChoiceAttribute : Attribute
{
    /// <summary>Declares the candidates.</summary>
    /// <param name="candidates">The values to choose among (numbers, booleans, strings or enum values); at least one.</param>
    public ChoiceAttribute(params object[] candidates)
    {
        Candidates = candidates ?? [];
    }

    /// <summary>Gets the candidates.</summary>
    public IReadOnlyList<object> Candidates { get; }
}
