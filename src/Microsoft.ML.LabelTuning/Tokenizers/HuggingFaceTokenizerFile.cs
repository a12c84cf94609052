using System.Text.Json;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// Reads a Hugging Face <c>tokenizer.json</c>. The SentencePiece kind (LLaMA-2, Mistral, TinyLlama: a normalizer
/// <c>Prepend "▁"</c> + <c>Replace " " → "▁"</c> or a Metaspace pre-tokenizer, a character BPE with
/// <c>byte_fallback</c> and <c>fuse_unk</c>, and a decoder) is read here: Microsoft.ML.Tokenizers' <c>BpeTokenizer</c>
/// (2.0.1 and 3.0.0) has no byte fallback. The byte-level kind (LLaMA-3, GPT-2) goes to <see cref="ByteLevelBpeFile"/>,
/// which builds the package's <c>BpeTokenizer</c>.
/// </summary>
internal static class HuggingFaceTokenizerFile
{
    /// <summary>Reads a tokenizer.json file.</summary>
    /// <exception cref="InvalidDataException">The file is malformed or uses a part this reader does not support; the message names it.</exception>
    internal static TokenModel Load(string path)
    {
        using var document = TokenizerJson.ParseObjectFile(path);
        var root = document.RootElement;

        var model = TokenizerJson.GetObject(path, root, "model", "");
        var type = TokenizerJson.GetString(path, model, "type", "model");
        if (type is not null and not "BPE")
        {
            throw new InvalidDataException(
                $"'{path}': model type '{type}' is not supported; only BPE (SentencePiece-style, as in LLaMA-2 and Mistral) is.");
        }

        foreach (var affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (!string.IsNullOrEmpty(TokenizerJson.GetString(path, model, affix, "model")))
            {
                throw new InvalidDataException($"'{path}': 'model.{affix}' is set; BPE with word affixes is not supported.");
            }
        }

        var vocabulary = ReadVocabulary(path, model);
        if (ByteLevelBpeFile.IsByteLevel(root))
        {
            return ByteLevelBpeFile.Load(path, root, model, vocabulary);
        }

        var merges = ReadMerges(path, model, vocabulary);

        var unkToken = TokenizerJson.GetString(path, model, "unk_token", "model");
        int? unkId = null;
        if (unkToken is not null)
        {
            unkId = vocabulary.TryGetValue(unkToken, out var id)
                ? id
                : throw new InvalidDataException($"'{path}': 'model.unk_token' is \"{unkToken}\" but the vocabulary has no such token.");
        }

        var encoder = new BytePairEncoder(
            vocabulary,
            merges,
            byteFallback: TokenizerJson.GetBool(path, model, "byte_fallback", "model") ?? false,
            unkId,
            fuseUnk: TokenizerJson.GetBool(path, model, "fuse_unk", "model") ?? false,
            ignoreMerges: TokenizerJson.GetBool(path, model, "ignore_merges", "model") ?? false);

        var normalizer = Normalizer.Read(path, TokenizerJson.Get(root, "normalizer"), "normalizer");
        var preTokenizer = MetaspacePreTokenizer.Read(path, TokenizerJson.Get(root, "pre_tokenizer"), "pre_tokenizer");
        var decoder = TokenDecoder.Read(path, TokenizerJson.Get(root, "decoder"), "decoder");
        var addedTokens = ReadAddedTokens(path, root);
        var defaults = ReadTemplateDefaults(path, TokenizerJson.Get(root, "post_processor")) with { UnkToken = unkToken };

        return new TokenModel(path, vocabulary, encoder, normalizer, preTokenizer, decoder, addedTokens, defaults);
    }

    private static Dictionary<string, int> ReadVocabulary(string path, JsonElement model)
    {
        var vocab = TokenizerJson.GetObject(path, model, "vocab", "model");
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        var seenIds = new HashSet<int>();
        foreach (var entry in vocab.EnumerateObject())
        {
            var id = TokenizerJson.ReadInt(path, entry.Value, $"model.vocab[\"{entry.Name}\"]");
            if (id < 0)
            {
                throw new InvalidDataException($"'{path}': token \"{entry.Name}\" has id {id}; ids must not be negative.");
            }

            if (id == int.MaxValue)
            {
                throw new InvalidDataException($"'{path}': token \"{entry.Name}\" has id {id}; ids must be below {int.MaxValue}.");
            }

            if (!seenIds.Add(id))
            {
                throw new InvalidDataException($"'{path}': id {id} is given to more than one token (one is \"{entry.Name}\").");
            }

            vocabulary[entry.Name] = id;
        }

        if (vocabulary.Count == 0)
        {
            throw new InvalidDataException($"'{path}': 'model.vocab' is empty.");
        }

        return vocabulary;
    }

