using System.Text.Json;
using Microsoft.ML.LabelTuning.IO;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// Reads the small JSON files of a tokenizer folder. Every failure is an <see cref="InvalidDataException"/>
/// that names the file, the JSON path, what was expected and what was found.
/// </summary>
internal static class TokenizerJson
{
    /// <summary>Tokenizer files nest a handful of levels; a deeper document is rejected, never recursed into.</summary>
    internal const int MaxDepth = 64;

    private static readonly JsonDocumentOptions s_options = new()
    {
        MaxDepth = MaxDepth,
        CommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };

    /// <summary>Parses <paramref name="path"/>, which must hold one JSON object.</summary>
    internal static JsonDocument ParseObjectFile(string path)
    {
        var bytes = File.ReadAllBytes(path);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, s_options);
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{path}' is not valid JSON (at most {MaxDepth} levels deep): {ex.Message}", ex);
        }

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            var kind = document.RootElement.ValueKind;
            document.Dispose();
            throw new InvalidDataException($"'{path}' must hold a JSON object but holds {Describe(kind)}.");
        }

        if (JsonStrings.FindInvalid(document.RootElement) is { } invalid)
        {
            document.Dispose();
            throw new InvalidDataException(
                $"'{path}' has a string at '{invalid}' that is not valid Unicode (bytes that are not UTF-8, or an escaped lone surrogate such as \\ud800).");
        }

        return document;
    }

    /// <summary>The property, or <c>null</c> when it is absent or JSON null.</summary>
    internal static JsonElement? Get(JsonElement obj, string name)
        => obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

    internal static JsonElement GetObject(string file, JsonElement obj, string name, string path)
    {
        if (!obj.TryGetProperty(name, out var value))
        {
            throw new InvalidDataException($"'{file}': '{Join(path, name)}' is missing; expected an object.");
        }

        return ExpectKind(file, value, JsonValueKind.Object, Join(path, name), "an object");
    }

    internal static JsonElement ExpectKind(string file, JsonElement value, JsonValueKind kind, string path, string expected)
    {
        if (value.ValueKind != kind)
        {
            throw new InvalidDataException($"'{file}': '{path}' must be {expected} but is {Describe(value.ValueKind)}.");
        }

        return value;
    }

    internal static string? GetString(string file, JsonElement obj, string name, string path)
    {
        var value = Get(obj, name);
        return value is null ? null : ExpectKind(file, value.Value, JsonValueKind.String, Join(path, name), "a string").GetString();
    }

    internal static bool? GetBool(string file, JsonElement obj, string name, string path)
    {
        var value = Get(obj, name);
        if (value is null)
        {
            return null;
        }

        return value.Value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"'{file}': '{Join(path, name)}' must be true or false but is {Describe(value.Value.ValueKind)}."),
        };
    }

    internal static int? GetInt(string file, JsonElement obj, string name, string path)
    {
        var value = Get(obj, name);
        return value is null ? null : ReadInt(file, value.Value, Join(path, name));
    }

    internal static int ReadInt(string file, JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out var result))
        {
            throw new InvalidDataException($"'{file}': '{path}' must be a 32-bit integer but is {Show(value)}.");
        }

        return result;
    }

    internal static string Join(string path, string name) => path.Length == 0 ? name : path + "." + name;

    internal static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    /// <summary>A short rendering of a value for error messages.</summary>
    internal static string Show(JsonElement value)
    {
        var text = value.ValueKind is JsonValueKind.Object or JsonValueKind.Array ? Describe(value.ValueKind) : value.GetRawText();
        return text.Length > 80 ? text[..80] + "..." : text;
    }
}
