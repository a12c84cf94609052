using System.Text;
using CsCheck;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Hostile tokenizer files: <c>tokenizer.model</c> (protobuf, edited bytes and ModelProtos built from hostile
/// parts), <c>tokenizer.json</c> and <c>tokenizer_config.json</c> (JSON-level and byte-level edits). Every folder
/// loads or is refused naming the file; a tokenizer that loads then encodes hostile text (lone surrogates, emoji,
/// right-to-left and zero-width characters, long runs) to ids below its <see cref="LlamaTextTokenizer.VocabSize"/>
/// and decodes them back, within the case's time bound.
/// </summary>
[TestClass]
public sealed class TokenizerFuzzTests
{
    /// <summary>Texts every loaded tokenizer must encode and decode.</summary>
    internal static readonly string[] ProbeTexts =
    [
        string.Empty,
        "hello world",
        "  leading, inner   and trailing spaces  ",
        "a\u0000b\tc\nd\re",
        "lone \ud800 high and \udc00 low surrogates\ud800",
        "😀 emoji, مرحبا RTL, עברית, \u200b zero\u200dwidth \u202e override \ufeff",
        "<s> </s> <unk> <pad> <0x41> ▁▁",
        new string('a', 200) + string.Concat(Enumerable.Repeat("ab ", 60)),
    ];

    internal static readonly (string Fault, string MessagePart)[] ModelFaults =
    [
        ("empty file", "is empty; expected a SentencePiece"),
        ("protobuf framing (lengths, varints, wire types, field 0)", "is not a valid SentencePiece model"),
        ("no pieces", "holds no SentencePiece pieces"),
        ("empty piece", "is empty; pieces must not be"),
        ("unknown piece type", "; expected 1 to 6"),
        ("not BPE (model_type)", "only BPE"),
        ("treat_whitespace_as_suffix", "treat_whitespace_as_suffix"),
        ("unsupported normalizer", "normalization rule"),
        ("unk_id not an UNKNOWN piece", "unk_id"),
        ("duplicate piece", "appears twice"),
        ("no BOS/EOS token for add_bos/add_eos", "is set to add"),
    ];

    internal static readonly (string Fault, string MessagePart)[] JsonFaults =
    [
        ("invalid JSON or nesting over 64 levels", "is not valid JSON"),
        ("not an object", "must hold a JSON object"),
        ("invalid UTF-8 or lone surrogate", "not valid Unicode"),
        ("missing key", "is missing"),
        ("unsupported model, normalizer, pre-tokenizer or decoder", "is not supported"),
        ("merge of tokens not in the vocabulary", "which is not in 'model.vocab'"),
        ("bad merge entry", "'model.merges["),
        ("negative or too large id", "ids must"),
        ("duplicate id", "more than one token"),
        ("empty vocabulary", "'model.vocab' is empty"),
        ("unknown unk_token", "has no such token"),
        ("bad added token", "'added_tokens["),
        ("special token not in the vocabulary", "but neither"),
        ("no BOS/EOS token for add_bos/add_eos", "is set to add"),
        ("negative Strip bounds", "must not be negative"),
        ("wrong value type or range", "must be"),
    ];

    internal static readonly (string Fault, string MessagePart)[] ConfigFaults =
    [
        ("invalid JSON or nesting over 64 levels", "is not valid JSON"),
        ("not an object", "must hold a JSON object"),
        ("invalid UTF-8 or lone surrogate", "not valid Unicode"),
        ("special token not in the vocabulary", "but neither"),
        ("no BOS/EOS token for add_bos/add_eos", "is set to add"),
        ("bad added_tokens_decoder key", "keyed by"),
        ("bad model_max_length", "'model_max_length'"),
        ("bad chat_template", "chat_template"),
        ("bad special token value", "an object with \"content\", or null"),
        ("bad token id in config.json", "32-bit integer"),
        ("wrong value type or range", "must be"),
    ];

    public TestContext TestContext { get; set; } = null!;

    private static string Fixture(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "Fixtures", .. parts]);

    [TestMethod]
    [Timeout(300_000)]
    public void HostileTokenizerModelFilesLoadOrAreRefusedNamingTheFile()
    {
        var seed = File.ReadAllBytes(Fixture("tiny-tokenizer", "tokenizer.model"));
        var gen = Gen.Frequency(
            (5, HostileInputs.EditedBytes(seed, maxEdits: 4).Select(b => new FuzzCase("bytes", b))),
            (5, ModelProtos()));
        var stats = Fuzz.Run(
            "tokenizer.model",
            gen,
            (folder, input) => Fuzz.WriteFile(folder, LlamaTextTokenizer.SentencePieceFileName, input.Bytes),
            (folder, _) => ProbeAfterLoading(folder),
            new AllocationBound(PerByte: 100, Constant: 512 * 1024),
            context: TestContext,
            faults: ModelFaults);
        Assert.IsTrue(stats.Outcomes.ContainsKey("accepted") && stats.Outcomes.ContainsKey(nameof(InvalidDataException)), stats.ToString());
        if (stats.Cases >= 10_000)
        {
            stats.AssertReached("protobuf framing (lengths, varints, wire types, field 0)", "empty piece", "unknown piece type", "not BPE (model_type)", "duplicate piece", "unk_id not an UNKNOWN piece", "unsupported normalizer");
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void HostileTokenizerJsonFilesLoadOrAreRefusedNamingTheFile()
    {
        var seed = File.ReadAllText(Fixture("tokenizers", "tiny-fuse-unk", "tokenizer.json"));
        var gen = Gen.Frequency(
            (7, HostileInputs.EditedJson(seed).Select(b => new FuzzCase("json", b))),
            (3, HostileInputs.EditedBytes(Encoding.UTF8.GetBytes(seed)).Select(b => new FuzzCase("bytes", b))));
        var stats = Fuzz.Run(
            "tokenizer.json",
            gen,
            (folder, input) => Fuzz.WriteFile(folder, LlamaTextTokenizer.HuggingFaceFileName, input.Bytes),
            (folder, _) => ProbeAfterLoading(folder),
            new AllocationBound(PerByte: 100, Constant: 512 * 1024),
            context: TestContext,
            faults: JsonFaults);
        Assert.IsTrue(stats.Outcomes.ContainsKey("accepted") && stats.Outcomes.ContainsKey(nameof(InvalidDataException)), stats.ToString());
        if (stats.Cases >= 10_000)
        {
            stats.AssertReached("invalid JSON or nesting over 64 levels", "invalid UTF-8 or lone surrogate", "missing key", "unsupported model, normalizer, pre-tokenizer or decoder", "merge of tokens not in the vocabulary", "bad added token", "wrong value type or range");
        }
    }

    [TestMethod]
    [Timeout(300_000)]
    public void HostileTokenizerConfigFilesLoadOrAreRefusedNamingTheFile()
    {
        var model = File.ReadAllBytes(Fixture("tokenizers", "tiny-fuse-unk", "tokenizer.json"));
        var seed = File.ReadAllText(Fixture("tokenizers", "mistral", "tokenizer_config.json"));
        var specialTokensMap = """{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "unk_token": "<unk>", "additional_special_tokens": ["<sep>"]}""";
        var config = """{"bos_token_id": 1, "eos_token_id": [2, 3], "pad_token_id": null, "vocab_size": 18}""";
        var gen = Gen.Frequency(
            (5, HostileInputs.EditedJson(seed).Select(b => new FuzzCase("json", b))),
            (2, HostileInputs.EditedBytes(Encoding.UTF8.GetBytes(seed)).Select(b => new FuzzCase("bytes", b))),
            (2, HostileInputs.EditedJson(specialTokensMap).Select(b => new FuzzCase("special_tokens_map", b))),
            (1, HostileInputs.EditedJson(config).Select(b => new FuzzCase("config", b))));
        var stats = Fuzz.Run(
            "tokenizer_config.json",
            gen,
            (folder, input) =>
            {
                if (!File.Exists(Path.Combine(folder, LlamaTextTokenizer.HuggingFaceFileName)))
                {
                    Fuzz.WriteFile(folder, LlamaTextTokenizer.HuggingFaceFileName, model);
                }

                // One file of the folder is the hostile one; the others are the seeds.
                var files = new Dictionary<string, string>
                {
                    ["json"] = "tokenizer_config.json",
                    ["bytes"] = "tokenizer_config.json",
                    ["special_tokens_map"] = "special_tokens_map.json",
                    ["config"] = "config.json",
                };
                Fuzz.WriteFile(folder, "tokenizer_config.json", Encoding.UTF8.GetBytes(seed));
                Fuzz.WriteFile(folder, "special_tokens_map.json", Encoding.UTF8.GetBytes(specialTokensMap));
                Fuzz.WriteFile(folder, "config.json", Encoding.UTF8.GetBytes(config));
                return Fuzz.WriteFile(folder, files[input.Kind], input.Bytes);
            },
            (folder, _) => ProbeAfterLoading(folder),
            new AllocationBound(PerByte: 100, Constant: 512 * 1024),
            context: TestContext,
            faults: ConfigFaults);
        Assert.IsTrue(stats.Outcomes.ContainsKey("accepted") && stats.Outcomes.ContainsKey(nameof(InvalidDataException)), stats.ToString());
        if (stats.Cases >= 10_000)
        {
            stats.AssertReached("invalid JSON or nesting over 64 levels", "invalid UTF-8 or lone surrogate", "special token not in the vocabulary", "bad special token value", "bad model_max_length", "bad token id in config.json");
        }
    }

    private static Action ProbeAfterLoading(string folder)
    {
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder);
        return () => Probe(tokenizer);
    }

    /// <summary>Encodes and decodes the probe texts; every id must be below the vocabulary size.</summary>
    internal static void Probe(LlamaTextTokenizer tokenizer)
    {
        foreach (var text in ProbeTexts)
        {
            foreach (var parse in new[] { false, true })
            {
                var ids = tokenizer.Encode(text, addSpecialTokens: true, parseSpecialTokens: parse);
                foreach (var id in ids)
                {
                    if (id < 0 || id >= tokenizer.VocabSize)
                    {
                        throw new AssertFailedException($"'{tokenizer.TokenizerFile}' encoded \"{text[..Math.Min(text.Length, 40)]}\" to id {id}, outside [0, {tokenizer.VocabSize}).");
                    }
                }

                _ = tokenizer.Decode(ids, skipSpecialTokens: parse);
            }
        }

        _ = tokenizer.Decode(Enumerable.Range(0, Math.Min(tokenizer.VocabSize, 600)).Append(int.MaxValue), skipSpecialTokens: false);
    }

    /// <summary>SentencePiece ModelProtos built from hostile parts.</summary>
    private static Gen<FuzzCase> ModelProtos()
    {
        var scores = Gen.Frequency(
            (6, Gen.Int[-20, 0].Select(v => (float)v)),
            (1, Gen.OneOf(float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, -0f, 1e-45f)));
        var text = Gen.Frequency(
            (8, Gen.OneOf("a", "b", "c", "▁", "ab", "▁a", "bc", "abc", "▁ab", "😀", " ", "\u200b", "<s>", "aa", "aaa")),
            (1, Gen.OneOf(string.Empty, "\0", new string('a', 300))));
        var piece = Gen.Select(text, scores, Gen.Frequency((12, Gen.Const(1)), (1, Gen.OneOf(0, 2, 3, 4, 5, 6, 7, -1, int.MaxValue))),
            (t, s, type) => (Text: t, Score: s, Type: type));
        return Gen.Select(
            piece.Array[0, 40],
            Gen.Frequency((10, Gen.Const(2)), (1, Gen.OneOf(1, 3, 4, 99, -1))),
            Gen.Frequency((10, Gen.Const(0)), (1, Gen.OneOf(-1, 1, 3, 400, int.MaxValue, int.MinValue))),
            Gen.Bool,
            Gen.Frequency((10, Gen.Const("identity")), (1, Gen.OneOf(string.Empty, "nmt_nfkc", "nfkc_cf"))),
            Gen.Int[0, 15],
            Gen.Frequency((8, Gen.Const(-1)), (1, Gen.Int[0, 5])),
            (pieces, modelType, unkId, byteFallback, normalizer, flags, junk) =>
            {
                var output = new List<byte>();
                AddPiece(output, "<unk>", 0, 2);
                AddPiece(output, "<s>", 0, 3);
                AddPiece(output, "</s>", 0, 3);
                if (byteFallback)
                {
                    for (var b = 0; b < 256; b += 1 + (flags & 1))
                    {
                        AddPiece(output, $"<0x{b:X2}>", 0, 6);
                    }
                }

                foreach (var (t, s, type) in pieces)
                {
                    AddPiece(output, t, s, type);
                }

                var trainer = new List<byte>();
                HostileInputs.Tag(trainer, 3, 0);
                HostileInputs.Varint(trainer, (ulong)(long)modelType);
                HostileInputs.Tag(trainer, 35, 0);
                HostileInputs.Varint(trainer, byteFallback ? 1UL : 0UL);
                HostileInputs.Tag(trainer, 40, 0);
                HostileInputs.Varint(trainer, (ulong)(long)unkId);
                HostileInputs.Tag(trainer, 24, 0);
                HostileInputs.Varint(trainer, (ulong)((flags >> 3) & 1));
                HostileInputs.Bytes(output, 2, trainer.ToArray());

                var normalizerSpec = new List<byte>();
                HostileInputs.Bytes(normalizerSpec, 1, Encoding.UTF8.GetBytes(normalizer));
                HostileInputs.Tag(normalizerSpec, 3, 0);
                HostileInputs.Varint(normalizerSpec, (ulong)((flags >> 1) & 1));
                HostileInputs.Tag(normalizerSpec, 4, 0);
                HostileInputs.Varint(normalizerSpec, (ulong)((flags >> 2) & 1));
                HostileInputs.Bytes(output, 3, normalizerSpec.ToArray());

                switch (junk)
                {
                    case 0: // a length that runs past the end
                        HostileInputs.Tag(output, 1, 2);
                        HostileInputs.Varint(output, ulong.MaxValue);
                        break;
                    case 1: // a group, which ModelProto never uses
                        HostileInputs.Tag(output, 9, 3);
                        break;
                    case 2: // an unknown field of each wire type
                        HostileInputs.Tag(output, 99, 0);
                        HostileInputs.Varint(output, ulong.MaxValue);
                        HostileInputs.Tag(output, 100, 1);
                        output.AddRange(new byte[8]);
                        HostileInputs.Bytes(output, 101, new byte[3]);
                        HostileInputs.Float(output, 102, 1f);
                        break;
                    case 3: // field number 0
                        output.Add(0x02);
                        break;
                    case 4: // an overlong varint
                        HostileInputs.Tag(output, 99, 0);
                        output.AddRange(Enumerable.Repeat((byte)0xFF, 11));
                        break;
                    case 5: // a piece whose text is not UTF-8
                        var bad = new List<byte>();
                        HostileInputs.Bytes(bad, 1, [0xFF, 0xC0]);
                        HostileInputs.Bytes(output, 1, bad.ToArray());
                        break;
                }

                return new FuzzCase(junk < 0 ? "proto" : "proto-junk", [.. output]);
            });
    }

    private static void AddPiece(List<byte> output, string text, float score, int type)
    {
        var piece = new List<byte>();
        HostileInputs.Bytes(piece, 1, Encoding.UTF8.GetBytes(text));
        HostileInputs.Float(piece, 2, score);
        if (type != 1)
        {
            HostileInputs.Tag(piece, 3, 0);
            HostileInputs.Varint(piece, (ulong)(long)type);
        }

        HostileInputs.Bytes(output, 1, piece.ToArray());
    }
}
