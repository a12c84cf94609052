using System.Text.Json;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>A special token named by a config file: its text, and the file that named it.</summary>
/// <param name="Content">The token text.</param>
/// <param name="File">The file that named it, for error messages.</param>
/// <param name="Key">The key that named it (<c>bos_token</c>...).</param>
internal sealed record NamedToken(string Content, string File, string Key);

/// <summary>
/// What the JSON files beside the tokenizer say: tokenizer_config.json, special_tokens_map.json (which wins over
/// tokenizer_config.json for special tokens, as in transformers) and config.json (token ids, used only as fallback).
/// Every file is optional.
/// </summary>
internal sealed class TokenizerFolderSettings
{
    internal const string TokenizerConfigFile = "tokenizer_config.json";
    internal const string SpecialTokensMapFile = "special_tokens_map.json";
    internal const string ModelConfigFile = "config.json";
    internal const string ChatTemplateFile = "chat_template.jinja";

    internal bool? AddBos { get; private set; }

    internal bool? AddEos { get; private set; }

    internal NamedToken? Bos { get; private set; }

    internal NamedToken? Eos { get; private set; }

    internal NamedToken? Unk { get; private set; }

    internal NamedToken? Pad { get; private set; }

    internal List<NamedToken> AdditionalSpecialTokens { get; } = [];

    internal List<AddedToken> AddedTokens { get; } = [];

    internal int? ModelMaxLength { get; private set; }

    internal string? ChatTemplate { get; private set; }

    internal int? ConfigBosId { get; private set; }

    internal int? ConfigEosId { get; private set; }

    internal int? ConfigPadId { get; private set; }

    internal string? ModelConfigPath { get; private set; }

    /// <summary>Reads whichever of the files exist in <paramref name="folder"/>.</summary>
    internal static TokenizerFolderSettings Read(string folder)
    {
        var settings = new TokenizerFolderSettings();

        var tokenizerConfig = Path.Combine(folder, TokenizerConfigFile);
        if (File.Exists(tokenizerConfig))
        {
            settings.ReadTokenizerConfig(tokenizerConfig);
        }

        var specialTokensMap = Path.Combine(folder, SpecialTokensMapFile);
        if (File.Exists(specialTokensMap))
        {
            settings.ReadSpecialTokens(specialTokensMap);
        }

        var chatTemplate = Path.Combine(folder, ChatTemplateFile);
        if (settings.ChatTemplate is null && File.Exists(chatTemplate))
        {
            settings.ChatTemplate = File.ReadAllText(chatTemplate);
        }

        var modelConfig = Path.Combine(folder, ModelConfigFile);
        if (File.Exists(modelConfig))
        {
            settings.ReadModelConfig(modelConfig);
        }

        return settings;
    }

