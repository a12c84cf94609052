using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Methods;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>
/// Runs a whole sweep somewhere other than this process (for example on an Orleans cluster, see the
/// Microsoft.ML.LabelTuning.Orleans package). <see cref="LabelTuningExperiment.RunAsync"/> uses it when one is set and
/// runs the sweep in this process otherwise.
/// </summary>
internal interface ISweepBackend
{
    /// <summary>Runs <paramref name="experiment"/>'s sweep and returns what the local sweep would.</summary>
    Task<LabelTuningExperimentResult> RunAsync(LabelTuningExperiment experiment, CancellationToken cancellationToken);
}

/// <summary>
/// A sweep as data: the shared settings, the search space, the metric, the budgets and the tuner, as JSON that another
/// process rebuilds into the same tuner (same proposals in the same order) and the same trials. Delegates
/// (<see cref="LabelTuningExperimentSettings.ConfigureOptions"/>, <see cref="MethodSearchSpace.Configure"/>) cannot
/// travel and are refused when the description is made.
/// </summary>
internal sealed class SweepDescription
{
    private static readonly JsonSerializerOptions _json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Gets or sets the format version; 1.</summary>
    public int Version { get; set; } = 1;

    public string ModelPath { get; set; } = string.Empty;

    public string LabelColumnName { get; set; } = string.Empty;

    public string TextColumnName { get; set; } = string.Empty;

    public string? SecondTextColumnName { get; set; }

    public int MaxSequenceLength { get; set; }

    public int BatchSize { get; set; }

    public string Dtype { get; set; } = "float32";

    /// <summary>Gets or sets the resolved seed (the settings' or the MLContext's).</summary>
    public int Seed { get; set; }

    public LabelTuningMetric Metric { get; set; }

    public int? MaxTrials { get; set; }

    public double? TimeBudgetSeconds { get; set; }

    public HalvingDescription? Halving { get; set; }

    public List<MethodDescription> Space { get; set; } = [];

    public string ToJson() => JsonSerializer.Serialize(this, _json);

    /// <summary>Reads a description; <paramref name="what"/> names where it came from in errors.</summary>
    public static SweepDescription FromJson(string json, string what)
    {
        SweepDescription? description;
        try
        {
            description = JsonSerializer.Deserialize<SweepDescription>(json, _json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The sweep description in {what} is not valid JSON: {e.Message}", e);
        }

        if (description is null || description.Version != 1)
        {
            throw new InvalidDataException($"The sweep description in {what} has version {description?.Version.ToString(CultureInfo.InvariantCulture) ?? "null"}; this library reads version 1.");
        }

        if (description.Space.Count == 0)
        {
            throw new InvalidDataException($"The sweep description in {what} has no methods.");
        }

        return description;
    }

    /// <summary>Describes a search space; throws when a method carries a Configure delegate.</summary>
    public static List<MethodDescription> Describe(LabelTuningSearchSpace space)
    {
        var methods = new List<MethodDescription>();
        foreach (var method in space.Methods)
        {
            if (method.Configure is not null)
            {
                throw new InvalidOperationException(
                    $"The search space of {method.Method} has a Configure delegate, which cannot travel to the silos of a cluster; " +
                    "fix those option values with MethodSearchSpace.Fix instead.");
            }

            methods.Add(new MethodDescription
            {
                Method = method.Method,
                Parameters = method.Parameters.Select(p => p switch
                {
                    RangeParameter r => new ParameterDescription
                    {
                        Name = r.Name, Kind = "range", Min = r.Min, Max = r.Max, Init = r.Init, LogBase = r.LogBase, IsInteger = r.IsInteger,
                    },
                    ChoiceParameter c => new ParameterDescription
                    {
                        Name = c.Name, Kind = "choice", Candidates = c.Candidates.Select(SweepValues.Encode).ToList(), Default = SweepValues.Encode(c.Default),
                    },
                    _ => throw new InvalidOperationException($"Search parameter '{p.Name}' of {method.Method} is a {p.GetType().Name}, which a sweep description cannot carry."),
                }).ToList(),
            });
        }

        return methods;
    }

    /// <summary>Rebuilds the search space: the same parameters, ranges, candidates (in order) and defaults.</summary>
    public LabelTuningSearchSpace BuildSpace()
    {
        var space = new LabelTuningSearchSpace();
        foreach (var method in Space)
        {
            var methodSpace = MethodSearchSpace.For(method.Method);
            foreach (var name in methodSpace.Parameters.Select(p => p.Name).ToList())
            {
                methodSpace.Remove(name);
            }

            foreach (var p in method.Parameters)
            {
                methodSpace.Add(p.Kind switch
                {
                    "range" => new RangeParameter(p.Name, p.Min, p.Max, p.Init, p.LogBase, p.IsInteger),
                    "choice" => new ChoiceParameter(p.Name, (p.Candidates ?? []).Select(SweepValues.Decode).ToList(), p.Default is null ? null : SweepValues.Decode(p.Default)),
                    _ => throw new InvalidDataException($"Search parameter '{p.Name}' of {method.Method} has kind '{p.Kind}'; expected 'range' or 'choice'."),
                });
            }

            space.Add(methodSpace);
        }

        return space;
    }

    /// <summary>The settings every trial shares, with no delegates.</summary>
    public LabelTuningExperimentSettings BuildSettings() => new()
    {
        ModelPath = ModelPath,
        LabelColumnName = LabelColumnName,
        TextColumnName = TextColumnName,
        SecondTextColumnName = SecondTextColumnName,
        MaxSequenceLength = MaxSequenceLength,
        BatchSize = BatchSize,
        Dtype = Dtype,
        Seed = Seed,
    };

    /// <summary>A fresh tuner, as the local sweep makes it.</summary>
    public ISweepTuner CreateTuner(LabelTuningSearchSpace space) => Halving is { } h
        ? new SuccessiveHalvingTuner(space, Seed, h.MinEpochs, h.MaxEpochs, h.Eta, Metric)
        : new RandomSearchTuner(space, Seed);

    /// <summary>
    /// True when <paramref name="tuner"/>'s next proposal does not depend on the results of trials still running:
    /// random search always, successive halving within a rung. A distributed sweep proposes ahead only then, so its
    /// proposals equal the sequential sweep's.
    /// </summary>
    public static bool CanProposeAhead(ISweepTuner tuner) => tuner switch
    {
        RandomSearchTuner => true,
        SuccessiveHalvingTuner halving => halving.Queued > 0,
        _ => false,
    };
}

/// <summary>Successive halving's epochs and rate.</summary>
internal sealed class HalvingDescription
{
    public int MinEpochs { get; set; }

