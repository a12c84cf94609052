using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>A tokenizer.json normalizer: rewrites a stretch of text before it is split and encoded.</summary>
internal abstract record Normalizer
{
    internal abstract string Apply(string text);

    internal sealed record Prepend(string Prefix) : Normalizer
    {
        // Hugging Face prepends only to non-empty text.
        internal override string Apply(string text) => text.Length == 0 ? text : Prefix + text;
    }

    internal sealed record Replace(string Pattern, string Content) : Normalizer
    {
        internal override string Apply(string text) => text.Replace(Pattern, Content, StringComparison.Ordinal);
    }

    internal sealed record Unicode(NormalizationForm Form) : Normalizer
    {
        internal override string Apply(string text)
        {
            try
            {
                return text.Normalize(Form);
            }
            catch (ArgumentException)
            {
                return text; // lone surrogates cannot be normalized; leave the text as it is
            }
        }
    }

    /// <summary>SentencePiece's remove_extra_whitespaces: no leading or trailing spaces, and single spaces inside.</summary>
    internal sealed record CollapseSpaces : Normalizer
    {
        internal override string Apply(string text)
            => text.Contains("  ", StringComparison.Ordinal) || text.StartsWith(' ') || text.EndsWith(' ')
                ? string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                : text;
    }

    internal sealed record Lowercase : Normalizer
    {
        internal override string Apply(string text) => text.ToLowerInvariant();
    }

    internal sealed record Sequence(IReadOnlyList<Normalizer> Steps) : Normalizer
    {
        internal override string Apply(string text)
        {
            foreach (var step in Steps)
            {
                text = step.Apply(text);
            }

            return text;
        }
    }

    internal const string Supported = "Sequence, Prepend, Replace (string pattern), NFC, NFD, NFKC, NFKD, Lowercase";

    /// <summary>Reads a normalizer object; <c>null</c> for JSON null.</summary>
    internal static Normalizer? Read(string file, JsonElement? element, string path)
    {
        if (element is not JsonElement value || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        TokenizerJson.ExpectKind(file, value, JsonValueKind.Object, path, "an object or null");
        var type = TokenizerJson.GetString(file, value, "type", path);
        return type switch
        {
            "Sequence" => new Sequence(ReadList(file, value, path)),
            "Prepend" => new Prepend(TokenizerJson.GetString(file, value, "prepend", path)
                ?? throw new InvalidDataException($"'{file}': '{path}.prepend' is missing; expected a string.")),
            "Replace" => new Replace(ReadStringPattern(file, value, path), ReadContent(file, value, path)),
            "NFC" => new Unicode(NormalizationForm.FormC),
            "NFD" => new Unicode(NormalizationForm.FormD),
            "NFKC" => new Unicode(NormalizationForm.FormKC),
            "NFKD" => new Unicode(NormalizationForm.FormKD),
            "Lowercase" => new Lowercase(),
            _ => throw new InvalidDataException(
                $"'{file}': normalizer type '{type ?? "(none)"}' at '{path}' is not supported; supported: {Supported}."),
        };
    }

    private static List<Normalizer> ReadList(string file, JsonElement value, string path)
    {
        var list = TokenizerJson.Get(value, "normalizers")
            ?? throw new InvalidDataException($"'{file}': '{path}.normalizers' is missing; expected an array.");
        TokenizerJson.ExpectKind(file, list, JsonValueKind.Array, path + ".normalizers", "an array");
        var steps = new List<Normalizer>();
        var index = 0;
        foreach (var item in list.EnumerateArray())
        {
            var itemPath = $"{path}.normalizers[{index++}]";
            steps.Add(Read(file, item, itemPath)
                ?? throw new InvalidDataException($"'{file}': '{itemPath}' is null; expected a normalizer object."));
        }

        return steps;
    }

    /// <summary>Reads <c>pattern: {"String": "..."}</c>; regular-expression patterns are not supported.</summary>
    internal static string ReadStringPattern(string file, JsonElement value, string path)
    {
        var pattern = TokenizerJson.GetObject(file, value, "pattern", path);
        var text = TokenizerJson.GetString(file, pattern, "String", path + ".pattern");
        if (text is null || text.Length == 0)
        {
            throw new InvalidDataException(
                $"'{file}': '{path}.pattern' must be {{\"String\": \"...\"}} with a non-empty string; regular-expression patterns are not supported.");
        }

        return text;
    }

    internal static string ReadContent(string file, JsonElement value, string path)
        => TokenizerJson.GetString(file, value, "content", path)
            ?? throw new InvalidDataException($"'{file}': '{path}.content' is missing; expected a string.");
}

/// <summary>When a Metaspace step writes the meta space in front of a stretch of text.</summary>
internal enum PrependScheme
{
    Always,
    First,
    Never,
}

/// <summary>
/// The Metaspace pre-tokenizer: spaces become the meta space (<c>▁</c>), one is prepended per the scheme unless the
/// text already starts with it, and with <c>split</c> the text is cut before each meta space.
/// </summary>
internal sealed record MetaspacePreTokenizer(string Replacement, PrependScheme Scheme, bool Split)
{
    internal void Apply(string text, bool atTextStart, List<string> words)
    {
        if (text.Length == 0)
        {
            return;
        }

        text = text.Replace(" ", Replacement, StringComparison.Ordinal);
        var prepend = Scheme == PrependScheme.Always || (Scheme == PrependScheme.First && atTextStart);
        if (prepend && !text.StartsWith(Replacement, StringComparison.Ordinal))
        {
            text = Replacement + text;
        }

        if (!Split)
        {
            words.Add(text);
            return;
        }

        // MergedWithNext: each meta space opens the word that follows it.
        var start = 0;
        var at = text.IndexOf(Replacement, 1, StringComparison.Ordinal);
        while (at > 0)
        {
            words.Add(text[start..at]);
            start = at;
            at = text.IndexOf(Replacement, at + Replacement.Length, StringComparison.Ordinal);
        }

        if (start < text.Length)
        {
            words.Add(start == 0 ? text : text[start..]);
        }
    }

