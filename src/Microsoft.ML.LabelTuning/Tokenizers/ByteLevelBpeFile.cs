using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// Reads a Hugging Face <c>tokenizer.json</c> of the byte-level BPE kind (LLaMA 3.0-3.3, GPT-2 and others whose
/// pre-tokenizer is a split regex): BPE over the 256 byte characters, a <c>Split</c> regex (or <c>ByteLevel</c> with
/// its GPT-2 regex) as pre-tokenizer, no normalizer. The BPE itself is Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/> with <see cref="BpeOptions.ByteLevel"/>; added and special tokens, BOS/EOS and decoding
/// of added tokens stay with <see cref="LlamaTextTokenizer"/>, as for the SentencePiece kind, so that literal special
/// tokens in plain text are spelled as characters unless the caller asks to match them.
/// </summary>
internal static class ByteLevelBpeFile
{
    /// <summary>The regex transformers' ByteLevel pre-tokenizer uses when <c>use_regex</c> is true (GPT-2's).</summary>
    internal const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>How long one match of the file's split regex may run before Encode gives up with a RegexMatchTimeoutException.</summary>
    private static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Whether <paramref name="root"/>'s pre-tokenizer is byte-level (ByteLevel alone, or a Sequence holding one).</summary>
    internal static bool IsByteLevel(JsonElement root)
    {
        if (TokenizerJson.Get(root, "pre_tokenizer") is not JsonElement { ValueKind: JsonValueKind.Object } pre)
        {
            return false;
        }

        return TypeOf(pre) == "ByteLevel"
            || (TypeOf(pre) == "Sequence" && TokenizerJson.Get(pre, "pretokenizers") is JsonElement { ValueKind: JsonValueKind.Array } steps
                && steps.EnumerateArray().Any(s => TypeOf(s) == "ByteLevel"));
    }

