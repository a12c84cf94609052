using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Methods;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>
/// The sweep's checkpoint: one JSON line per finished trial (completed or failed) in <c>trials.jsonl</c>, appended and
/// flushed as each trial ends, so an interrupted sweep resumes without rerunning them.
/// </summary>
internal sealed class TrialLog
{
    public const string FileName = "trials.jsonl";

    private static readonly JsonSerializerOptions _json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
    };

    private readonly string _path;

    public TrialLog(string folder)
    {
        Directory.CreateDirectory(folder);
        Folder = folder;
        _path = Path.Combine(folder, FileName);
    }

    public string Folder { get; }

    /// <summary>The canonical text of a configuration, used to match a proposal with a recorded trial.</summary>
    public static string Key(TuningMethod method, IReadOnlyDictionary<string, object> parameters)
        => method + JsonSerializer.Serialize(new SortedDictionary<string, object>(parameters.ToDictionary(), StringComparer.Ordinal), _json);

    /// <summary>Reads the recorded trials; a torn last line (a crash mid-write) is skipped and reported.</summary>
    public List<TrialResult> Read(Action<string> warn)
    {
        var trials = new List<TrialResult>();
        if (!File.Exists(_path))
        {
            return trials;
        }

        var lineNumber = 0;
        foreach (var line in File.ReadLines(_path, Encoding.UTF8))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            try
            {
                var record = JsonSerializer.Deserialize<Record>(line, _json)
                    ?? throw new InvalidDataException("the line is null");
                trials.Add(record.ToResult());
            }
            catch (Exception e) when (e is JsonException or InvalidDataException or ArgumentException or FormatException)
            {
                warn($"Line {lineNumber} of '{_path}' is not a trial record and is ignored: {e.Message}");
            }
        }

        return trials;
    }

    public void Append(TrialResult trial)
    {
        var line = JsonSerializer.Serialize(Record.From(trial), _json) + "\n";
        using var stream = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.Read);
        var bytes = Encoding.UTF8.GetBytes(line);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>Where the best trial's model is saved.</summary>
    public string ModelPath(int trialId) => Path.Combine(Folder, string.Create(CultureInfo.InvariantCulture, $"trial-{trialId:D4}.zip"));

    private sealed class Record
    {
        public int Id { get; set; }

        public int ConfigurationId { get; set; }

        public int Rung { get; set; }

        public TuningMethod Method { get; set; }

        public string MethodName { get; set; } = string.Empty;

        public SortedDictionary<string, JsonElement> Parameters { get; set; } = new(StringComparer.Ordinal);

        public TrialStatus Status { get; set; }

        public double Metric { get; set; }

        public Dictionary<LabelTuningMetric, double> Metrics { get; set; } = [];

        public double TrainingSeconds { get; set; }

        public long TrainableParameters { get; set; }

        public long PeakMemoryBytes { get; set; }

        public long MemoryIncreaseBytes { get; set; }

        public string? Error { get; set; }

        public static Record From(TrialResult t) => new()
        {
            Id = t.Id,
            ConfigurationId = t.ConfigurationId,
            Rung = t.Rung,
            Method = t.Method,
            MethodName = t.MethodName,
            Parameters = new(t.Parameters.ToDictionary(p => p.Key, p => JsonSerializer.SerializeToElement(p.Value, _json)), StringComparer.Ordinal),
            Status = t.Status,
            Metric = t.Metric,
            Metrics = t.Metrics.ToDictionary(),
            TrainingSeconds = t.TrainingTime.TotalSeconds,
            TrainableParameters = t.TrainableParameters,
            PeakMemoryBytes = t.PeakMemoryBytes,
            MemoryIncreaseBytes = t.MemoryIncreaseBytes,
            Error = t.Error,
        };

        public TrialResult ToResult() => new()
        {
            Id = Id,
            ConfigurationId = ConfigurationId,
            Rung = Rung,
            Method = Method,
            MethodName = MethodName,
            Parameters = Parameters.ToDictionary(p => p.Key, p => FromJson(p.Key, p.Value)),
            Status = Status,
            Metric = Metric,
            Metrics = Metrics,
            TrainingTime = TimeSpan.FromSeconds(TrainingSeconds),
            TrainableParameters = TrainableParameters,
            PeakMemoryBytes = PeakMemoryBytes,
            MemoryIncreaseBytes = MemoryIncreaseBytes,
            Error = Error,
            FromCheckpoint = true,
        };

        private static object FromJson(string name, JsonElement value) => value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            JsonValueKind.Number when value.GetRawText().IndexOfAny(['.', 'e', 'E']) < 0 && value.TryGetInt32(out var i) => i,
            JsonValueKind.Number => value.GetDouble(),
            _ => throw new InvalidDataException($"Parameter '{name}' is {value.ValueKind}; expected a number, a boolean or a string."),
        };
    }
}
