using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// A tokenizer.json decoder step. Steps rewrite the list of token strings in turn; the decoded text is the
/// concatenation of what the last step leaves.
/// </summary>
internal abstract record TokenDecoder
{
    internal abstract void Apply(List<string> tokens);

    /// <summary>Replaces a literal string in every token (<c>▁</c> to a space, for SentencePiece vocabularies).</summary>
    internal sealed record Replace(string Pattern, string Content) : TokenDecoder
    {
        internal override void Apply(List<string> tokens)
        {
            for (var i = 0; i < tokens.Count; i++)
            {
                tokens[i] = tokens[i].Replace(Pattern, Content, StringComparison.Ordinal);
            }
        }
    }

    /// <summary>
    /// Turns each run of <c>&lt;0xNN&gt;</c> tokens into the text its bytes spell; a run that is not valid UTF-8
    /// becomes one U+FFFD per byte, as Hugging Face does.
    /// </summary>
    internal sealed record ByteFallback : TokenDecoder
    {
        internal override void Apply(List<string> tokens)
        {
            var output = new List<string>(tokens.Count);
            var bytes = new List<byte>();
            foreach (var token in tokens)
            {
                if (TryParseByte(token, out var b))
                {
                    bytes.Add(b);
                    continue;
                }

                Flush();
                output.Add(token);
            }

            Flush();
            tokens.Clear();
            tokens.AddRange(output);

            void Flush()
            {
                if (bytes.Count == 0)
                {
                    return;
                }

                var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
                if (Utf8.IsValid(span))
                {
                    output.Add(Encoding.UTF8.GetString(span));
                }
                else
                {
                    output.AddRange(Enumerable.Repeat("\uFFFD", bytes.Count));
                }

                bytes.Clear();
            }
        }

        private static bool TryParseByte(string token, out byte value)
        {
            value = 0;
            return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
        }
    }

    /// <summary>Joins all tokens into one.</summary>
    internal sealed record Fuse : TokenDecoder
    {
        internal override void Apply(List<string> tokens)
        {
            var joined = string.Concat(tokens);
            tokens.Clear();
            tokens.Add(joined);
        }
    }

    /// <summary>Removes up to <paramref name="Start"/> leading and <paramref name="Stop"/> trailing <paramref name="Content"/> characters of every token.</summary>
    internal sealed record Strip(char Content, int Start, int Stop) : TokenDecoder
    {
        internal override void Apply(List<string> tokens)
        {
            for (var i = 0; i < tokens.Count; i++)
            {
                var token = tokens[i];
                var from = 0;
                while (from < Start && from < token.Length && token[from] == Content)
                {
                    from++;
                }

                var to = token.Length;
                while (token.Length - to < Stop && to > from && token[to - 1] == Content)
                {
                    to--;
                }

                tokens[i] = token[from..to];
            }
        }
    }

    /// <summary>
    /// Metaspace decoding: the meta space becomes a space, except in the first token, where it is dropped unless the
    /// prepend scheme is "never" (Hugging Face's rule).
    /// </summary>
    internal sealed record Metaspace(string Replacement, PrependScheme Scheme) : TokenDecoder
    {
        internal override void Apply(List<string> tokens)
        {
            for (var i = 0; i < tokens.Count; i++)
            {
                var replaceWith = i == 0 && Scheme != PrependScheme.Never ? string.Empty : " ";
                tokens[i] = tokens[i].Replace(Replacement, replaceWith, StringComparison.Ordinal);
            }
        }
    }

    internal sealed record Sequence(IReadOnlyList<TokenDecoder> Steps) : TokenDecoder
    {
        internal override void Apply(List<string> tokens)
        {
            foreach (var step in Steps)
            {
                step.Apply(tokens);
            }
        }
    }

    internal const string Supported = "Sequence, Replace (string pattern), ByteFallback, Fuse, Strip, Metaspace";

    /// <summary>Reads a decoder object; <c>null</c> for JSON null.</summary>
    internal static TokenDecoder? Read(string file, JsonElement? element, string path)
    {
        if (element is not JsonElement value || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        TokenizerJson.ExpectKind(file, value, JsonValueKind.Object, path, "an object or null");
        var type = TokenizerJson.GetString(file, value, "type", path);
        switch (type)
        {
            case "Sequence":
                var list = TokenizerJson.Get(value, "decoders")
                    ?? throw new InvalidDataException($"'{file}': '{path}.decoders' is missing; expected an array.");
                TokenizerJson.ExpectKind(file, list, JsonValueKind.Array, path + ".decoders", "an array");
                var steps = new List<TokenDecoder>();
                var index = 0;
                foreach (var item in list.EnumerateArray())
                {
                    var itemPath = $"{path}.decoders[{index++}]";
                    steps.Add(Read(file, item, itemPath)
                        ?? throw new InvalidDataException($"'{file}': '{itemPath}' is null; expected a decoder object."));
                }

                return new Sequence(steps);
            case "Replace":
                return new Replace(Normalizer.ReadStringPattern(file, value, path), Normalizer.ReadContent(file, value, path));
            case "ByteFallback":
                return new ByteFallback();
            case "Fuse":
                return new Fuse();
            case "Strip":
                var content = Normalizer.ReadContent(file, value, path);
                if (content.Length != 1)
                {
                    throw new InvalidDataException($"'{file}': '{path}.content' must be one character but is \"{content}\".");
                }

                var start = TokenizerJson.GetInt(file, value, "start", path) ?? 0;
                var stop = TokenizerJson.GetInt(file, value, "stop", path) ?? 0;
                if (start < 0 || stop < 0)
                {
                    throw new InvalidDataException($"'{file}': '{path}.start' and '.stop' must not be negative but are {start} and {stop}.");
                }

                return new Strip(content[0], start, stop);
            case "Metaspace":
                var (replacement, scheme) = MetaspacePreTokenizer.ReadMetaspace(file, value, path);
                return new Metaspace(replacement, scheme);
            default:
                throw new InvalidDataException(
                    $"'{file}': decoder type '{type ?? "(none)"}' at '{path}' is not supported; supported: {Supported}.");
        }
    }
}