    /// <summary>Reads a pre-tokenizer object; only Metaspace (or null) is supported.</summary>
    internal static MetaspacePreTokenizer? Read(string file, JsonElement? element, string path)
    {
        if (element is not JsonElement value)
        {
            return null;
        }

        TokenizerJson.ExpectKind(file, value, JsonValueKind.Object, path, "an object or null");
        var type = TokenizerJson.GetString(file, value, "type", path);
        if (type != "Metaspace")
        {
            throw new InvalidDataException(
                $"'{file}': pre-tokenizer type '{type ?? "(none)"}' at '{path}' is not supported; only SentencePiece-style " +
                "tokenizers (no pre-tokenizer, or Metaspace) and byte-level BPE (a Split regex and ByteLevel, as LLaMA-3 has) are.");
        }

        var (replacement, scheme) = ReadMetaspace(file, value, path);
        return new MetaspacePreTokenizer(replacement, scheme, TokenizerJson.GetBool(file, value, "split", path) ?? true);
    }

    /// <summary>Reads the <c>replacement</c> and the prepend scheme (or the older <c>add_prefix_space</c>) of a Metaspace object.</summary>
    internal static (string Replacement, PrependScheme Scheme) ReadMetaspace(string file, JsonElement value, string path)
    {
        var replacement = TokenizerJson.GetString(file, value, "replacement", path) ?? "\u2581";
        if (replacement.Length == 0 || (replacement.Length > 1 && !(replacement.Length == 2 && char.IsSurrogatePair(replacement, 0))))
        {
            throw new InvalidDataException($"'{file}': '{path}.replacement' must be one character but is \"{replacement}\".");
        }

        var schemeText = TokenizerJson.GetString(file, value, "prepend_scheme", path);
        PrependScheme scheme;
        if (schemeText is null)
        {
            scheme = TokenizerJson.GetBool(file, value, "add_prefix_space", path) ?? true ? PrependScheme.Always : PrependScheme.Never;
        }
        else
        {
            scheme = schemeText switch
            {
                "always" => PrependScheme.Always,
                "first" => PrependScheme.First,
                "never" => PrependScheme.Never,
                _ => throw new InvalidDataException(
                    $"'{file}': '{path}.prepend_scheme' must be \"always\", \"first\" or \"never\" but is \"{schemeText}\"."),
            };
        }

        return (replacement, scheme);
    }
}
