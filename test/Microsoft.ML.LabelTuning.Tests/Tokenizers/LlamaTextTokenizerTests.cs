using System.Diagnostics;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tests.Tokenizers;

/// <summary>Special tokens and config files, round trips, odd input, speed, for both tokenizer files.</summary>
[TestClass]
public sealed class LlamaTextTokenizerTests
{
    private const string Model = LlamaTextTokenizer.SentencePieceFileName;
    private const string Json = LlamaTextTokenizer.HuggingFaceFileName;

    public TestContext TestContext { get; set; } = null!;

    [ClassCleanup]
    public static void Cleanup() => TokenizerFixtures.DeleteScratch();

    /// <summary>A fresh folder holding the LLaMA-2 tokenizer file <paramref name="file"/> and the given extra files.</summary>
    private static TempFolder LlamaFolder(string file, params (string Name, string Content)[] extras)
    {
        var folder = new TempFolder();
        folder.CopyFrom(file == Model ? TokenizerFixtures.SentencePieceFolder : TokenizerFixtures.LlamaJsonFolder, file);
        foreach (var (name, content) in extras)
        {
            folder.Write(name, content);
        }

        return folder;
    }

    private static LlamaTextTokenizer Shared(string file)
        => TokenizerFixtures.Load(file == Model ? TokenizerFixtures.SentencePieceFolder : TokenizerFixtures.LlamaJsonFolder);

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void LlamaFolderHasLlamaSpecialTokens(string file)
    {
        var tokenizer = Shared(file);

        Assert.AreEqual(1, tokenizer.BosId);
        Assert.AreEqual(2, tokenizer.EosId);
        Assert.AreEqual(0, tokenizer.UnkId);
        Assert.IsNull(tokenizer.PadId);
        Assert.AreEqual(2, tokenizer.PaddingId, "no pad token: pad with EOS");
        Assert.IsTrue(tokenizer.AddBos);
        Assert.IsFalse(tokenizer.AddEos);
        Assert.AreEqual(32000, tokenizer.VocabSize);
        Assert.IsNull(tokenizer.ChatTemplate);
        Assert.IsNull(tokenizer.ModelMaxLength);
        StringAssert.EndsWith(tokenizer.TokenizerFile, file);
    }

