using System.Text.Json;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>What a reply yielded: usable candidates, the reasons others were dropped, or why the whole reply failed.</summary>
/// <param name="Candidates">Cleaned, distinct, acceptable prefixes.</param>
/// <param name="Rejected">Candidates found but dropped, each with its reason.</param>
/// <param name="Failure">Why the reply gave nothing usable; null when it gave at least one candidate.</param>
internal sealed record ParsedReply(IReadOnlyList<string> Candidates, IReadOnlyList<(string Candidate, string Reason)> Rejected, string? Failure);

/// <summary>
/// Reads candidate prefixes out of a chat reply: a JSON array of strings (anywhere in the reply, code fences
/// allowed), else a numbered or bulleted list, else (only when allowed) plain lines. Each candidate is trimmed and
/// unquoted, and dropped when empty, too long, a refusal, already tried, or sharing 20+ characters with the data.
/// </summary>
internal static partial class PrefixReplyParser
{
    public static ParsedReply Parse(
        string? reply, int maxReplyLength, int maxPrefixLength, bool acceptPlainLines, DataGuard guard, ISet<string> tried)
    {
        if (string.IsNullOrWhiteSpace(reply))
        {
            return new ParsedReply([], [], "the reply was empty");
        }

        if (reply.Length > maxReplyLength)
        {
            return new ParsedReply([], [], $"the reply was over-long ({reply.Length} characters, the limit is {maxReplyLength})");
        }

        var raw = FromJson(reply) ?? FromList(reply) ?? (acceptPlainLines ? FromLines(reply) : null);
        if (raw is null)
        {
            return new ParsedReply([], [], LooksLikeRefusal(reply)
                ? "the reply was a refusal"
                : "the reply was malformed: it held neither a JSON array of strings nor a numbered list");
        }

        var accepted = new List<string>();
        var rejected = new List<(string, string)>();
        foreach (var item in raw)
        {
            var candidate = Clean(item);
            var reason = candidate.Length == 0 ? "empty"
                : candidate.Length > maxPrefixLength ? $"longer than {maxPrefixLength} characters"
                : LooksLikeRefusal(candidate) ? "a refusal"
                : guard.Leaks(candidate) ? $"shares {DataGuard.Window}+ characters with the training or validation text"
                : tried.Contains(candidate) || accepted.Contains(candidate, StringComparer.Ordinal) ? "already tried"
                : null;
            if (reason is null)
            {
                accepted.Add(candidate);
            }
            else
            {
                // A candidate that quotes the data is never logged or echoed in full.
                rejected.Add((guard.Leaks(candidate) ? $"[{candidate.Length} characters withheld]" : Shorten(candidate), reason));
            }
        }

        return new ParsedReply(accepted, rejected, accepted.Count == 0 ? "no candidate in the reply was usable" : null);
    }

    /// <summary>Whether a text reads as a refusal rather than an answer.</summary>
    public static bool LooksLikeRefusal(string text) => RefusalPattern().IsMatch(text);

    private static List<string>? FromJson(string reply)
    {
        // The array may sit inside prose or a code fence: try the first few '[' against the last few ']' (bounded,
        // so a reply full of brackets costs little).
        var starts = Positions(reply, '[').Take(8).ToList();
        var ends = Positions(reply, ']').Reverse().Take(8).ToList();
        foreach (var start in starts)
        {
            foreach (var end in ends.Where(e => e > start))
            {
                try
                {
                    using var document = JsonDocument.Parse(reply.AsMemory(start, end - start + 1));
                    if (document.RootElement.ValueKind != JsonValueKind.Array)
                    {
                        continue;
                    }

                    var strings = document.RootElement.EnumerateArray()
                        .Where(e => e.ValueKind == JsonValueKind.String)
                        .Select(e => e.GetString() ?? string.Empty)
                        .ToList();
                    if (strings.Count > 0)
                    {
                        return strings;
                    }
                }
                catch (JsonException)
                {
                    // The text between this '[' and ']' is prose, not JSON: the next pair of brackets may hold the array.
                    continue;
                }
            }
        }

        return null;
    }

    private static IEnumerable<int> Positions(string text, char c)
    {
        for (var i = text.IndexOf(c); i >= 0; i = text.IndexOf(c, i + 1))
        {
            yield return i;
        }
    }

    private static List<string>? FromList(string reply)
    {
        var items = reply.Split('\n').Select(l => ListItem().Match(l)).Where(m => m.Success).Select(m => m.Groups["text"].Value).ToList();
        return items.Count > 0 ? items : null;
    }

    private static List<string>? FromLines(string reply)
    {
        var lines = reply.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith("```", StringComparison.Ordinal)).ToList();
        return lines.Count > 0 ? lines : null;
    }

    private static string Clean(string candidate)
    {
        var text = Whitespace().Replace(candidate, " ").Trim();
        while (text.Length >= 2 && IsQuote(text[0]) && IsQuote(text[^1]))
        {
            text = text[1..^1].Trim();
        }

        return text;
    }

    private static bool IsQuote(char c) => c is '"' or '\'' or '`' or '“' or '”' or '‘' or '’';

    private static string Shorten(string text) => text.Length <= 120 ? text : text[..117] + "...";

    [GeneratedRegex(@"^\s*(?:\d{1,2}[.):]|[-*•])\s+(?<text>\S.*?)\s*$")]
    private static partial Regex ListItem();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"\b(I'm sorry|I am sorry|I cannot|I can't|I can not|I won't|I will not|I'm unable|I am unable|as an AI|I must decline|cannot help with|can't help with|cannot assist|can't assist)\b", RegexOptions.IgnoreCase)]
    private static partial Regex RefusalPattern();
}
