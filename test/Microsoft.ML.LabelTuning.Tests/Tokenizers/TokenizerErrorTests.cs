using Microsoft.ML.LabelTuning.Tokenizers;


namespace Microsoft.ML.LabelTuning.Tests.Tokenizers;

/// <summary>Bad folders and bad files give errors that name the file, what was expected and what was found.</summary>
[TestClass]
public sealed class TokenizerErrorTests
{
    private const string TinyModel = """{ "type": "BPE", "vocab": { "<unk>": 0, "a": 1, "b": 2, "ab": 3 }, "merges": ["a b"], "unk_token": "<unk>" }""";

    private static T LoadFails<T>(TempFolder folder)
        where T : Exception
        => Assert.Throws<T>(() => LlamaTextTokenizer.FromModelFolder(folder.Path));

    [TestMethod]
    public void MissingFolderIsNamed()
    {
        var missing = Path.Combine(Path.GetTempPath(), "lt-no-such-folder-" + Guid.NewGuid().ToString("N"));

        var error = Assert.Throws<DirectoryNotFoundException>(() => LlamaTextTokenizer.FromModelFolder(missing));

        StringAssert.Contains(error.Message, missing);
    }

    [TestMethod]
    public void BlankFolderArgumentIsRejected()
    {
        Assert.Throws<ArgumentException>(() => LlamaTextTokenizer.FromModelFolder(""));
        Assert.Throws<ArgumentException>(() => LlamaTextTokenizer.FromModelFolder(" "));
        Assert.Throws<ArgumentNullException>(() => LlamaTextTokenizer.FromModelFolder(null!));
    }

    [TestMethod]
    public void FolderWithoutTokenizerNamesTheFolderAndTheFilesLookedFor()
    {
        using var folder = new TempFolder();
        folder.Write("config.json", "{}");

        var error = LoadFails<FileNotFoundException>(folder);

        StringAssert.Contains(error.Message, folder.Path);
        StringAssert.Contains(error.Message, "tokenizer.model");
        StringAssert.Contains(error.Message, "tokenizer.json");
    }

