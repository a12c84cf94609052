using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;

namespace Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;

[TestClass]
public sealed class LabelSupervisedLlamaNerTests
{
    private static readonly string[] _people = ["emma", "anne", "darcy", "elizabeth", "jane"];
    private static readonly string[] _places = ["london", "paris", "bath", "city"];
    private static readonly string[] _filler = "the a movie said went to of in on with walked and it was".Split(' ');

    public sealed class Sentence
    {
        public string Text { get; set; } = string.Empty;

        public string[] Tags { get; set; } = [];
    }

    /// <summary>A toy NER task: names are PER (two-word "mr X" as B-PER I-PER), places LOC, the rest O.</summary>
    internal static List<Sentence> Sentences(int count, int seed)
    {
        var random = new Random(seed);
        var result = new List<Sentence>();
        for (var i = 0; i < count; i++)
        {
            var words = new List<string>();
            var tags = new List<string>();
            for (var k = 0; k < random.Next(4, 10); k++)
            {
                switch (random.Next(6))
                {
                    case 0:
                        words.Add(_people[random.Next(_people.Length)]);
                        tags.Add("B-PER");
                        break;
                    case 1:
                        words.AddRange(["mr", _people[random.Next(_people.Length)]]);
                        tags.AddRange(["B-PER", "I-PER"]);
                        break;
                    case 2:
                        words.Add(_places[random.Next(_places.Length)]);
                        tags.Add("B-LOC");
                        break;
                    default:
                        words.Add(_filler[random.Next(_filler.Length)]);
                        tags.Add("O");
                        break;
                }
            }

            result.Add(new Sentence { Text = string.Join(' ', words), Tags = [.. tags] });
        }

        return result;
    }

    [TestMethod]
    public void LearnsAToyNerTaskAndScoresEntities()
    {
        var model = TinyModels.CreateFolder(seed: 31);
        var dir = Directory.CreateTempSubdirectory("lt-ner-");
        try
        {
            var ml = new MLContext(seed: 1);
            var train = ml.Data.LoadFromEnumerable(Sentences(300, seed: 1));
            var test = ml.Data.LoadFromEnumerable(Sentences(60, seed: 2));
            var options = LabelSupervisedLlamaTests.FastOptions(model);
            options.TextColumnName = "Text";
            options.Epochs = 12;
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label", "Tags")
                .Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlamaNer(options))
                .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedTags", "PredictedLabel"));
            var fitted = pipeline.Fit(train);
            var scored = fitted.Transform(test);
            var metrics = ml.MulticlassClassification.EvaluateEntities(scored);
            Assert.IsTrue(metrics.F1 >= 0.9, $"entity F1 {metrics.F1:F3} (P {metrics.Precision:F3}, R {metrics.Recall:F3})");
            Assert.IsTrue(metrics.PerType.ContainsKey("PER") && metrics.PerType.ContainsKey("LOC"));

            var predictedTags = scored.GetColumn<string[]>("PredictedTags").ToArray();
            var sentences = Sentences(60, seed: 2);
            for (var i = 0; i < sentences.Count; i++)
            {
                Assert.AreEqual(sentences[i].Tags.Length, predictedTags[i].Length, $"row {i}: one predicted tag per word");
            }

            var zip = Path.Combine(dir.FullName, "ner.zip");
            ml.Model.Save(fitted, train.Schema, zip);
            var reloaded = ml.Model.Load(zip, out _).Transform(test).GetColumn<string[]>("PredictedTags").ToArray();
            for (var i = 0; i < reloaded.Length; i++)
            {
                CollectionAssert.AreEqual(predictedTags[i], reloaded[i], $"row {i} after reload");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
            Directory.Delete(model, recursive: true);
        }
    }

    [TestMethod]
    public void WordAndTagCountsMustMatch()
    {
        var model = TinyModels.CreateFolder(seed: 32);
        try
        {
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(new[] { new Sentence { Text = "emma went to london", Tags = ["B-PER", "O", "B-LOC"] } });
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label", "Tags").Fit(data).Transform(data);
            var options = LabelSupervisedLlamaTests.FastOptions(model);
            options.TextColumnName = "Text";
            var error = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlamaNer(options).Fit(keyed));
            StringAssert.Contains(error.Message, "has 4 space-separated word(s) but column 'Label' has 3 label(s)");

            var scalar = ml.Data.LoadFromEnumerable(ToyData.Rows(10, 1));
            var scalarKeyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(scalar).Transform(scalar);
            var typeError = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlamaNer(options).Fit(scalarKeyed));
            StringAssert.Contains(typeError.Message, "must be a vector of Key<UInt32>");
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }
}
