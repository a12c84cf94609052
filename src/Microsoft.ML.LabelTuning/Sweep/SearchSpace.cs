using System.Globalization;
using System.Reflection;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>One dimension of a method's search space: a numeric range or a choice among values.</summary>
public abstract class SearchParameter
{
    private protected SearchParameter(string name)
    {
        Name = name;
    }

    /// <summary>Gets the options property this parameter sets.</summary>
    public string Name { get; }

    /// <summary>Gets the value the first (default) trial of the method uses.</summary>
    public abstract object Default { get; }

    internal abstract object Sample(Random random);
}

/// <summary>A numeric range, drawn uniformly or on a log scale; integer ranges round to the nearest integer.</summary>
public sealed class RangeParameter : SearchParameter
{
    internal RangeParameter(string name, double min, double max, double init, bool logBase, bool isInteger)
        : base(name)
    {
        if (!(min <= max) || !double.IsFinite(min) || !double.IsFinite(max))
        {
            throw new ArgumentException($"Search parameter '{name}' needs finite min <= max but has min {min} and max {max}.", nameof(min));
        }

        if (logBase && !(min > 0))
        {
            throw new ArgumentException($"Search parameter '{name}' is on a log scale, so its min must be positive, but it is {min}.", nameof(min));
        }

        Min = min;
        Max = max;
        Init = Math.Clamp(init, min, max);
        LogBase = logBase;
        IsInteger = isInteger;
    }

    /// <summary>Gets the smallest value.</summary>
    public double Min { get; }

    /// <summary>Gets the largest value.</summary>
    public double Max { get; }

    /// <summary>Gets the default trial's value (clamped into the range).</summary>
    public double Init { get; }

    /// <summary>Gets a value indicating whether values are drawn on a log scale.</summary>
    public bool LogBase { get; }

    /// <summary>Gets a value indicating whether values are integers.</summary>
    public bool IsInteger { get; }

    /// <inheritdoc/>
    public override object Default => IsInteger ? (object)(int)Math.Round(Init) : Init;

    /// <inheritdoc/>
    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Name} in [{Min:G4}, {Max:G4}]{(LogBase ? " (log)" : string.Empty)}, default {Default}");

    internal override object Sample(Random random)
    {
        var u = random.NextDouble();
        var value = LogBase ? Math.Exp(Math.Log(Min) + (u * (Math.Log(Max) - Math.Log(Min)))) : Min + (u * (Max - Min));
        if (IsInteger)
        {
            return (int)Math.Clamp(Math.Round(value), Math.Ceiling(Min), Math.Floor(Max));
        }

        // Four significant digits keep the leaderboard readable and the JSON log stable.
        return Math.Clamp(double.Parse(value.ToString("G4", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), Min, Max);
    }
}

/// <summary>A choice among candidate values, drawn uniformly.</summary>
public sealed class ChoiceParameter : SearchParameter
{
    private readonly object _default;

    internal ChoiceParameter(string name, IReadOnlyList<object> candidates, object? preferredDefault)
        : base(name)
    {
        if (candidates.Count == 0)
        {
            throw new ArgumentException($"Search parameter '{name}' is a choice with no candidates; give at least one.", nameof(candidates));
        }

        Candidates = candidates.ToArray();
        _default = preferredDefault is not null && Candidates.Contains(preferredDefault) ? preferredDefault : Candidates[0];
    }

    /// <summary>Gets the candidates.</summary>
    public IReadOnlyList<object> Candidates { get; }

    /// <inheritdoc/>
    public override object Default => _default;

    /// <inheritdoc/>
    public override string ToString() => $"{Name} in {{{string.Join(", ", Candidates)}}}, default {Default}";

    internal override object Sample(Random random) => Candidates[random.Next(Candidates.Count)];
}

/// <summary>
/// The settings the sweep tries for one tuning method. Built from the search space the method registers with its
/// descriptor (its folder says which options the sweep varies, and over what); every range can be narrowed, widened,
/// fixed or removed here.
/// </summary>
public sealed class MethodSearchSpace
{
    private readonly SortedDictionary<string, SearchParameter> _parameters = new(StringComparer.Ordinal);

    private MethodSearchSpace(TuningMethod method, Type optionsType)
    {
        Method = method;
        OptionsType = optionsType;
    }