    /// <summary>Reads merges in either form: <c>"a b"</c> strings (older files) or <c>["a", "b"]</c> pairs.</summary>
    private static Dictionary<ulong, BytePairEncoder.Merge> ReadMerges(string path, JsonElement model, Dictionary<string, int> vocabulary)
    {
        var list = TokenizerJson.Get(model, "merges");
        var merges = new Dictionary<ulong, BytePairEncoder.Merge>();
        if (list is null)
        {
            return merges;
        }

        TokenizerJson.ExpectKind(path, list.Value, JsonValueKind.Array, "model.merges", "an array");
        var rank = 0;
        foreach (var item in list.Value.EnumerateArray())
        {
            var itemPath = $"model.merges[{rank}]";
            string left, right;
            if (item.ValueKind == JsonValueKind.String)
            {
                var parts = item.GetString()!.Split(' ');
                if (parts.Length != 2)
                {
                    throw new InvalidDataException($"'{path}': '{itemPath}' must be two tokens separated by one space but is {TokenizerJson.Show(item)}.");
                }

                (left, right) = (parts[0], parts[1]);
            }
            else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() == 2
                && item[0].ValueKind == JsonValueKind.String && item[1].ValueKind == JsonValueKind.String)
            {
                (left, right) = (item[0].GetString()!, item[1].GetString()!);
            }
            else
            {
                throw new InvalidDataException($"'{path}': '{itemPath}' must be \"left right\" or [\"left\", \"right\"] but is {TokenizerJson.Show(item)}.");
            }

            var leftId = Lookup(left);
            var rightId = Lookup(right);
            var newId = Lookup(left + right);
            merges[BytePairEncoder.PairKey(leftId, rightId)] = new BytePairEncoder.Merge(rank, newId);
            rank++;

            int Lookup(string token) => vocabulary.TryGetValue(token, out var id)
                ? id
                : throw new InvalidDataException($"'{path}': '{itemPath}' (\"{left}\" + \"{right}\") needs token \"{token}\", which is not in 'model.vocab'.");
        }

        return merges;
    }

    internal static List<AddedToken> ReadAddedTokens(string path, JsonElement root)
    {
        var added = new List<AddedToken>();
        if (TokenizerJson.Get(root, "added_tokens") is not JsonElement list)
        {
            return added;
        }

        TokenizerJson.ExpectKind(path, list, JsonValueKind.Array, "added_tokens", "an array");
        var index = 0;
        foreach (var item in list.EnumerateArray())
        {
            var itemPath = $"added_tokens[{index++}]";
            TokenizerJson.ExpectKind(path, item, JsonValueKind.Object, itemPath, "an object");
            var id = TokenizerJson.GetInt(path, item, "id", itemPath)
                ?? throw new InvalidDataException($"'{path}': '{itemPath}.id' is missing; expected an integer.");
            var content = TokenizerJson.GetString(path, item, "content", itemPath);
            if (id < 0 || string.IsNullOrEmpty(content))
            {
                throw new InvalidDataException($"'{path}': '{itemPath}' must have a non-negative id and non-empty content but has id {id} and content \"{content}\".");
            }

            if (id == int.MaxValue)
            {
                throw new InvalidDataException($"'{path}': '{itemPath}' has id {id}; ids must be below {int.MaxValue}.");
            }

            added.Add(new AddedToken(
                id,
                content,
                Special: TokenizerJson.GetBool(path, item, "special", itemPath) ?? false,
                LStrip: TokenizerJson.GetBool(path, item, "lstrip", itemPath) ?? false,
                RStrip: TokenizerJson.GetBool(path, item, "rstrip", itemPath) ?? false));
        }

        return added;
    }

    /// <summary>
    /// Reads which special tokens a <c>TemplateProcessing</c> post-processor puts around a single sequence
    /// (<c>&lt;s&gt; $A</c> means BOS is added); other post-processors say nothing.
    /// </summary>
    internal static TokenModelDefaults ReadTemplateDefaults(string path, JsonElement? postProcessor)
    {
        var none = new TokenModelDefaults(null, null, null, null, null);
        if (postProcessor is not JsonElement processor || processor.ValueKind != JsonValueKind.Object)
        {
            return none;
        }

        var type = TokenizerJson.GetString(path, processor, "type", "post_processor");
        if (type == "Sequence" && TokenizerJson.Get(processor, "processors") is JsonElement { ValueKind: JsonValueKind.Array } inner)
        {
            foreach (var item in inner.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.Object && item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "TemplateProcessing")
                {
                    return ReadTemplateDefaults(path, item);
                }
            }

            return none;
        }

        if (type != "TemplateProcessing" || TokenizerJson.Get(processor, "single") is not JsonElement { ValueKind: JsonValueKind.Array } single)
        {
            return none;
        }

        var pieces = single.EnumerateArray().ToList();
        var sequenceAt = pieces.FindIndex(p => p.ValueKind == JsonValueKind.Object && p.TryGetProperty("Sequence", out _));
        if (sequenceAt < 0)
        {
            return none;
        }

        var bos = pieces.Take(sequenceAt).Select(SpecialTokenName).FirstOrDefault(n => n is not null);
        var eos = pieces.Skip(sequenceAt + 1).Select(SpecialTokenName).LastOrDefault(n => n is not null);
        return new TokenModelDefaults(bos, eos, null, AddBos: bos is not null, AddEos: eos is not null);

        static string? SpecialTokenName(JsonElement piece)
            => piece.ValueKind == JsonValueKind.Object
                && piece.TryGetProperty("SpecialToken", out var special) && special.ValueKind == JsonValueKind.Object
                && special.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String
                ? id.GetString()
                : null;
    }
}
