using System.Reflection;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tests.Tokenizers;

/// <summary>
/// Golden tests: every case of every tokenizer fixture, with no code per case.
/// The SentencePiece cases (LLaMA-2, ids from SentencePiece itself) run against tokenizer.model and against the
/// equivalent tokenizer.json; the Hugging Face folders' cases were produced by the Hugging Face tokenizers library.
/// </summary>
[TestClass]
public sealed class TokenizerCaseTests
{
    [ClassCleanup]
    public static void Cleanup() => TokenizerFixtures.DeleteScratch();

    public static IEnumerable<object[]> SentencePieceCases()
    {
        var file = TokenizerFixtures.SentencePieceCasesFile;
        var cases = TokenizerFixtures.ReadCases(file);
        for (var i = 0; i < cases.Count; i++)
        {
            yield return [file, i, cases[i].Text];
        }
    }

    public static IEnumerable<object[]> HuggingFaceCases()
    {
        foreach (var folder in Directory.GetDirectories(TokenizerFixtures.HuggingFaceCasesRoot).Order(StringComparer.Ordinal))
        {
            var file = Path.Combine(folder, "cases.json");
            if (!File.Exists(file))
            {
                continue;
            }

            var cases = TokenizerFixtures.ReadCases(file);
            for (var i = 0; i < cases.Count; i++)
            {
                yield return [file, i, cases[i].Text];
            }
        }
    }

    public static string CaseName(MethodInfo method, object[] data)
        => $"{method.Name}({Path.GetFileName(Path.GetDirectoryName((string)data[0]))}#{data[1]} {TokenizerFixtures.Show((string)data[2])})";

    [TestMethod]
    [DynamicData(nameof(SentencePieceCases), DynamicDataDisplayName = nameof(CaseName))]
    public void TokenizerModelGivesSentencePieceIds(string casesFile, int index, string text)
    {
        var expected = TokenizerFixtures.ReadCases(casesFile)[index];
        var tokenizer = TokenizerFixtures.Load(Path.GetDirectoryName(casesFile)!);
        StringAssert.EndsWith(tokenizer.TokenizerFile, LlamaTextTokenizer.SentencePieceFileName);

        var ids = tokenizer.Encode(text, addSpecialTokens: expected.SpecialTokensAdded);

        CollectionAssert.AreEqual(expected.Ids, ids.ToArray(), $"tokenizer.model on {TokenizerFixtures.Show(text)}: got [{string.Join(", ", ids)}]");
    }

    [TestMethod]
    [DynamicData(nameof(SentencePieceCases), DynamicDataDisplayName = nameof(CaseName))]
    public void TokenizerJsonGivesSentencePieceIds(string casesFile, int index, string text)
    {
        var expected = TokenizerFixtures.ReadCases(casesFile)[index];
        var tokenizer = TokenizerFixtures.Load(JsonFolderFor(casesFile));
        StringAssert.EndsWith(tokenizer.TokenizerFile, LlamaTextTokenizer.HuggingFaceFileName);

        var ids = tokenizer.Encode(text, addSpecialTokens: expected.SpecialTokensAdded);

        CollectionAssert.AreEqual(expected.Ids, ids.ToArray(), $"tokenizer.json on {TokenizerFixtures.Show(text)}: got [{string.Join(", ", ids)}]");
    }

    [TestMethod]
    [DynamicData(nameof(SentencePieceCases), DynamicDataDisplayName = nameof(CaseName))]
    public void TokenizerModelDecodesBackToTheText(string casesFile, int index, string text)
    {
        var expected = TokenizerFixtures.ReadCases(casesFile)[index];
        var tokenizer = TokenizerFixtures.Load(Path.GetDirectoryName(casesFile)!);

        Assert.AreEqual(text, tokenizer.Decode(expected.Ids));
    }

    [TestMethod]
    [DynamicData(nameof(HuggingFaceCases), DynamicDataDisplayName = nameof(CaseName))]
    public void TokenizerJsonMatchesHuggingFace(string casesFile, int index, string text)
    {
        var expected = TokenizerFixtures.ReadCases(casesFile)[index];
        var tokenizer = TokenizerFixtures.Load(TokenizerFixtures.MaterializeCaseFolder(Path.GetDirectoryName(casesFile)!));

        var ids = tokenizer.Encode(text, addSpecialTokens: true, parseSpecialTokens: expected.ParseSpecial);

        CollectionAssert.AreEqual(expected.Ids, ids.ToArray(), $"encode {TokenizerFixtures.Show(text)}: got [{string.Join(", ", ids)}]");
        Assert.AreEqual(expected.Decoded, tokenizer.Decode(expected.Ids, skipSpecialTokens: true), "decode, skipping special tokens");
        Assert.AreEqual(expected.DecodedWithSpecial, tokenizer.Decode(expected.Ids, skipSpecialTokens: false), "decode, keeping special tokens");
    }

    /// <summary>The tokenizer.json beside an overriding cases file, else the fixture's LLaMA-2 tokenizer.json.</summary>
    private static string JsonFolderFor(string casesFile)
    {
        if (Environment.GetEnvironmentVariable(TokenizerFixtures.CasesVariable) is not { Length: > 0 })
        {
            return TokenizerFixtures.LlamaJsonFolder;
        }

        var json = Path.Combine(Path.GetDirectoryName(casesFile)!, LlamaTextTokenizer.HuggingFaceFileName);
        if (!File.Exists(json))
        {
            Assert.Inconclusive($"{TokenizerFixtures.CasesVariable} names '{casesFile}', which has no tokenizer.json beside it.");
        }

        var folder = TokenizerFixtures.ScratchFolder("override-json");
        if (!File.Exists(Path.Combine(folder, LlamaTextTokenizer.HuggingFaceFileName)))
        {
            File.Copy(json, Path.Combine(folder, LlamaTextTokenizer.HuggingFaceFileName), overwrite: true);
        }

        return folder;
    }
}
