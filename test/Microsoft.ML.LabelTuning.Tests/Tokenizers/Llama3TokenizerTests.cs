using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tests.Tokenizers;

/// <summary>
/// LLaMA-3's byte-level BPE tokenizer.json, run through Microsoft.ML.Tokenizers' BpeTokenizer, against reference ids
/// from Hugging Face tokenizers (each also given by two independent JavaScript LLaMA-3 tokenizers; see
/// Fixtures/llama3-tokenizer/README.md).
/// </summary>
[TestClass]
public sealed class Llama3TokenizerTests
{
    private static TempFolder? s_folder;
    private static LlamaTextTokenizer? s_tokenizer;

    private static LlamaTextTokenizer Tokenizer => s_tokenizer ?? throw new InvalidOperationException("ClassInitialize did not run.");

    [ClassInitialize]
    public static void Initialize(TestContext context)
    {
        _ = context;
        s_folder = new TempFolder();
        s_tokenizer = LlamaTextTokenizer.FromModelFolder(TokenizerFixtures.WriteLlama3Folder(s_folder.Path));
    }

    [ClassCleanup]
    public static void Cleanup() => s_folder?.Dispose();

    [TestMethod]
    public void EveryReferenceCaseGivesTheSameIdsAndDecodesBack()
    {
        var cases = TokenizerFixtures.ReadLlama3Cases();
        Assert.IsGreaterThanOrEqualTo(2000, cases.Count, "the fixture holds at least 2,000 texts");
        var failures = new List<string>();
        var watch = Stopwatch.StartNew();
        foreach (var c in cases)
        {
            var ids = Tokenizer.Encode(c.Text, addSpecialTokens: true, parseSpecialTokens: c.ParseSpecial).ToArray();
            if (!ids.SequenceEqual(c.Ids))
            {
                failures.Add($"{TokenizerFixtures.Show(c.Text)}: expected [{string.Join(", ", c.Ids.Take(12))}...] got [{string.Join(", ", ids.Take(12))}...]");
            }
            else if (Tokenizer.Decode(ids, skipSpecialTokens: false) != c.DecodedWithSpecial)
            {
                failures.Add($"{TokenizerFixtures.Show(c.Text)}: decodes to {TokenizerFixtures.Show(Tokenizer.Decode(ids, skipSpecialTokens: false))}");
            }
        }

        Console.WriteLine($"{cases.Count - failures.Count} of {cases.Count} LLaMA-3 cases match ({watch.ElapsedMilliseconds} ms)");
        Assert.IsEmpty(failures, $"{failures.Count} of {cases.Count} cases differ; first: {string.Join("; ", failures.Take(5))}");
    }

    /// <summary>
    /// A known difference: .NET regular expressions match UTF-16 code units, so a character outside the Basic
    /// Multilingual Plane is never <c>\p{L}</c> or <c>\p{N}</c> for the split regex, where Hugging Face's (Rust) regex
    /// sees code points. Mathematical bold digits after a space split differently; astral letters and emoji happen to
    /// split alike. If this test fails, the split agrees with Hugging Face here too: move the case into cases.json.gz.
    /// </summary>
    [TestMethod]
    public void AstralPlaneDigitsAfterASpaceStillSplitDifferentlyFromHuggingFace()
    {
        const string Text = "x \U0001D7CF\U0001D7D0\U0001D7D1\U0001D7D2 y"; // "x 𝟏𝟐𝟑𝟒 y"
        int[] huggingFace = [87, 220, 57352, 253, 237, 57352, 253, 238, 57352, 253, 239, 57352, 253, 240, 379];
        int[] ours = [87, 82350, 253, 237, 57352, 253, 238, 57352, 253, 239, 57352, 253, 240, 379];

        var ids = Tokenizer.Encode(Text, addSpecialTokens: true, parseSpecialTokens: false).ToArray();

        CollectionAssert.AreEqual(ours, ids, $"Hugging Face tokenizers 0.23.2 gives [{string.Join(", ", huggingFace)}]");
        Assert.AreEqual("x \U0001D7CF\U0001D7D0\U0001D7D1\U0001D7D2 y", Tokenizer.Decode(ids), "it still decodes back");
    }