    [TestMethod]
    public void MistralFolderReadsItsTokenizerConfig()
    {
        var folder = TokenizerFixtures.MaterializeCaseFolder(Path.Combine(TokenizerFixtures.HuggingFaceCasesRoot, "mistral"));
        var tokenizer = TokenizerFixtures.Load(folder);

        Assert.AreEqual(1, tokenizer.BosId);
        Assert.AreEqual(2, tokenizer.EosId);
        Assert.IsNull(tokenizer.PadId, "tokenizer_config.json says pad_token: null");
        Assert.AreEqual(2, tokenizer.PaddingId);
        Assert.IsNull(tokenizer.ModelMaxLength, "model_max_length 1e30 means no limit");
        Assert.AreEqual(32000, tokenizer.VocabSize);
        CollectionAssert.AreEqual(new[] { 1, 22557, 1526, 28808 }, tokenizer.Encode("Hello world!").ToArray());
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void AddBosFalseAndAddEosTrueChangeTheSpecialTokens(string file)
    {
        using var folder = LlamaFolder(file, ("tokenizer_config.json", """{ "add_bos_token": false, "add_eos_token": true }"""));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.IsFalse(tokenizer.AddBos);
        Assert.IsTrue(tokenizer.AddEos);
        CollectionAssert.AreEqual(new[] { 15043, 3186, 29991, 2 }, tokenizer.Encode("Hello world!").ToArray());
        CollectionAssert.AreEqual(new[] { 15043, 3186, 29991 }, tokenizer.Encode("Hello world!", addSpecialTokens: false).ToArray());
        CollectionAssert.AreEqual(new[] { 2 }, tokenizer.Encode("").ToArray());
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void MissingPadTokenPadsWithEos(string file)
    {
        using var folder = LlamaFolder(file, ("tokenizer_config.json", """{ "bos_token": "<s>", "eos_token": "</s>", "pad_token": null }"""));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.IsNull(tokenizer.PadId);
        Assert.AreEqual(tokenizer.EosId, tokenizer.PaddingId);
        Assert.AreEqual(2, tokenizer.PaddingId);
    }

    [TestMethod]
    public void TokensWrittenAsObjectsAreResolved()
    {
        using var folder = LlamaFolder(Model, ("tokenizer_config.json",
            """{ "pad_token": { "content": "<unk>", "lstrip": false, "special": true }, "eos_token": { "__type": "AddedToken", "content": "</s>" } }"""));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.AreEqual(0, tokenizer.PadId);
        Assert.AreEqual(0, tokenizer.PaddingId);
        Assert.AreEqual(2, tokenizer.EosId);
    }

    [TestMethod]
    public void SpecialTokensMapWinsOverTokenizerConfig()
    {
        using var folder = LlamaFolder(Json,
            ("tokenizer_config.json", """{ "pad_token": "<s>" }"""),
            ("special_tokens_map.json", """{ "pad_token": { "content": "</s>" } }"""));

        Assert.AreEqual(2, LlamaTextTokenizer.FromModelFolder(folder.Path).PadId);
    }

    [TestMethod]
    public void ConfigJsonIdsAreTheFallback()
    {
        using var folder = LlamaFolder(Json, ("config.json", """{ "bos_token_id": 1, "eos_token_id": [7, 2], "pad_token_id": 5, "hidden_size": 64 }"""));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.AreEqual(1, tokenizer.BosId);
        Assert.AreEqual(7, tokenizer.EosId, "the first of config.json's EOS ids");
        Assert.AreEqual(5, tokenizer.PadId);
        Assert.AreEqual(5, tokenizer.PaddingId);
    }

    [TestMethod]
    public void NegativeConfigPadIdMeansNone()
    {
        using var folder = LlamaFolder(Model, ("config.json", """{ "pad_token_id": -1 }"""));

        Assert.IsNull(LlamaTextTokenizer.FromModelFolder(folder.Path).PadId);
    }

    [TestMethod]
    public void TokenizerWithoutPadOrEosPadsWithZero()
    {
        using var folder = new TempFolder();
        folder.Write(Json, """{ "model": { "type": "BPE", "vocab": { "a": 0, "b": 1, "ab": 2 }, "merges": ["a b"] } }""");
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.IsNull(tokenizer.BosId);
        Assert.IsNull(tokenizer.EosId);
        Assert.IsNull(tokenizer.UnkId);
        Assert.AreEqual(0, tokenizer.PaddingId);
        Assert.IsFalse(tokenizer.AddBos);
        Assert.AreEqual(3, tokenizer.VocabSize);
        CollectionAssert.AreEqual(new[] { 2, 0 }, tokenizer.Encode("aba").ToArray());
        CollectionAssert.AreEqual(new[] { 2 }, tokenizer.Encode("a?b").ToArray(), "no byte fallback and no unknown token: '?' is dropped, as Hugging Face does");
        Assert.AreEqual("ab a", tokenizer.Decode([2, 0]), "no decoder: tokens are joined by spaces, as Hugging Face does");
    }

    [TestMethod]
    public void ModelMaxLengthAndChatTemplateAreKept()
    {
        using var folder = LlamaFolder(Model, ("tokenizer_config.json", """{ "model_max_length": 4096, "chat_template": "{{ bos_token }}{{ messages[0]['content'] }}" }"""));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.AreEqual(4096, tokenizer.ModelMaxLength);
        Assert.AreEqual("{{ bos_token }}{{ messages[0]['content'] }}", tokenizer.ChatTemplate);
    }

    [TestMethod]
    public void NamedChatTemplatesKeepTheDefault()
    {
        using var folder = LlamaFolder(Model, ("tokenizer_config.json",
            """{ "chat_template": [ { "name": "tool_use", "template": "T" }, { "name": "default", "template": "D" } ] }"""));

        Assert.AreEqual("D", LlamaTextTokenizer.FromModelFolder(folder.Path).ChatTemplate);
    }

    [TestMethod]
    public void ChatTemplateFileIsReadWhenTheConfigHasNone()
    {
        using var folder = LlamaFolder(Json, ("chat_template.jinja", "{% for m in messages %}{{ m['content'] }}{% endfor %}"));

        Assert.AreEqual("{% for m in messages %}{{ m['content'] }}{% endfor %}", LlamaTextTokenizer.FromModelFolder(folder.Path).ChatTemplate);
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void NullAndEmptyTextEncodeToTheSpecialTokensOnly(string file)
    {
        var tokenizer = Shared(file);

        CollectionAssert.AreEqual(new[] { 1 }, tokenizer.Encode(null).ToArray());
        CollectionAssert.AreEqual(new[] { 1 }, tokenizer.Encode("").ToArray());
        Assert.AreEqual(0, tokenizer.Encode("", addSpecialTokens: false).Count);
        Assert.AreEqual(0, tokenizer.Encode(null, addSpecialTokens: false, parseSpecialTokens: true).Count);
        Assert.AreEqual(1, tokenizer.CountTokens(null));
        CollectionAssert.AreEqual(new[] { 1, 1 }, tokenizer.EncodePair(null, "").ToArray());
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void EncodePairFollowsTheLlamaLayout(string file)
    {
        var tokenizer = Shared(file);

        var pair = tokenizer.EncodePair("Hello world!", "grabbed");

        CollectionAssert.AreEqual(new[] { 1, 15043, 3186, 29991, 1, 2646, 1327, 287 }, pair.ToArray());
    }

    [TestMethod]
    public void EncodePairAddsEosAfterEachPartWhenConfigured()
    {
        using var folder = LlamaFolder(Model, ("tokenizer_config.json", """{ "add_eos_token": true }"""));

        var pair = LlamaTextTokenizer.FromModelFolder(folder.Path).EncodePair("x", "x");

        CollectionAssert.AreEqual(new[] { 1, 921, 2, 1, 921, 2 }, pair.ToArray());
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void CountTokensMatchesEncode(string file)
    {
        var tokenizer = Shared(file);

        foreach (var text in new[] { "x", "The quick brown fox jumps over the lazy dog.", "🦙Ꙋ", "  " })
        {
            Assert.AreEqual(tokenizer.Encode(text).Count, tokenizer.CountTokens(text), text);
        }
    }

    public static IEnumerable<object[]> RoundTripTexts()
    {
        string[] texts =
        [
            "Plain ASCII, with punctuation: (a+b)*c = 42; done.",
            "Ünïcödé façade naïve café — ½ ≠ ∞",
            "日本語のテキストです。 中文 한국어 مرحبا بالعالم עברית",
            "Emoji 🦙 👍🏽 👨‍👩‍👧 🇺🇳 and a lone ☃",
            "first line\nsecond line\r\nthird\n\n\nlast\n",
            "\ttabs\tand  double  spaces   and trailing   ",
            "   leading spaces",
            "<s> looks special but is text </s>",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝓂𝒶𝓉𝒽 (astral plane)",
        ];
        foreach (var file in new[] { Model, Json })
        {
            foreach (var text in texts)
            {
                yield return [file, text];
            }
        }
    }

    [TestMethod]
    [DynamicData(nameof(RoundTripTexts))]
    public void DecodeGivesBackTheText(string file, string text)
    {
        var tokenizer = Shared(file);

        Assert.AreEqual(text, tokenizer.Decode(tokenizer.Encode(text)));
        Assert.AreEqual(text, tokenizer.Decode(tokenizer.Encode(text, addSpecialTokens: false)));
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void DecodeKeepsSpecialTokensOnlyWhenAsked(string file)
    {
        var tokenizer = Shared(file);

        Assert.AreEqual("Hello", tokenizer.Decode([1, 15043, 2]));
        Assert.AreEqual("<s> Hello</s>", tokenizer.Decode([1, 15043, 2], skipSpecialTokens: false));
        Assert.AreEqual("Hello", tokenizer.Decode([0, 15043], skipSpecialTokens: true), "UNK is special");
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void SpecialTokensInTextAreCharactersUnlessParsed(string file)
    {
        var tokenizer = Shared(file);

        var plain = tokenizer.Encode("<s>Hi</s>");
        var parsed = tokenizer.Encode("<s>Hi</s>", addSpecialTokens: true, parseSpecialTokens: true);

        CollectionAssert.AreEqual(new[] { 1, 529, 29879, 29958, 18567, 829, 29879, 29958 }, plain.ToArray());
        CollectionAssert.AreEqual(new[] { 1, 1, 6324, 2 }, parsed.ToArray(), "Hugging Face's ids");
    }

    [TestMethod]
    public void BothTokenizerFilesAgreeWhenParsingSpecialTokens()
    {
        var model = Shared(Model);
        var json = Shared(Json);

        foreach (var text in new[] { "<s>", "a</s>b", "<unk><unk>", " <s> x ", "</s></s>x", "<s<s>>" })
        {
            CollectionAssert.AreEqual(json.Encode(text, true, true).ToArray(), model.Encode(text, true, true).ToArray(), text);
        }
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void AddedTokensFromTheConfigAreMatchedAndDecoded(string file)
    {
        using var folder = LlamaFolder(file, ("tokenizer_config.json", """
            {
              "added_tokens_decoder": {
                "32000": { "content": "<sep>", "special": false },
                "32001": { "content": "<|im_start|>", "special": true, "lstrip": false, "rstrip": false },
                "32002": { "content": "<pad>", "special": true }
              },
              "pad_token": "<pad>"
            }
            """));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        Assert.AreEqual(32003, tokenizer.VocabSize);
        Assert.AreEqual(32002, tokenizer.PadId);
        Assert.AreEqual(32002, tokenizer.PaddingId);
        Assert.AreEqual(32000, tokenizer.TokenToId("<sep>"));
        Assert.AreEqual("<|im_start|>", tokenizer.IdToToken(32001));
        var withSeparator = tokenizer.Encode("a<sep>b");
        CollectionAssert.Contains(withSeparator.ToArray(), 32000, "non-special added tokens are always matched");
        Assert.AreEqual("a<sep> b", tokenizer.Decode(withSeparator), "text after an added token gets its own dummy prefix (legacy LLaMA)");
        CollectionAssert.DoesNotContain(tokenizer.Encode("<|im_start|>user").ToArray(), 32001);
        var parsed = tokenizer.Encode("<|im_start|>user<pad><pad>", addSpecialTokens: false, parseSpecialTokens: true);
        CollectionAssert.AreEqual(new[] { 32001, 1404, 32002, 32002 }, parsed.ToArray());
        Assert.AreEqual("user", tokenizer.Decode(parsed), "Hugging Face's decode");
        Assert.AreEqual("<|im_start|> user<pad><pad>", tokenizer.Decode(parsed, skipSpecialTokens: false), "Hugging Face's decode");
    }

    [TestMethod]
    public void AdditionalSpecialTokensAreSpecial()
    {
        using var folder = LlamaFolder(Json,
            ("tokenizer_config.json", """{ "added_tokens_decoder": { "32000": { "content": "[CLS]", "special": false } } }"""),
            ("special_tokens_map.json", """{ "additional_special_tokens": [ "[CLS]" ] }"""));
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);

        var plain = tokenizer.Encode("[CLS] hi");
        var parsed = tokenizer.Encode("[CLS] hi", addSpecialTokens: true, parseSpecialTokens: true);

        CollectionAssert.AreEqual(new[] { 1, 518, 6154, 29903, 29962, 7251 }, plain.ToArray(), "Hugging Face's ids for the text");
        CollectionAssert.AreEqual(new[] { 1, 32000, 29871, 7251 }, parsed.ToArray());
        Assert.AreEqual(" hi", tokenizer.Decode(parsed));
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void TokensAndIdsMapBothWays(string file)
    {
        var tokenizer = Shared(file);

        Assert.AreEqual(15043, tokenizer.TokenToId("▁Hello"));
        Assert.AreEqual("<0x0A>", tokenizer.IdToToken(13));
        Assert.AreEqual("<s>", tokenizer.IdToToken(1));
        Assert.IsNull(tokenizer.TokenToId("▁not-a-token-at-all"));
        Assert.IsNull(tokenizer.IdToToken(32000));
        Assert.IsNull(tokenizer.IdToToken(-5));
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void DecodeSkipsUnknownIdsAndRejectsNegativeOnes(string file)
    {
        var tokenizer = Shared(file);

        Assert.AreEqual("Hello", tokenizer.Decode([15043, 40000]));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([15043, -1]));
        StringAssert.Contains(error.Message, "negative");
        Assert.Throws<ArgumentNullException>(() => tokenizer.Decode(null!));
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void OddTextNeverCrashes(string file)
    {
        var tokenizer = Shared(file);
        string[] texts = ["\uD800 lone high surrogate", "lone low \uDC00", "\0\0\0", new string(' ', 1000), "\u2581\u2581 meta spaces", "\uFEFFbom", "a\u0301\u0301\u0301"];

        foreach (var text in texts)
        {
            var ids = tokenizer.Encode(text);
            Assert.IsTrue(ids.Count > 1 && ids.All(id => id >= 0 && id < tokenizer.VocabSize), TokenizerFixtures.Show(text));
            var decoded = tokenizer.Decode(ids);
            // Decoding gives the text back, except that a lone surrogate reads as U+FFFD and SentencePiece's meta space as a space.
            var wellFormed = string.Concat(text.EnumerateRunes().Select(r => r.ToString())).Replace('\u2581', ' ');
            Assert.AreEqual(wellFormed, decoded, $"{TokenizerFixtures.Show(text)} decodes to {TokenizerFixtures.Show(decoded)}");
        }

        var longText = string.Concat(Enumerable.Repeat("Lorem ipsum dolor sit amet, 🦙 consectetur.\n", 4000));
        var longIds = tokenizer.Encode(longText);
        Assert.AreEqual(longText, tokenizer.Decode(longIds));
    }

    [TestMethod]
    public void ConcurrentEncodingGivesTheSameIds()
    {
        var tokenizer = Shared(Json);
        var texts = Enumerable.Range(0, 400).Select(i => $"Sample {i}: {new string('x', i % 37)} 🦙 done").ToArray();
        var expected = texts.Select(t => tokenizer.Encode(t).ToArray()).ToArray();

        var actual = new int[texts.Length][];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => actual[i] = tokenizer.Encode(texts[i]).ToArray());

        for (var i = 0; i < texts.Length; i++)
        {
            CollectionAssert.AreEqual(expected[i], actual[i], texts[i]);
        }
    }

    [TestMethod]
    [DataRow(Model)]
    [DataRow(Json)]
    public void LoadingTakesWellUnderASecond(string file)
    {
        using var folder = LlamaFolder(file);
        var watch = Stopwatch.StartNew();
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder.Path);
        watch.Stop();

        TestContext.WriteLine($"{file}: loaded in {watch.Elapsed.TotalMilliseconds:F1} ms");
        Assert.AreEqual(32000, tokenizer.VocabSize);
        Assert.IsTrue(watch.Elapsed < TimeSpan.FromSeconds(3), $"loading took {watch.Elapsed.TotalMilliseconds:F0} ms");
    }
}
