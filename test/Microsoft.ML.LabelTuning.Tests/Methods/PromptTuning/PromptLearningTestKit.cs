using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Methods.PromptTuning;

/// <summary>What the prompt-learning tests share: the toy data views, fresh-process scoring, and padding checks.</summary>
internal static class PromptLearningTestKit
{
    private static readonly string[] _filler = "the a this that movie film it was is really very and".Split(' ');
    private static readonly string[][] _classWords =
    [
        "good great excellent wonderful superb brilliant".Split(' '),
        "bad awful terrible boring dreadful poor".Split(' '),
        "sport game team player match goal".Split(' '),
    ];

    /// <summary>
    /// ToyData's three classes with a stronger signal per text (two or three class words among one to three fillers),
    /// so that a frozen tiny random model with only a prompt and a head learns it in a few dozen steps.
    /// </summary>
    public static List<ToyData.Row> Rows(int count, int seed)
    {
        var random = new Random(seed);
        var rows = new List<ToyData.Row>();
        for (var i = 0; i < count; i++)
        {
            var label = i % 3;
            var words = Enumerable.Range(0, random.Next(1, 4)).Select(_ => _filler[random.Next(_filler.Length)]).ToList();
            for (var k = random.Next(2, 4); k > 0; k--)
            {
                words.Insert(random.Next(words.Count + 1), _classWords[label][random.Next(_classWords[label].Length)]);
            }

            rows.Add(new ToyData.Row { Text = string.Join(' ', words), Label = ToyData.ClassNames[label] });
        }

        return rows;
    }

    public static List<ToyData.BinaryRow> BinaryRows(int count, int seed)
        => Rows(count * 3 / 2, seed).Where(r => r.Label != "sport").Take(count)
            .Select(r => new ToyData.BinaryRow { Text = r.Text, Label = r.Label == "positive" }).ToList();

    public static (MLContext Ml, IDataView Train, IDataView Test, IEstimator<ITransformer> MapLabel) ToyViews(int train = 96, int test = 60)
    {
        var ml = new MLContext(seed: 1);
        var trainView = ml.Data.LoadFromEnumerable(Rows(train, seed: 1));
        var testView = ml.Data.LoadFromEnumerable(Rows(test, seed: 2));
        var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue);
        return (ml, trainView, testView, mapLabel);
    }

    /// <summary>Saves <paramref name="model"/>, scores the test texts in a fresh process, and asserts the scores are identical.</summary>
    public static void AssertFreshProcessScoresMatch(MLContext ml, ITransformer model, IDataView train, IDataView test, int testRows = 60)
    {
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        var dir = Directory.CreateTempSubdirectory("lt-prompt-save-");
        try
        {
            var zip = Path.Combine(dir.FullName, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            var texts = Path.Combine(dir.FullName, "texts.txt");
            File.WriteAllLines(texts, Rows(testRows, seed: 2).Select(r => r.Text));
            var output = TestHostProcess.Run("score-texts", zip, texts);
            var actual = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(line => line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            Assert.AreEqual(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}: the reloaded model scores differently");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>Scores rows of different lengths in one right-padded batch and one at a time; the logits must agree.</summary>
    public static void AssertPaddedEqualsUnpadded(LlamaSequenceClassifier classifier, int vocab)
    {
        var random = new Random(3);
        var rows = new[] { 3, 9, 5, 12 }.Select(n => Enumerable.Range(0, n).Select(_ => random.Next(3, vocab)).ToArray()).ToList();
        classifier.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var batched = classifier.forward(TokenBatch.Collate(rows, 0, CPU)); // [4, K]
        for (var i = 0; i < rows.Count; i++)
        {
            var alone = classifier.forward(TokenBatch.Collate([rows[i]], 0, CPU)); // [1, K]
            var diff = (batched[i] - alone[0]).abs().max().item<float>();
            Assert.IsTrue(diff < 1e-5, $"row {i} ({rows[i].Length} tokens): padded and unpadded logits differ by {diff:E2}");
        }

        // The check can fail: the rows really score differently from each other.
        Assert.IsTrue((batched[0] - batched[1]).abs().max().item<float>() > 1e-4, "different texts should score differently");
    }

    /// <summary>Asserts the live-tensor count is back at its baseline after a few more training steps.</summary>
    public static void AssertTrainingStepsLeaveNoLiveTensors(LlamaSequenceClassifier classifier, int vocab)
    {
        classifier.FreezeBase();
        var trainable = classifier.TrainableParameters().Select(p => p.Parameter).ToList();
        using var optimizer = torch.optim.AdamW(trainable, lr: 1e-3);
        var random = new Random(4);
        var rows = new[] { 4, 7, 6 }.Select(n => Enumerable.Range(0, n).Select(_ => random.Next(3, vocab)).ToArray()).ToList();
        var labels = tensor(new long[] { 0, 1, 2 });
        classifier.train();

        float Step()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(classifier.forward(TokenBatch.Collate(rows, 0, CPU)), labels);
            loss.backward();
            optimizer.step();
            using (no_grad())
            {
                classifier.forward(TokenBatch.Collate(rows, 0, CPU));
            }

            return loss.item<float>();
        }

        var first = Step();
        var baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        var last = first;
        for (var i = 0; i < 5; i++)
        {
            last = Step();
        }

        Assert.AreEqual(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "live tensors after 5 more steps");
        Assert.IsTrue(last < first, $"the loss should fall while memorising one batch ({first} -> {last})");
        labels.Dispose();
    }

    /// <summary>True when the tensors have the same shape and bit-identical values.</summary>
    public static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