    /// <summary>Gets the tuning method.</summary>
    public TuningMethod Method { get; }

    /// <summary>Gets the options class the method's trainer takes.</summary>
    public Type OptionsType { get; }

    /// <summary>Gets the parameters, ordered by name.</summary>
    public IReadOnlyCollection<SearchParameter> Parameters => _parameters.Values;

    /// <summary>
    /// Gets or sets a callback that completes each trial's options after the sampled values are set (for example
    /// L-Tuning's label texts). It runs inside the trial: an exception it throws fails that trial only. Default null.
    /// </summary>
    public Action<LabelTuningOptions>? Configure { get; set; }

    /// <summary>Gets the parameter named <paramref name="name"/>, or null.</summary>
    /// <param name="name">The options property name.</param>
    public SearchParameter? this[string name] => _parameters.TryGetValue(name, out var p) ? p : null;

    /// <summary>Builds the search space <paramref name="method"/> registers.</summary>
    /// <param name="method">A registered tuning method.</param>
    /// <returns>The method's default search space.</returns>
    public static MethodSearchSpace For(TuningMethod method)
    {
        var descriptor = TuningMethodRegistry.Get(method);
        var space = new MethodSearchSpace(method, descriptor.OptionsType);
        var defaults = descriptor.CreateOptions();
        foreach (var dimension in descriptor.SearchSpace)
        {
            var property = space.Property(dimension.Name);
            switch (dimension)
            {
                case SearchRange range:
                    var scale = range.RelativeToDefault ? Convert.ToDouble(property.GetValue(defaults), CultureInfo.InvariantCulture) : 1.0;
                    space.Add(new RangeParameter(range.Name, range.Min * scale, range.Max * scale, range.Init * scale, range.LogBase, range.IsInteger));
                    break;
                case SearchChoice choice:
                    space.Add(new ChoiceParameter(choice.Name, choice.Candidates, property.GetValue(defaults)));
                    break;
            }
        }

        return space;
    }

    /// <summary>Sets a numeric range for <paramref name="name"/> (added or replaced).</summary>
    /// <param name="name">An int or double property of the options class.</param>
    /// <param name="min">The smallest value.</param>
    /// <param name="max">The largest value.</param>
    /// <param name="init">The default trial's value; null takes the lower end (or the geometric middle on a log scale).</param>
    /// <param name="logBase">Draw on a log scale.</param>
    /// <returns>This space.</returns>
    public MethodSearchSpace SetRange(string name, double min, double max, double? init = null, bool logBase = false)
    {
        var property = Property(name);
        var isInteger = property.PropertyType == typeof(int);
        if (!isInteger && property.PropertyType != typeof(double))
        {
            throw new ArgumentException($"{OptionsType.Name}.{name} is {property.PropertyType.Name}; a range needs an int or double property (use SetChoice).", nameof(name));
        }

        init ??= logBase && min > 0 ? Math.Sqrt(min * max) : min;
        _parameters[name] = new RangeParameter(name, min, max, init.Value, logBase, isInteger);
        return this;
    }

    /// <summary>Sets the candidates of <paramref name="name"/> (added or replaced); the first is the default trial's.</summary>
    /// <param name="name">A property of the options class.</param>
    /// <param name="candidates">The values to try.</param>
    /// <returns>This space.</returns>
    public MethodSearchSpace SetChoice(string name, params object[] candidates)
    {
        var property = Property(name);
        foreach (var candidate in candidates)
        {
            _ = ConvertValue(candidate, property.PropertyType, $"{OptionsType.Name}.{name}");
        }

        _parameters[name] = new ChoiceParameter(name, candidates, null);
        return this;
    }

    /// <summary>Fixes <paramref name="name"/> to one value in every trial.</summary>
    /// <param name="name">A property of the options class.</param>
    /// <param name="value">The value.</param>
    /// <returns>This space.</returns>
    public MethodSearchSpace Fix(string name, object value) => SetChoice(name, value);

    /// <summary>Removes <paramref name="name"/>: trials keep the options' default.</summary>
    /// <param name="name">The parameter name.</param>
    /// <returns>This space.</returns>
    public MethodSearchSpace Remove(string name)
    {
        _parameters.Remove(name);
        return this;
    }

