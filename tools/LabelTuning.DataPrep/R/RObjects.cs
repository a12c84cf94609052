namespace LabelTuning.DataPrep.R;

/// <summary>A value read from R's serialization format. Attributes are kept in their serialized order.</summary>
internal abstract class RObject
{
    private static readonly IReadOnlyList<KeyValuePair<string, RObject>> NoAttributes = [];

    public IReadOnlyList<KeyValuePair<string, RObject>> Attributes { get; internal set; } = NoAttributes;

    public abstract string TypeName { get; }

    public RObject? Attribute(string name)
    {
        foreach (var pair in Attributes)
        {
            if (pair.Key == name)
            {
                return pair.Value;
            }
        }

        return null;
    }

    /// <summary>The "names" attribute, or null when there is none.</summary>
    public IReadOnlyList<string?>? Names => (Attribute("names") as RStringVector)?.Values;

    /// <summary>The "class" attribute, or an empty list.</summary>
    public IReadOnlyList<string?> Classes => (Attribute("class") as RStringVector)?.Values ?? [];

    public override string ToString() => TypeName;
}

/// <summary>R's NULL.</summary>
internal sealed class RNull : RObject
{
    public static readonly RNull Instance = new();

    private RNull()
    {
    }

    public override string TypeName => "NULL";
}

/// <summary>A singleton R cannot serialize by value: the global, base or empty environment, a missing argument, and so on.</summary>
internal sealed class RSpecial(string name) : RObject
{
    public string Name { get; } = name;

    public override string TypeName => Name;
}

/// <summary>A symbol (SYMSXP).</summary>
internal sealed class RSymbol(string name) : RObject
{
    public string Name { get; } = name;

    public override string TypeName => "symbol";

    public override string ToString() => $"symbol {Name}";
}

/// <summary>A CHARSXP: one element of a character vector, or a symbol's print name. Null is NA_character_.</summary>
internal sealed class RChars(string? value) : RObject
{
    public string? Value { get; } = value;

    public override string TypeName => "CHARSXP";
}

/// <summary>A character vector (STRSXP). Null elements are NA.</summary>
internal sealed class RStringVector(string?[] values) : RObject
{
    public string?[] Values { get; } = values;

    public override string TypeName => "character";

    public override string ToString() => $"character[{Values.Length}]";
}

/// <summary>An integer vector (INTSXP); NA is int.MinValue. A factor is an integer vector with "levels" and class "factor".</summary>
internal sealed class RIntVector(int[] values) : RObject
{
    public const int NA = int.MinValue;

    public int[] Values { get; } = values;

    public override string TypeName => IsFactor ? "factor" : "integer";

    public bool IsFactor => Classes.Contains("factor") && Attribute("levels") is RStringVector;

    /// <summary>The factor's labels (null for NA), or throws when this vector is not a factor.</summary>
    public string?[] FactorLabels()
    {
        if (Attribute("levels") is not RStringVector levels || !Classes.Contains("factor"))
        {
            throw new InvalidOperationException($"Expected a factor (integer vector with class \"factor\" and levels), found {TypeName}.");
        }

        var labels = new string?[Values.Length];
        for (int i = 0; i < Values.Length; i++)
        {
            int code = Values[i];
            if (code == NA)
            {
                continue;
            }

            if (code < 1 || code > levels.Values.Length)
            {
                throw new InvalidDataException($"Factor code {code} at index {i} is outside its {levels.Values.Length} levels.");
            }

            labels[i] = levels.Values[code - 1];
        }

        return labels;
    }

    public override string ToString() => $"{TypeName}[{Values.Length}]";
}

/// <summary>A logical vector (LGLSXP): 0 false, 1 true, int.MinValue NA.</summary>
internal sealed class RLogicalVector(int[] values) : RObject
{
    public int[] Values { get; } = values;

    public override string TypeName => "logical";

    public override string ToString() => $"logical[{Values.Length}]";
}

/// <summary>A double vector (REALSXP).</summary>
internal sealed class RRealVector(double[] values) : RObject
{
    public double[] Values { get; } = values;

    public override string TypeName => "double";

    public override string ToString() => $"double[{Values.Length}]";
}

/// <summary>A complex vector (CPLXSXP), stored as interleaved real and imaginary parts.</summary>
internal sealed class RComplexVector(double[] interleaved) : RObject
{
    public double[] Interleaved { get; } = interleaved;

    public override string TypeName => "complex";
}

/// <summary>A raw vector (RAWSXP).</summary>
internal sealed class RRawVector(byte[] values) : RObject
{
    public byte[] Values { get; } = values;

    public override string TypeName => "raw";
}

/// <summary>A generic vector (VECSXP, a "list") or an expression vector.</summary>
internal sealed class RList(RObject[] items, bool isExpression = false) : RObject
{
    public RObject[] Items { get; } = items;

    public bool IsExpression { get; } = isExpression;

    public override string TypeName => IsExpression ? "expression" : "list";

    /// <summary>The element named <paramref name="name"/>, or null.</summary>
    public RObject? this[string name]
    {
        get
        {
            var names = Names;
            if (names is null)
            {
                return null;
            }

            for (int i = 0; i < names.Count && i < Items.Length; i++)
            {
                if (names[i] == name)
                {
                    return Items[i];
                }
            }

            return null;
        }
    }

    public override string ToString() => $"{TypeName}[{Items.Length}]";
}

/// <summary>One cell of a pairlist: its tag (null when untagged) and its value.</summary>
internal readonly record struct RPairListNode(string? Tag, RObject Value);

/// <summary>A pairlist (LISTSXP) or a pairlist-shaped language object (LANGSXP, CLOSXP, PROMSXP, DOTSXP).</summary>
internal sealed class RPairList(string kind, IReadOnlyList<RPairListNode> nodes, RObject tail) : RObject
{
    public string Kind { get; } = kind;

    public IReadOnlyList<RPairListNode> Nodes { get; } = nodes;

    /// <summary>The final CDR: NULL for a proper list.</summary>
    public RObject Tail { get; } = tail;

    public override string TypeName => Kind;

    public override string ToString() => $"{Kind}[{Nodes.Count}]";
}

/// <summary>An environment. Its frame is read but not interpreted.</summary>
internal sealed class REnvironment : RObject
{
    public bool Locked { get; internal set; }

    public RObject Enclosure { get; internal set; } = RNull.Instance;

    public RObject Frame { get; internal set; } = RNull.Instance;

    public RObject HashTable { get; internal set; } = RNull.Instance;

    public override string TypeName => "environment";
}

/// <summary>A reference serialized by name (PERSISTSXP, PACKAGESXP, NAMESPACESXP): an environment kept elsewhere.</summary>
internal sealed class RNamedReference(string kind, string?[] names) : RObject
{
    public string Kind { get; } = kind;

    public string?[] Values { get; } = names;

    public override string TypeName => Kind;

    public override string ToString() => $"{Kind}({string.Join(", ", Values)})";
}

/// <summary>An object read but not modelled (external pointer, weak reference, S4 object, builtin function).</summary>
internal sealed class ROpaque(string kind) : RObject
{
    public string Kind { get; } = kind;

    public override string TypeName => Kind;
}
