using System.Net;
using System.Text;
using System.Text.RegularExpressions;

namespace LabelTuning.DataPrep.Spam;

/// <summary>
/// Extracts the readable body of a raw RFC 822 message: drops the headers, decodes quoted-printable and base64,
/// follows multipart MIME (text/plain parts first, else text/html), converts HTML to text and skips attachments.
/// </summary>
internal static partial class MailBody
{
    private const int MaxDepth = 8;

    static MailBody()
    {
        Encoding.RegisterProvider(CodePagesEncodingProvider.Instance);
    }

    [GeneratedRegex(@"<(script|style)\b.*?</\1\s*>", RegexOptions.IgnoreCase | RegexOptions.Singleline)]
    private static partial Regex ScriptOrStyle();

    [GeneratedRegex(@"<!--.*?-->", RegexOptions.Singleline)]
    private static partial Regex HtmlComment();

    [GeneratedRegex(@"<\s*(br|p|div|tr|li|h[1-6]|table|blockquote)\b[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex BlockTag();

    [GeneratedRegex(@"<[^>]*>", RegexOptions.Singleline)]
    private static partial Regex AnyTag();

    [GeneratedRegex(@"<\s*html|<\s*body|<\s*/\s*(p|div|font|table)\s*>", RegexOptions.IgnoreCase)]
    private static partial Regex LooksLikeHtml();

    [GeneratedRegex(@"<meta[^>]*charset\s*=\s*[""']?([A-Za-z0-9_\-]+)", RegexOptions.IgnoreCase)]
    private static partial Regex MetaCharset();

    [GeneratedRegex(@"[ \t\f\v\u00A0]+")]
    private static partial Regex HorizontalSpace();

    /// <summary>The message's body as text lines (no blank lines, whitespace collapsed within lines).</summary>
    public static string Extract(byte[] message)
    {
        string raw = Encoding.Latin1.GetString(message); // byte-preserving; parts are re-decoded by their charset
        var (headers, body) = SplitHeaders(raw);
        string text = ReadPart(headers, body, 0);
        return Tidy(text);
    }

    private static string ReadPart(Dictionary<string, string> headers, string body, int depth)
    {
        string contentType = headers.GetValueOrDefault("content-type", "text/plain");
        string mediaType = contentType.Split(';')[0].Trim().ToLowerInvariant();
        string encoding = headers.GetValueOrDefault("content-transfer-encoding", "7bit").Trim().ToLowerInvariant();
        string disposition = headers.GetValueOrDefault("content-disposition", "").Trim().ToLowerInvariant();

        if (mediaType.StartsWith("multipart/", StringComparison.Ordinal) && depth < MaxDepth)
        {
            string? boundary = Parameter(contentType, "boundary");
            if (boundary is null)
            {
                return ReadLeaf("text/plain", contentType, encoding, body);
            }

            var parts = SplitMultipart(body, boundary).Select(SplitHeaders).ToList();
            var texts = new List<string>();
            bool alternative = mediaType == "multipart/alternative";
            // Prefer text/plain; fall back to HTML (or nested multiparts) when a message has no plain text.
            foreach (var preferPlain in new[] { true, false })
            {
                foreach (var (partHeaders, partBody) in parts)
                {
                    string partType = partHeaders.GetValueOrDefault("content-type", "text/plain").Split(';')[0].Trim().ToLowerInvariant();
                    bool attachment = partHeaders.GetValueOrDefault("content-disposition", "").TrimStart().StartsWith("attachment", StringComparison.OrdinalIgnoreCase);
                    bool usable = preferPlain
                        ? partType == "text/plain" && !attachment
                        : (partType == "text/html" || partType.StartsWith("multipart/", StringComparison.Ordinal)) && !attachment;
                    if (!usable)
                    {
                        continue;
                    }

                    string text = ReadPart(partHeaders, partBody, depth + 1);
                    if (text.Length > 0)
                    {
                        texts.Add(text);
                        if (alternative)
                        {
                            break;
                        }
                    }
                }

                if (texts.Count > 0)
                {
                    break;
                }
            }

            return string.Join("\n", texts);
        }

        if (disposition.StartsWith("attachment", StringComparison.Ordinal))
        {
            return "";
        }

        return ReadLeaf(mediaType, contentType, encoding, body);
    }

    private static string ReadLeaf(string mediaType, string contentType, string transferEncoding, string body)
    {
        if (!mediaType.StartsWith("text/", StringComparison.Ordinal) && mediaType != "message/rfc822")
        {
            return "";
        }

        byte[] bytes = transferEncoding switch
        {
            "quoted-printable" => DecodeQuotedPrintable(body),
            "base64" => DecodeBase64(body),
            _ => Encoding.Latin1.GetBytes(body),
        };
        string? charset = Parameter(contentType, "charset");
        if (charset is null && mediaType == "text/html")
        {
            // HTML often names its charset only in <meta http-equiv="Content-Type" content="text/html; charset=big5">.
            var meta = MetaCharset().Match(Encoding.Latin1.GetString(bytes, 0, Math.Min(bytes.Length, 4096)));
            charset = meta.Success ? meta.Groups[1].Value : null;
        }

        string text = DecodeCharset(bytes, charset);
        if (mediaType == "text/html" || LooksLikeHtml().IsMatch(text))
        {
            text = HtmlToText(text);
        }

        return text;
    }

    internal static string HtmlToText(string html)
    {
        string text = ScriptOrStyle().Replace(html, " ");
        text = HtmlComment().Replace(text, " ");
        text = BlockTag().Replace(text, "\n");
        text = AnyTag().Replace(text, " ");
        return WebUtility.HtmlDecode(text);
    }

    private static string DecodeCharset(byte[] bytes, string? charset)
    {
        charset = charset?.Trim().Trim('"', '\'').ToLowerInvariant();
        if (charset is null or "" or "us-ascii" or "ascii" or "utf-8" or "utf8" or "iso-8859-1" or "latin1" or "windows-1252" or "cp1252")
        {
            // Strict UTF-8 when it decodes, otherwise Latin-1 (TextClean maps the Windows-1252 C1 range later).
            try
            {
                return new UTF8Encoding(false, true).GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                return Encoding.Latin1.GetString(bytes);
            }
        }

        try
        {
            return Encoding.GetEncoding(charset).GetString(bytes);
        }
        catch (ArgumentException)
        {
            return Encoding.Latin1.GetString(bytes);
        }
    }

    private static byte[] DecodeQuotedPrintable(string body)
    {
        var output = new List<byte>(body.Length);
        for (int i = 0; i < body.Length; i++)
        {
            char c = body[i];
            if (c == '=' && i + 1 < body.Length)
            {
                if (body[i + 1] == '\n')
                {
                    i += 1; // soft line break
                    continue;
                }

                if (body[i + 1] == '\r' && i + 2 < body.Length && body[i + 2] == '\n')
                {
                    i += 2;
                    continue;
                }

                if (i + 2 < body.Length && Uri.IsHexDigit(body[i + 1]) && Uri.IsHexDigit(body[i + 2]))
                {
                    output.Add(Convert.ToByte(body.Substring(i + 1, 2), 16));
                    i += 2;
                    continue;
                }
            }

            output.Add((byte)c);
        }

        return output.ToArray();
    }

    private static byte[] DecodeBase64(string body)
    {
        var clean = new StringBuilder(body.Length);
        foreach (char c in body)
        {
            if (char.IsAsciiLetterOrDigit(c) || c is '+' or '/')
            {
                clean.Append(c);
            }
        }

        clean.Length -= clean.Length % 4; // drop a truncated final quantum
        try
        {
            return Convert.FromBase64String(clean.ToString());
        }
        catch (FormatException)
        {
            return [];
        }
    }

    private static IEnumerable<string> SplitMultipart(string body, string boundary)
    {
        string delimiter = "--" + boundary;
        var lines = body.Split('\n');
        StringBuilder? current = null;
        foreach (var rawLine in lines)
        {
            string line = rawLine.TrimEnd('\r');
            if (line.StartsWith(delimiter, StringComparison.Ordinal))
            {
                if (current is not null)
                {
                    yield return current.ToString();
                }

                if (line.AsSpan(delimiter.Length).TrimEnd().SequenceEqual("--"))
                {
                    yield break;
                }

                current = new StringBuilder();
                continue;
            }

            current?.Append(line).Append('\n');
        }

        if (current is not null)
        {
            yield return current.ToString();
        }
    }

    /// <summary>Splits a message or part at its first blank line; header names are lower-cased and folded lines joined.</summary>
    internal static (Dictionary<string, string> Headers, string Body) SplitHeaders(string message)
    {
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        int position = 0;
        string? lastName = null;
        while (position < message.Length)
        {
            int end = message.IndexOf('\n', position);
            if (end < 0)
            {
                end = message.Length;
            }

            string line = message[position..end].TrimEnd('\r');
            position = Math.Min(end + 1, message.Length);
            if (line.Length == 0)
            {
                break;
            }

            if ((line[0] == ' ' || line[0] == '\t') && lastName is not null)
            {
                headers[lastName] += " " + line.Trim();
                continue;
            }

            int colon = line.IndexOf(':');
            if (colon <= 0 || line.AsSpan(0, colon).ContainsAny(' ', '\t'))
            {
                continue; // the mbox "From " line, or junk
            }

            lastName = line[..colon].ToLowerInvariant();
            string value = line[(colon + 1)..].Trim();
            headers.TryAdd(lastName, value);
        }

        return (headers, message[position..]);
    }

    private static string? Parameter(string headerValue, string name)
    {
        foreach (var piece in headerValue.Split(';').Skip(1))
        {
            int equals = piece.IndexOf('=');
            if (equals > 0 && piece[..equals].Trim().Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                return piece[(equals + 1)..].Trim().Trim('"');
            }
        }

        return null;
    }

    /// <summary>Collapses whitespace within lines, maps Windows-1252 controls, and drops blank lines.</summary>
    private static string Tidy(string text)
    {
        var lines = new List<string>();
        foreach (var line in text.Replace("\r\n", "\n").Replace('\r', '\n').Split('\n'))
        {
            string clean = TextClean.Normalize(HorizontalSpace().Replace(line, " "));
            if (clean.Length > 0)
            {
                lines.Add(clean);
            }
        }

        return string.Join("\n", lines);
    }
}
