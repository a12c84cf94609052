using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>
/// The JSON Lines log of a GPTA search: one object per event (request, reply, rejection, score, result). Each line is
/// written with one append and flushed to disk before the search goes on, so a crash leaves whole lines, and a
/// reader (tail -f, jq) can follow it while it grows.
/// </summary>
internal sealed class PrefixTranscript
{
    private static readonly JsonSerializerOptions _json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private readonly object _gate = new();

    public PrefixTranscript(string? path)
    {
        Path = System.IO.Path.GetFullPath(path ?? System.IO.Path.Combine(
            System.IO.Path.GetTempPath(), "Microsoft.ML.LabelTuning", $"gpta-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid():N}.jsonl"));
        var folder = System.IO.Path.GetDirectoryName(Path);
        if (!string.IsNullOrEmpty(folder))
        {
            Directory.CreateDirectory(folder);
        }
    }

    /// <summary>Gets the full path of the transcript.</summary>
    public string Path { get; }

    /// <summary>Appends one event.</summary>
    /// <param name="kind">What happened: request, reply, rejected, candidate, skipped, result.</param>
    /// <param name="round">The round.</param>
    /// <param name="fields">The event's fields (serialised as JSON).</param>
    public void Write(string kind, int round, object fields)
    {
        var record = new Dictionary<string, object?>
        {
            ["time"] = DateTimeOffset.UtcNow.ToString("O"),
            ["event"] = kind,
            ["round"] = round,
            ["data"] = fields,
        };
        var line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(record, _json) + "\n");
        lock (_gate)
        {
            using var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
            stream.Write(line);
            stream.Flush(flushToDisk: true);
        }
    }
}