    private void ReadTokenizerConfig(string file)
    {
        using var document = TokenizerJson.ParseObjectFile(file);
        var root = document.RootElement;
        AddBos = TokenizerJson.GetBool(file, root, "add_bos_token", "");
        AddEos = TokenizerJson.GetBool(file, root, "add_eos_token", "");
        ReadSpecialTokens(file, root);
        ModelMaxLength = ReadModelMaxLength(file, root);
        ChatTemplate = ReadChatTemplate(file, root);

        if (TokenizerJson.Get(root, "added_tokens_decoder") is JsonElement decoder)
        {
            TokenizerJson.ExpectKind(file, decoder, JsonValueKind.Object, "added_tokens_decoder", "an object");
            foreach (var entry in decoder.EnumerateObject())
            {
                var path = $"added_tokens_decoder[\"{entry.Name}\"]";
                if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id))
                {
                    throw new InvalidDataException($"'{file}': '{path}' must be keyed by a non-negative token id but the key is \"{entry.Name}\".");
                }

                if (id == int.MaxValue)
                {
                    throw new InvalidDataException($"'{file}': '{path}' is keyed by token id {id}; ids must be below {int.MaxValue}.");
                }

                TokenizerJson.ExpectKind(file, entry.Value, JsonValueKind.Object, path, "an object");
                var content = TokenizerJson.GetString(file, entry.Value, "content", path);
                if (string.IsNullOrEmpty(content))
                {
                    throw new InvalidDataException($"'{file}': '{path}.content' must be a non-empty string.");
                }

                AddedTokens.Add(new AddedToken(
                    id,
                    content,
                    Special: TokenizerJson.GetBool(file, entry.Value, "special", path) ?? false,
                    LStrip: TokenizerJson.GetBool(file, entry.Value, "lstrip", path) ?? false,
                    RStrip: TokenizerJson.GetBool(file, entry.Value, "rstrip", path) ?? false));
            }
        }
    }

    /// <summary>Reads bos/eos/unk/pad and additional special tokens; a later file's non-null value wins.</summary>
    private void ReadSpecialTokens(string file)
    {
        using var document = TokenizerJson.ParseObjectFile(file);
        ReadSpecialTokens(file, document.RootElement);
    }

    private void ReadSpecialTokens(string file, JsonElement root)
    {
        Bos = ReadToken(file, root, "bos_token") ?? Bos;
        Eos = ReadToken(file, root, "eos_token") ?? Eos;
        Unk = ReadToken(file, root, "unk_token") ?? Unk;
        Pad = ReadToken(file, root, "pad_token") ?? Pad;

        if (TokenizerJson.Get(root, "additional_special_tokens") is JsonElement additional)
        {
            TokenizerJson.ExpectKind(file, additional, JsonValueKind.Array, "additional_special_tokens", "an array");
            var index = 0;
            foreach (var item in additional.EnumerateArray())
            {
                var key = $"additional_special_tokens[{index++}]";
                if (ReadTokenValue(file, item, key) is NamedToken token && !AdditionalSpecialTokens.Any(t => t.Content == token.Content))
                {
                    AdditionalSpecialTokens.Add(token);
                }
            }
        }
    }

    private static NamedToken? ReadToken(string file, JsonElement root, string key)
        => TokenizerJson.Get(root, key) is JsonElement value ? ReadTokenValue(file, value, key) : null;

    /// <summary>A token is written as a string or as an object with <c>content</c> (transformers' AddedToken).</summary>
    private static NamedToken? ReadTokenValue(string file, JsonElement value, string key)
    {
        var content = value.ValueKind switch
        {
            JsonValueKind.String => value.GetString(),
            JsonValueKind.Object => TokenizerJson.GetString(file, value, "content", key),
            JsonValueKind.Null => null,
            _ => throw new InvalidDataException(
                $"'{file}': '{key}' must be a string, an object with \"content\", or null, but is {TokenizerJson.Show(value)}."),
        };
        return string.IsNullOrEmpty(content) ? null : new NamedToken(content, file, key);
    }

    /// <summary>transformers writes 1e30 when there is no limit; anything beyond int range means "no limit".</summary>
    private static int? ReadModelMaxLength(string file, JsonElement root)
    {
        if (TokenizerJson.Get(root, "model_max_length") is not JsonElement value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out var length) || length <= 0 || length != Math.Floor(length))
        {
            throw new InvalidDataException($"'{file}': 'model_max_length' must be a positive integer but is {TokenizerJson.Show(value)}.");
        }

        return length <= int.MaxValue ? (int)length : null;
    }

    /// <summary>A template string, or a list of <c>{name, template}</c> from which "default" (else the first) is kept.</summary>
    private static string? ReadChatTemplate(string file, JsonElement root)
    {
        if (TokenizerJson.Get(root, "chat_template") is not JsonElement value)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            string? first = null;
            var index = 0;
            foreach (var item in value.EnumerateArray())
            {
                var path = $"chat_template[{index++}]";
                TokenizerJson.ExpectKind(file, item, JsonValueKind.Object, path, "an object with \"name\" and \"template\"");
                var template = TokenizerJson.GetString(file, item, "template", path);
                if (TokenizerJson.GetString(file, item, "name", path) == "default")
                {
                    return template;
                }

                first ??= template;
            }

            return first;
        }

        throw new InvalidDataException($"'{file}': 'chat_template' must be a string or a list of {{name, template}} but is {TokenizerJson.Show(value)}.");
    }

    private void ReadModelConfig(string file)
    {
        using var document = TokenizerJson.ParseObjectFile(file);
        var root = document.RootElement;
        ModelConfigPath = file;
        ConfigBosId = ReadConfigId(file, root, "bos_token_id");
        ConfigEosId = ReadConfigId(file, root, "eos_token_id");
        ConfigPadId = ReadConfigId(file, root, "pad_token_id");
    }

    /// <summary>An id, or a list of ids (LLaMA-3 lists several EOS ids) of which the first is kept; a negative id means none.</summary>
    private static int? ReadConfigId(string file, JsonElement root, string key)
    {
        if (TokenizerJson.Get(root, key) is not JsonElement value)
        {
            return null;
        }

        var first = value.ValueKind == JsonValueKind.Array
            ? value.EnumerateArray().Select(v => (JsonElement?)v).FirstOrDefault()
            : value;
        if (first is not JsonElement id)
        {
            return null;
        }

        var result = TokenizerJson.ReadInt(file, id, key);
        return result >= 0 ? result : null; // some LLaMA configs write -1 for "none"
    }
}
