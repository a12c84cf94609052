using Microsoft.ML.LabelTuning.Evaluation;

namespace Microsoft.ML.LabelTuning.Tests.Evaluation;

[TestClass]
public sealed class EntityEvaluatorTests
{
    [TestMethod]
    public void SpansFollowConllRules()
    {
        string[] tags = ["B-PER", "I-PER", "O", "B-LOC", "I-PER", "I-PER", "B-LOC", "B-LOC"];
        var spans = EntityEvaluator.Spans(tags).ToList();
        CollectionAssert.AreEqual(
            new[] { (0, 2, "PER"), (3, 4, "LOC"), (4, 6, "PER"), (6, 7, "LOC"), (7, 8, "LOC") },
            spans);
    }

    [TestMethod]
    public void PartialSpansDoNotCount()
    {
        var ml = new MLContext(seed: 0);
        var rows = new[]
        {
            new TagRow { Truth = ["B-PER", "I-PER", "O", "B-LOC"], Guess = ["B-PER", "O", "O", "B-LOC"] },
            new TagRow { Truth = ["O", "B-LOC"], Guess = ["O", "B-LOC"] },
        };
        var data = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Truth")
            .Append(ml.Transforms.Conversion.MapValueToKey("PredictedLabel", "Guess", keyData: ml.Data.LoadFromEnumerable(
                new[] { "B-PER", "I-PER", "O", "B-LOC" }.Select(t => new KeyRow { Tag = t }))))
            .Fit(data).Transform(data);
        var metrics = ml.MulticlassClassification.EvaluateEntities(keyed);
        Assert.AreEqual(3, metrics.TrueEntities);
        Assert.AreEqual(3, metrics.PredictedEntities);
        Assert.AreEqual(2.0 / 3, metrics.Precision, 1e-9);
        Assert.AreEqual(2.0 / 3, metrics.Recall, 1e-9);
        Assert.AreEqual(1.0, metrics.PerType["LOC"].F1, 1e-9);
        Assert.AreEqual(0.0, metrics.PerType["PER"].F1, 1e-9);
    }

    public sealed class TagRow
    {
        public string[] Truth { get; set; } = [];

        public string[] Guess { get; set; } = [];
    }

    public sealed class KeyRow
    {
        public string Tag { get; set; } = string.Empty;
    }
}