    /// <summary>The options type of a method, as its catalog extension takes it.</summary>
    internal static Type OptionsTypeOf(TuningMethod method) => TuningMethodRegistry.Get(method).OptionsType;

    /// <summary>Writes <paramref name="value"/> into <paramref name="options"/>' property <paramref name="name"/>.</summary>
    internal static void Apply(LabelTuningOptions options, string name, object value)
    {
        var type = options.GetType();
        var property = type.GetProperty(name, BindingFlags.Public | BindingFlags.Instance)
            ?? throw new ArgumentException($"{type.Name} has no property '{name}' to set from the search space.", nameof(name));
        property.SetValue(options, ConvertValue(value, property.PropertyType, $"{type.Name}.{name}"));
    }

    internal static object? ConvertValue(object? value, Type target, string what)
    {
        var type = Nullable.GetUnderlyingType(target) ?? target;
        try
        {
            return value switch
            {
                null => null,
                _ when type.IsInstanceOfType(value) => value,
                string s when type.IsEnum => Enum.Parse(type, s),
                _ when type.IsEnum => Enum.ToObject(type, Convert.ToInt64(value, CultureInfo.InvariantCulture)),
                _ => Convert.ChangeType(value, type, CultureInfo.InvariantCulture),
            };
        }
        catch (Exception e) when (e is FormatException or InvalidCastException or ArgumentException or OverflowException)
        {
            throw new ArgumentException($"Search value '{value}' ({value?.GetType().Name}) cannot be written to {what}, which is {type.Name}.", e);
        }
    }

    internal void Add(SearchParameter parameter) => _parameters[parameter.Name] = parameter; // internal: SweepDescription rebuilds spaces

    private PropertyInfo Property(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var property = OptionsType.GetProperty(name, BindingFlags.Public | BindingFlags.Instance);
        if (property is null || !property.CanWrite)
        {
            throw new ArgumentException($"{OptionsType.Name} has no settable property '{name}' for the {Method} search space.", nameof(name));
        }

        return property;
    }
}

/// <summary>The methods a sweep tries and, per method, the ranges of its settings.</summary>
public sealed class LabelTuningSearchSpace
{
    private readonly List<MethodSearchSpace> _methods = [];

    /// <summary>Gets the methods' spaces, in the order trials visit them.</summary>
    public IReadOnlyList<MethodSearchSpace> Methods => _methods;

    /// <summary>Gets the space of <paramref name="method"/>.</summary>
    /// <param name="method">A method of this space.</param>
    public MethodSearchSpace this[TuningMethod method]
        => _methods.FirstOrDefault(m => m.Method == method)
            ?? throw new ArgumentException($"The search space has no {method}; it has {string.Join(", ", _methods.Select(m => m.Method))}.", nameof(method));

    /// <summary>Every method the library registers, in registration order, each with its registered ranges.</summary>
    /// <returns>The default search space.</returns>
    public static LabelTuningSearchSpace Default() => For([.. TuningMethodRegistry.Registered]);

    /// <summary>The given methods with their registered ranges.</summary>
    /// <param name="methods">The methods to try; at least one, no duplicates.</param>
    /// <returns>The search space.</returns>
    public static LabelTuningSearchSpace For(params TuningMethod[] methods)
    {
        var space = new LabelTuningSearchSpace();
        foreach (var method in methods)
        {
            space.Add(MethodSearchSpace.For(method));
        }

        return space;
    }

    /// <summary>Adds a method's space.</summary>
    /// <param name="method">The space; its method must not be in this space yet.</param>
    /// <returns>This space.</returns>
    public LabelTuningSearchSpace Add(MethodSearchSpace method)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (_methods.Any(m => m.Method == method.Method))
        {
            throw new ArgumentException($"The search space already has {method.Method}.", nameof(method));
        }

        _ = TuningMethodRegistry.Get(method.Method);
        _methods.Add(method);
        return this;
    }

    /// <summary>Fixes <paramref name="name"/> in every method whose options have it (for example Epochs or MaxSequenceLength).</summary>
    /// <param name="name">The options property.</param>
    /// <param name="value">The value.</param>
    /// <returns>This space.</returns>
    public LabelTuningSearchSpace Fix(string name, object value)
    {
        foreach (var method in _methods.Where(m => m.OptionsType.GetProperty(name) is not null))
        {
            method.Fix(name, value);
        }

        return this;
    }
}