    [TestMethod]
    [DataRow("{", "not valid JSON")]
    [DataRow("", "not valid JSON")]
    [DataRow("[1, 2]", "must hold a JSON object but holds an array")]
    [DataRow("""{ "version": "1.0" }""", "'model' is missing")]
    [DataRow("""{ "model": [] }""", "'model' must be an object")]
    [DataRow("""{ "model": { "type": "Unigram", "vocab": [["a", 0.0]] } }""", "model type 'Unigram' is not supported")]
    [DataRow("""{ "model": { "type": "WordPiece", "vocab": { "a": 0 } } }""", "model type 'WordPiece'")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": "zero" } } }""", "'model.vocab[\"a\"]' must be a 32-bit integer but is \"zero\"")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": -1 } } }""", "ids must not be negative")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": 0, "b": 0 } } }""", "id 0 is given to more than one token")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": {} } }""", "'model.vocab' is empty")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": 0, "b": 1 }, "merges": ["a b"] } }""", "'model.merges[0]' (\"a\" + \"b\") needs token \"ab\"")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": 0 }, "merges": ["a"] } }""", "'model.merges[0]' must be two tokens")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": 0 }, "merges": [[1, 2]] } }""", "'model.merges[0]' must be \"left right\"")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": 0 }, "unk_token": "<unk>" } }""", "'model.unk_token' is \"<unk>\" but the vocabulary has no such token")]
    [DataRow("""{ "model": { "type": "BPE", "vocab": { "a": 0 }, "continuing_subword_prefix": "##" } }""", "continuing_subword_prefix")]
    [DataRow("""{ "pre_tokenizer": { "type": "ByteLevel", "add_prefix_space": true }, "model": TINY }""", "'pre_tokenizer.add_prefix_space' is true")]
    [DataRow("""{ "pre_tokenizer": { "type": "Whitespace" }, "model": TINY }""", "pre-tokenizer type 'Whitespace' at 'pre_tokenizer' is not supported")]
    [DataRow("""{ "pre_tokenizer": { "type": "Metaspace", "prepend_scheme": "sometimes" }, "model": TINY }""", "'pre_tokenizer.prepend_scheme' must be \"always\", \"first\" or \"never\"")]
    [DataRow("""{ "normalizer": { "type": "BertNormalizer" }, "model": TINY }""", "normalizer type 'BertNormalizer' at 'normalizer' is not supported")]
    [DataRow("""{ "normalizer": { "type": "Replace", "pattern": { "Regex": "\\s+" }, "content": " " }, "model": TINY }""", "regular-expression patterns are not supported")]
    [DataRow("""{ "normalizer": { "type": "Sequence", "normalizers": [ null ] }, "model": TINY }""", "'normalizer.normalizers[0]' is null")]
    [DataRow("""{ "decoder": { "type": "ByteLevel" }, "model": TINY }""", "decoder type 'ByteLevel' at 'decoder' is not supported")]
    [DataRow("""{ "decoder": { "type": "Strip", "content": "ab", "start": 1, "stop": 0 }, "model": TINY }""", "'decoder.content' must be one character")]
    [DataRow("""{ "added_tokens": [ { "id": -3, "content": "<x>" } ], "model": TINY }""", "'added_tokens[0]' must have a non-negative id")]
    [DataRow("""{ "added_tokens": { "id": 3 }, "model": TINY }""", "'added_tokens' must be an array but is an object")]
    public void MalformedTokenizerJsonNamesTheFileAndTheProblem(string content, string expected)
    {
        using var folder = new TempFolder();
        var file = folder.Write("tokenizer.json", content.Replace("TINY", TinyModel, StringComparison.Ordinal));

        var error = LoadFails<InvalidDataException>(folder);

        StringAssert.Contains(error.Message, file);
        StringAssert.Contains(error.Message, expected);
    }

    [TestMethod]
    public void DeeplyNestedJsonIsRejectedNotRecursedInto()
    {
        using var folder = new TempFolder();
        var file = folder.Write("tokenizer.json", "{ \"model\": " + new string('[', 100_000) + new string(']', 100_000) + " }");

        var error = LoadFails<InvalidDataException>(folder);

        StringAssert.Contains(error.Message, file);
        StringAssert.Contains(error.Message, "64 levels");
    }

    [TestMethod]
    [DataRow("tokenizer_config.json", "{ not json", "not valid JSON")]
    [DataRow("tokenizer_config.json", """{ "add_bos_token": "yes" }""", "'add_bos_token' must be true or false but is a string")]
    [DataRow("tokenizer_config.json", """{ "bos_token": 5 }""", "'bos_token' must be a string, an object with \"content\", or null, but is 5")]
    [DataRow("tokenizer_config.json", """{ "eos_token": "<nope>" }""", "names eos_token \"<nope>\" but neither")]
    [DataRow("tokenizer_config.json", """{ "model_max_length": -3 }""", "'model_max_length' must be a positive integer but is -3")]
    [DataRow("tokenizer_config.json", """{ "chat_template": 7 }""", "'chat_template' must be a string or a list")]
    [DataRow("tokenizer_config.json", """{ "added_tokens_decoder": { "abc": { "content": "x" } } }""", "keyed by a non-negative token id but the key is \"abc\"")]
    [DataRow("tokenizer_config.json", """{ "added_tokens_decoder": { "40000": { "content": "" } } }""", "'added_tokens_decoder[\"40000\"].content' must be a non-empty string")]
    [DataRow("special_tokens_map.json", "[]", "must hold a JSON object but holds an array")]
    [DataRow("special_tokens_map.json", """{ "additional_special_tokens": [ "<missing>" ] }""", "names additional_special_tokens[0] \"<missing>\"")]
    [DataRow("special_tokens_map.json", """{ "additional_special_tokens": "<s>" }""", "'additional_special_tokens' must be an array")]
    [DataRow("config.json", """{ "bos_token_id": "one" }""", "'bos_token_id' must be a 32-bit integer but is \"one\"")]
    [DataRow("config.json", """{ "eos_token_id": [2.5] }""", "'eos_token_id' must be a 32-bit integer but is 2.5")]
    public void MalformedConfigFilesNameTheFileAndTheProblem(string name, string content, string expected)
    {
        using var folder = new TempFolder();
        folder.CopyFrom(TokenizerFixtures.SentencePieceFolder, LlamaTextTokenizer.SentencePieceFileName);
        var file = folder.Write(name, content);

        var error = LoadFails<InvalidDataException>(folder);

        StringAssert.Contains(error.Message, file);
        StringAssert.Contains(error.Message, expected);
    }

    [TestMethod]
    public void AddBosWithoutABosTokenIsAnError()
    {
        using var folder = new TempFolder();
        folder.Write("tokenizer.json", "{ \"model\": " + TinyModel + " }");
        folder.Write("tokenizer_config.json", """{ "add_bos_token": true }""");

        var error = LoadFails<InvalidDataException>(folder);

        StringAssert.Contains(error.Message, "BOS");
        StringAssert.Contains(error.Message, "tokenizer.json");
    }

    public static IEnumerable<object[]> BrokenModels()
    {
        var real = File.ReadAllBytes(Path.Combine(TokenizerFixtures.SentencePieceFolder, LlamaTextTokenizer.SentencePieceFileName));
        var random = new byte[4096];
        new Random(7).NextBytes(random);
        yield return ["empty", Array.Empty<byte>(), "is empty"];
        yield return ["truncated", real[..1000], "is not a valid SentencePiece model"];
        yield return ["random", random, "SentencePiece"];
        yield return ["json", "{\"model\": {}}"u8.ToArray(), "SentencePiece"];
        // One piece and a trainer spec with model_type UNIGRAM (field 3 = 1): well-formed, but not BPE.
        yield return ["unigram", new byte[] { 0x0A, 0x07, 0x0A, 0x05, (byte)'<', (byte)'u', (byte)'n', (byte)'k', (byte)'>', 0x12, 0x02, 0x18, 0x01 }, "UNIGRAM model (model_type 1)"];
        // A BPE model whose unk_id names no UNKNOWN piece.
        yield return ["no-unk", new byte[] { 0x0A, 0x03, 0x0A, 0x01, (byte)'a', 0x12, 0x02, 0x18, 0x02 }, "unk_id 0 does not name an UNKNOWN piece"];
    }

    public static string BrokenModelName(System.Reflection.MethodInfo method, object[] data) => $"{method.Name}({data[0]})";

    [TestMethod]
    [DynamicData(nameof(BrokenModels), DynamicDataDisplayName = nameof(BrokenModelName))]
    public void MalformedTokenizerModelNamesTheFile(string label, byte[] content, string expected)
    {
        using var folder = new TempFolder();
        var file = Path.Combine(folder.Path, LlamaTextTokenizer.SentencePieceFileName);
        File.WriteAllBytes(file, content);

        var error = LoadFails<InvalidDataException>(folder);

        StringAssert.Contains(error.Message, file, label);
        StringAssert.Contains(error.Message, expected, label);
    }

    /// <summary>
    /// Why tokenizer.model is not encoded by Microsoft.ML.Tokenizers: its LlamaTokenizer (2.0.1 and 3.0.0) breaks equal-score merges
    /// rightmost first, where SentencePiece goes leftmost first. If this test fails, ML.NET has fixed it and
    /// SentencePieceModelFile could hand encoding back to it.
    /// </summary>
    [TestMethod]
    public void MicrosoftMLLlamaTokenizerStillDiffersFromSentencePieceOnTies()
    {
        using var stream = File.OpenRead(Path.Combine(TokenizerFixtures.SentencePieceFolder, LlamaTextTokenizer.SentencePieceFileName));
        var mlnet = Microsoft.ML.Tokenizers.LlamaTokenizer.Create(stream, addBeginOfSentence: true, addEndOfSentence: false);
        var text = new string(' ', 17) + "seventeen spaces";

        var ours = TokenizerFixtures.Load(TokenizerFixtures.SentencePieceFolder).Encode(text);

        CollectionAssert.AreEqual(new[] { 1, 462, 29871, 16741, 27294, 8162 }, ours.ToArray(), "SentencePiece's ids (cases.json)");
        CollectionAssert.AreEqual(new[] { 1, 29871, 462, 16741, 27294, 8162 }, mlnet.EncodeToIds(text).ToArray(), "ML.NET's ids");
    }
}