    /// <summary>Reads a byte-level BPE tokenizer.json whose root is <paramref name="root"/>.</summary>
    /// <exception cref="InvalidDataException">The file uses a part this reader does not support; the message names it.</exception>
    internal static TokenModel Load(string path, JsonElement root, JsonElement model, Dictionary<string, int> vocabulary)
    {
        if (TokenizerJson.Get(root, "normalizer") is JsonElement { ValueKind: not JsonValueKind.Null } normalizer)
        {
            throw new InvalidDataException(
                $"'{path}': a byte-level BPE tokenizer with a normalizer ({TypeOf(normalizer) ?? "untyped"}) is not supported; expected 'normalizer': null, as LLaMA-3 and GPT-2 have.");
        }

        foreach (var flag in new[] { "byte_fallback", "fuse_unk" })
        {
            if (TokenizerJson.GetBool(path, model, flag, "model") == true)
            {
                throw new InvalidDataException($"'{path}': 'model.{flag}' is true; a byte-level BPE needs neither (every byte has a token), and it is not supported.");
            }
        }

        var pattern = ReadSplitPattern(path, TokenizerJson.GetObject(path, root, "pre_tokenizer", ""));
        Regex regex;
        try
        {
            regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant, MatchTimeout); // a hostile file's regex cannot hang Encode
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"'{path}': the pre-tokenizer's split regex \"{pattern}\" is not a valid .NET regular expression: {e.Message}", e);
        }

        var merges = ReadMerges(path, model);
        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(vocabulary)
            {
                Merges = merges,
                ByteLevel = true,
                PreTokenizer = new RegexPreTokenizer(regex, specialTokens: null),
            });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or KeyNotFoundException)
        {
            throw new InvalidDataException($"'{path}': Microsoft.ML.Tokenizers could not build a byte-level BPE from 'model.vocab' and 'model.merges': {e.Message}", e);
        }

        var decoder = TokenizerJson.Get(root, "decoder");
        if (decoder is JsonElement { ValueKind: JsonValueKind.Object } d && TypeOf(d) != "ByteLevel")
        {
            throw new InvalidDataException($"'{path}': decoder type '{TypeOf(d) ?? "(none)"}' is not supported for a byte-level BPE; expected 'ByteLevel'.");
        }

        var addedTokens = HuggingFaceTokenizerFile.ReadAddedTokens(path, root);
        var defaults = HuggingFaceTokenizerFile.ReadTemplateDefaults(path, TokenizerJson.Get(root, "post_processor"));

        // A fast tokenizer adds only what its post-processor says: LLaMA-3's early files (post-processor ByteLevel only)
        // add no BOS, later ones have a TemplateProcessing "<|begin_of_text|> $A". tokenizer_config.json still wins.
        defaults = defaults with { AddBos = defaults.AddBos ?? false, AddEos = defaults.AddEos ?? false };
        return new TokenModel(path, vocabulary, bpe, addedTokens, defaults);
    }

    private static List<string> ReadMerges(string path, JsonElement model)
    {
        var merges = new List<string>();
        if (TokenizerJson.Get(model, "merges") is not JsonElement list)
        {
            return merges;
        }

        TokenizerJson.ExpectKind(path, list, JsonValueKind.Array, "model.merges", "an array");
        var index = 0;
        foreach (var item in list.EnumerateArray())
        {
            if (item.ValueKind == JsonValueKind.String && item.GetString()!.Split(' ').Length == 2)
            {
                merges.Add(item.GetString()!);
            }
            else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() == 2
                && item[0].ValueKind == JsonValueKind.String && item[1].ValueKind == JsonValueKind.String
                && !item[0].GetString()!.Contains(' ', StringComparison.Ordinal) && !item[1].GetString()!.Contains(' ', StringComparison.Ordinal))
            {
                merges.Add(item[0].GetString() + " " + item[1].GetString());
            }
            else
            {
                throw new InvalidDataException(
                    $"'{path}': 'model.merges[{index}]' must be \"left right\" or [\"left\", \"right\"] without spaces inside the tokens but is {TokenizerJson.Show(item)}.");
            }

            index++;
        }

        return merges;
    }

    /// <summary>
    /// The split regex of a byte-level pre-tokenizer: <c>Sequence [Split (Isolated), ByteLevel (use_regex: false)]</c>
    /// as LLaMA-3 has, or <c>ByteLevel (use_regex: true, add_prefix_space: false)</c> as GPT-2 has.
    /// </summary>
    private static string ReadSplitPattern(string path, JsonElement pre)
    {
        const string Expected = "expected a Split regex (behavior Isolated, invert false) followed by ByteLevel with use_regex false, as LLaMA-3 has, or ByteLevel alone with use_regex true";
        if (TypeOf(pre) == "ByteLevel")
        {
            CheckNoPrefixSpace(path, pre, "pre_tokenizer");
            if (TokenizerJson.GetBool(path, pre, "use_regex", "pre_tokenizer") == false)
            {
                throw new InvalidDataException($"'{path}': 'pre_tokenizer' is ByteLevel with use_regex false, which splits nothing; {Expected}.");
            }

            return Gpt2Pattern;
        }

        var steps = TokenizerJson.Get(pre, "pretokenizers")!.Value.EnumerateArray().ToList();
        if (steps.Count != 2 || TypeOf(steps[0]) != "Split" || TypeOf(steps[1]) != "ByteLevel")
        {
            throw new InvalidDataException(
                $"'{path}': 'pre_tokenizer' is a Sequence of [{string.Join(", ", steps.Select(s => TypeOf(s) ?? "?"))}]; {Expected}.");
        }

        CheckNoPrefixSpace(path, steps[1], "pre_tokenizer.pretokenizers[1]");
        if (TokenizerJson.GetBool(path, steps[1], "use_regex", "pre_tokenizer.pretokenizers[1]") != false)
        {
            throw new InvalidDataException($"'{path}': 'pre_tokenizer.pretokenizers[1]' is ByteLevel with use_regex true after a Split; {Expected}.");
        }

        var split = steps[0];
        const string SplitPath = "pre_tokenizer.pretokenizers[0]";
        var behavior = TokenizerJson.GetString(path, split, "behavior", SplitPath);
        var invert = TokenizerJson.GetBool(path, split, "invert", SplitPath) ?? false;
        if (behavior != "Isolated" || invert)
        {
            throw new InvalidDataException($"'{path}': '{SplitPath}' has behavior '{behavior}' and invert {invert.ToString().ToLowerInvariant()}; {Expected}.");
        }

        var regex = TokenizerJson.Get(split, "pattern") is JsonElement { ValueKind: JsonValueKind.Object } p
            ? TokenizerJson.GetString(path, p, "Regex", SplitPath + ".pattern")
            : null;
        return string.IsNullOrEmpty(regex)
            ? throw new InvalidDataException($"'{path}': '{SplitPath}.pattern' must be {{\"Regex\": \"...\"}} with a non-empty regex.")
            : regex;
    }

    private static void CheckNoPrefixSpace(string path, JsonElement byteLevel, string at)
    {
        if (TokenizerJson.GetBool(path, byteLevel, "add_prefix_space", at) == true)
        {
            throw new InvalidDataException($"'{path}': '{at}.add_prefix_space' is true; only byte-level tokenizers without a prefix space (LLaMA-3, GPT-2's default) are supported.");
        }
    }

    private static string? TypeOf(JsonElement step)
        => step.ValueKind == JsonValueKind.Object && step.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
            ? type.GetString()
            : null;
}