    public int MaxEpochs { get; set; }

    public int Eta { get; set; }
}

/// <summary>One method's search space.</summary>
internal sealed class MethodDescription
{
    public TuningMethod Method { get; set; }

    public List<ParameterDescription> Parameters { get; set; } = [];
}

/// <summary>One search parameter: a range (min, max, init, log, integer) or a choice (candidates, default) of encoded values.</summary>
internal sealed class ParameterDescription
{
    public string Name { get; set; } = string.Empty;

    public string Kind { get; set; } = string.Empty;

    public double Min { get; set; }

    public double Max { get; set; }

    public double Init { get; set; }

    public bool LogBase { get; set; }

    public bool IsInteger { get; set; }

    public List<string>? Candidates { get; set; }

    public string? Default { get; set; }
}

/// <summary>
/// Search values as text that keeps their type: <c>i:4</c>, <c>l:4</c>, <c>d:0.01</c> (round-trip), <c>f:0.5</c>,
/// <c>b:true</c>, <c>s:text</c>. Enums travel as their names (<c>s:</c>), as the sweep's proposals carry them.
/// </summary>
internal static class SweepValues
{
    public static string Encode(object value) => value switch
    {
        int i => "i:" + i.ToString(CultureInfo.InvariantCulture),
        long l => "l:" + l.ToString(CultureInfo.InvariantCulture),
        double d => "d:" + d.ToString("R", CultureInfo.InvariantCulture),
        float f => "f:" + f.ToString("R", CultureInfo.InvariantCulture),
        bool b => b ? "b:true" : "b:false",
        string s => "s:" + s,
        Enum e => "s:" + e,
        _ => throw new ArgumentException($"Search value '{value}' is a {value.GetType().Name}; a sweep description carries numbers, booleans, strings and enums.", nameof(value)),
    };

    public static object Decode(string text)
    {
        if (text.Length < 2 || text[1] != ':')
        {
            throw new InvalidDataException($"Search value '{text}' has no type prefix (i:, l:, d:, f:, b: or s:).");
        }

        var body = text[2..];
        try
        {
            return text[0] switch
            {
                'i' => int.Parse(body, NumberStyles.Integer, CultureInfo.InvariantCulture),
                'l' => long.Parse(body, NumberStyles.Integer, CultureInfo.InvariantCulture),
                'd' => double.Parse(body, NumberStyles.Float, CultureInfo.InvariantCulture),
                'f' => float.Parse(body, NumberStyles.Float, CultureInfo.InvariantCulture),
                'b' => bool.Parse(body),
                's' => body,
                _ => throw new InvalidDataException($"Search value '{text}' has an unknown type prefix '{text[0]}:'."),
            };
        }
        catch (FormatException e)
        {
            throw new InvalidDataException($"Search value '{text}' does not parse as its type: {e.Message}", e);
        }
    }

    public static SortedDictionary<string, string> EncodeAll(IReadOnlyDictionary<string, object> values)
        => new(values.ToDictionary(p => p.Key, p => Encode(p.Value)), StringComparer.Ordinal);

    public static SortedDictionary<string, object> DecodeAll(IReadOnlyDictionary<string, string> values)
        => new(values.ToDictionary(p => p.Key, p => Decode(p.Value)), StringComparer.Ordinal);
}