    [TestMethod]
    public void SpecialTokensComeFromTheFolderAndAreMatchedOnlyOnRequest()
    {
        Assert.AreEqual(128000, Tokenizer.BosId);
        Assert.AreEqual(128001, Tokenizer.EosId);
        Assert.AreEqual(128256, Tokenizer.VocabSize);
        Assert.AreEqual(128009, Tokenizer.TokenToId("<|eot_id|>"));
        Assert.AreEqual(128006, Tokenizer.TokenToId("<|start_header_id|>"));
        Assert.IsFalse(Tokenizer.AddBos, "this tokenizer.json's post-processor is ByteLevel only: Hugging Face adds no BOS");

        var plain = Tokenizer.Encode("<|eot_id|>", addSpecialTokens: true, parseSpecialTokens: false);
        var parsed = Tokenizer.Encode("<|eot_id|>", addSpecialTokens: true, parseSpecialTokens: true);

        CollectionAssert.DoesNotContain(plain.ToArray(), 128009, "plain text spells special tokens as characters");
        CollectionAssert.AreEqual(new[] { 128009 }, parsed.ToArray());
        Assert.AreEqual("Hi", Tokenizer.Decode([128000, 13347, 128009]), "skipSpecialTokens drops BOS and <|eot_id|>");
    }

    [TestMethod]
    public void BosFollowsTheTemplateOrTokenizerConfig()
    {
        using var templated = new TempFolder();
        TokenizerFixtures.WriteLlama3Folder(templated.Path, json => json["post_processor"] = JsonNode.Parse("""
            { "type": "Sequence", "processors": [
              { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true },
              { "type": "TemplateProcessing",
                "single": [ { "SpecialToken": { "id": "<|begin_of_text|>", "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } } ],
                "pair": [], "special_tokens": { "<|begin_of_text|>": { "id": "<|begin_of_text|>", "ids": [128000], "tokens": ["<|begin_of_text|>"] } } } ] }
            """));
        var withTemplate = LlamaTextTokenizer.FromModelFolder(templated.Path);

        using var configured = new TempFolder();
        TokenizerFixtures.WriteLlama3Folder(configured.Path);
        configured.Write("tokenizer_config.json", """{ "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": true, "add_eos_token": true }""");
        var withConfig = LlamaTextTokenizer.FromModelFolder(configured.Path);

        CollectionAssert.AreEqual(new[] { 128000, 13347 }, withTemplate.Encode("Hi").ToArray(), "the template adds <|begin_of_text|>");
        CollectionAssert.AreEqual(new[] { 128000, 13347, 128009 }, withConfig.Encode("Hi").ToArray(), "tokenizer_config.json's flags and eos_token win");
    }

    [TestMethod]
    [DataRow("""{ "type": "Sequence", "pretokenizers": [ { "type": "Split", "pattern": { "Regex": "\\s+" }, "behavior": "Removed", "invert": false }, { "type": "ByteLevel", "add_prefix_space": false, "use_regex": false } ] }""", "behavior 'Removed'")]
    [DataRow("""{ "type": "Sequence", "pretokenizers": [ { "type": "Digits" }, { "type": "ByteLevel", "add_prefix_space": false, "use_regex": false } ] }""", "a Sequence of [Digits, ByteLevel]")]
    [DataRow("""{ "type": "Sequence", "pretokenizers": [ { "type": "Split", "pattern": { "Regex": "(" }, "behavior": "Isolated", "invert": false }, { "type": "ByteLevel", "add_prefix_space": false, "use_regex": false } ] }""", "is not a valid .NET regular expression")]
    [DataRow("""{ "type": "ByteLevel", "add_prefix_space": true }""", "'pre_tokenizer.add_prefix_space' is true")]
    public void UnsupportedByteLevelFormsNameTheFileAndTheProblem(string preTokenizer, string expected)
    {
        using var folder = new TempFolder();
        TokenizerFixtures.WriteLlama3Folder(folder.Path, json => json["pre_tokenizer"] = JsonNode.Parse(preTokenizer));

        var error = Assert.ThrowsExactly<InvalidDataException>(() => LlamaTextTokenizer.FromModelFolder(folder.Path));

        StringAssert.Contains(error.Message, Path.Combine(folder.Path, "tokenizer.json"));
        StringAssert.Contains(error.Message, expected);
    }
}
