using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Tests.Methods.Gpta;

[TestClass]
public sealed class TextPrefixTests
{
    private static LlamaTextTokenizer Tokenizer() => LlamaTextTokenizer.FromModelFolder(Path.GetDirectoryName(TinyModels.TokenizerModel)!);

    [TestMethod]
    public void ThePrefixFollowsBosAndPrecedesTheText()
    {
        var tokenizer = Tokenizer();
        var prefix = tokenizer.Encode("Classify:", addSpecialTokens: false);
        var text = tokenizer.Encode("the movie was good", addSpecialTokens: false);
        var ids = new TextEncoder(tokenizer, 64, Truncation.Head, "Classify:").Encode(new TextInput("the movie was good", null), out var truncated);
        Assert.IsFalse(truncated);
        int[] expected = [tokenizer.BosId!.Value, .. prefix, .. text, tokenizer.EosId!.Value];
        CollectionAssert.AreEqual(expected, ids);
        CollectionAssert.AreEqual(new[] { tokenizer.BosId!.Value }.Concat(text).Append(tokenizer.EosId!.Value).ToArray(),
            new TextEncoder(tokenizer, 64, Truncation.Head, null).Encode(new TextInput("the movie was good", null), out _), "no prefix: unchanged encoding");
    }

    [TestMethod]
    [DataRow(Truncation.Head)]
    [DataRow(Truncation.HeadTail)]
    public void TruncationCutsTheTextAndKeepsThePrefix(Truncation truncation)
    {
        var tokenizer = Tokenizer();
        var prefix = tokenizer.Encode("Decide the topic:", addSpecialTokens: false);
        var long_ = string.Join(' ', Enumerable.Repeat("the film was really very good and the plot was great", 10));
        var ids = new TextEncoder(tokenizer, 24, truncation, "Decide the topic:").Encode(new TextInput(long_, null), out var truncated);
        Assert.IsTrue(truncated);
        Assert.AreEqual(24, ids.Length);
        CollectionAssert.AreEqual(prefix.ToArray(), ids.Skip(1).Take(prefix.Count).ToArray());
    }

    [TestMethod]
    public void TokenClassificationRefusesAPrefix()
    {
        var ml = new MLContext(seed: 1);
        var options = new Microsoft.ML.LabelTuning.Methods.LabelSupervised.LabelSupervisedLlamaOptions { ModelPath = "unused", TextColumnName = "Sentence", TextPrefix = "Tag:" };
        var data = ml.Data.LoadFromEnumerable(new[] { new WordRow { Sentence = "a b", Label = ["B-X", "O"] } });
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlamaNer(options).Fit(keyed));
        StringAssert.Contains(error.Message, "TextPrefix");
    }

    private sealed class WordRow
    {
        public string Sentence { get; set; } = string.Empty;

        [Microsoft.ML.Data.VectorType]
        public string[] Label { get; set; } = [];
    }
}
