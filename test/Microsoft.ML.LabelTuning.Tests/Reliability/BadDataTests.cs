using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Bad data given to the LS-LLaMA trainer and to the model it trains: every case ends in a clear error that names
/// the column, or in the documented behaviour (docs/reliability.md), never in a crash.
/// </summary>
[TestClass]
public sealed class BadDataTests
{
    private static string _model = string.Empty;

    /// <summary>Text that tokenizers and models find awkward: emoji, right-to-left scripts, lone surrogates, zero-width and control characters.</summary>
    internal static readonly string[] UnusualTexts =
    [
        "great 😀👍🏽 film 👨‍👩‍👧", // emoji, a skin-tone modifier, a ZWJ family
        "مرحبا بالعالم great", // Arabic (RTL)
        "שלום great עולם", // Hebrew (RTL)
        "\u202egreat film\u202c", // a right-to-left override
        "bad \ud800 film \udc00", // lone high and low surrogates
        "\udfff\ud800", // surrogates in the wrong order
        "g\u200br\u200ce\u200da\u2060t\ufeff", // zero-width space, non-joiner, joiner, word joiner, BOM
        "e\u0301\u0301\u0301 zalgo\u0336\u0337", // stacked combining marks
        "tab\tnew\nline\rnull\0bell\a", // control characters
        "\uffff\ufffe\U0010FFFF", // noncharacters
        "<s></s><unk> [INST] <<SYS>>", // special-token look-alikes
    ];

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 31);
    }

    [ClassCleanup]
    public static void DeleteModel()
    {
        if (Directory.Exists(_model))
        {
            Directory.Delete(_model, recursive: true);
        }
    }

    internal static LabelSupervisedLlamaOptions Options(string model) => new()
    {
        ModelPath = model,
        Epochs = 1,
        BatchSize = 8,
        LearningRate = 1e-2,
        LoraRank = 4,
        LoraAlpha = 8,
        LoraDropout = 0,
        MaxSequenceLength = 32,
        Seed = 5,
    };

    /// <summary>Maps labels with the toy task's three classes, whatever rows the data holds.</summary>
    private static (MLContext Ml, ITransformer MapLabel) LabelMap()
    {
        var ml = new MLContext(seed: 1);
        var classes = ml.Data.LoadFromEnumerable(ToyData.ClassNames.Select(c => new ToyData.Row { Label = c }));
        return (ml, ml.Transforms.Conversion.MapValueToKey("Label").Fit(classes));
    }

    private static IDataView Keyed(MLContext ml, ITransformer map, IEnumerable<ToyData.Row> rows)
        => map.Transform(ml.Data.LoadFromEnumerable(rows.ToList()));

    private static Exception Innermost(Exception error) => PickleRefusalTests.Innermost(error);

    [TestMethod]
    public void AnEmptyDatasetIsAnErrorThatNamesTheLabelColumn()
    {
        var (ml, map) = LabelMap();
        var error = Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, [])));
        StringAssert.Contains(error.Message, "no rows");
        StringAssert.Contains(error.Message, "'Label'");
    }

    [TestMethod]
    public void ALabelTypeWithOneClassIsAnError()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyData.Rows(8, seed: 1, classes: 1));
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(keyed));
        StringAssert.Contains(error.Message, "'Label'");
        StringAssert.Contains(error.Message, "at least two");
    }

    [TestMethod]
    public void DataWithOneClassOfSeveralTrainsWithAWarningAndScoresThatClass()
    {
        var (ml, map) = LabelMap();
        var messages = new List<string>();
        ml.Log += (_, e) => messages.Add(e.Message);
        var rows = ToyData.Rows(24, seed: 1).Select(r => new ToyData.Row { Text = r.Text, Label = "sport" });
        var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, rows));
        Assert.IsTrue(messages.Any(m => m.Contains("same label", StringComparison.Ordinal)), "a warning says every row has the same label");
        var scores = model.Transform(Keyed(ml, map, ToyData.Rows(6, seed: 2))).GetColumn<float[]>("Score").ToArray();
        AssertProbabilities(scores, classes: 3);
    }

    [TestMethod]
    public void LabelsMissingFromTheKeyValuesAreSkippedWithAWarning()
    {
        var (ml, map) = LabelMap();
        var messages = new List<string>();
        ml.Log += (_, e) => messages.Add(e.Message);
        var rows = ToyData.Rows(24, seed: 1);
        rows[0].Label = "never-seen";
        rows[1].Label = string.Empty;
        var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, rows));
        Assert.IsTrue(messages.Any(m => m.Contains("2 training row(s) have a missing label", StringComparison.Ordinal)), string.Join(Environment.NewLine, messages.Where(m => m.Contains("label", StringComparison.Ordinal))));
        var scores = model.Transform(Keyed(ml, map, rows.Take(4))).GetColumn<float[]>("Score").ToArray();
        AssertProbabilities(scores, classes: 3);
    }

    [TestMethod]
    public void DataWhoseLabelsAreAllMissingIsAnError()
    {
        var (ml, map) = LabelMap();
        var rows = ToyData.Rows(8, seed: 1).Select(r => new ToyData.Row { Text = r.Text, Label = "unknown" });
        var error = Assert.Throws<ArgumentException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, rows)));
        StringAssert.Contains(error.Message, "no rows with a label in column 'Label'");
    }

    [TestMethod]
    public void NullEmptyHugeAndUnusualTextsTrainAndScore()
    {
        var (ml, map) = LabelMap();
        var huge = Huge(1 << 20);
        var rows = ToyData.Rows(16, seed: 1);
        var odd = new[] { null!, string.Empty, " ", huge }.Concat(UnusualTexts).ToArray();
        for (var i = 0; i < odd.Length; i++)
        {
            rows.Add(new ToyData.Row { Text = odd[i], Label = ToyData.ClassNames[i % 3] });
        }

        var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, rows));

        var scored = model.Transform(Keyed(ml, map, odd.Select(t => new ToyData.Row { Text = t, Label = "positive" })));
        var batch = scored.GetColumn<float[]>("Score").ToArray();
        Assert.AreEqual(odd.Length, batch.Length, "no row is dropped");
        AssertProbabilities(batch, classes: 3);

        // Single rows give the batch's scores, the huge text included (it is cut to MaxSequenceLength).
        var engine = ml.Model.CreatePredictionEngine<ToyData.Row, ScoreRow>(map.Append(model));
        for (var i = 0; i < odd.Length; i++)
        {
            var single = engine.Predict(new ToyData.Row { Text = odd[i], Label = "positive" }).Score;
            for (var k = 0; k < 3; k++)
            {
                Assert.AreEqual(batch[i][k], single[k], 1e-5, $"text {i}: batched and single-row scores differ");
            }
        }
    }

    [TestMethod]
    public void AHugeTextIsScoredInBoundedTime()
    {
        var (ml, map) = LabelMap();
        var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, ToyData.Rows(16, seed: 1)));
        var engine = ml.Model.CreatePredictionEngine<ToyData.Row, ScoreRow>(map.Append(model));
        var huge = new ToyData.Row { Text = Huge(1 << 20), Label = "positive" };
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var score = engine.Predict(huge).Score;
        Assert.IsTrue(watch.Elapsed < TimeSpan.FromSeconds(30), $"scoring a 1 MB text took {watch.Elapsed.TotalSeconds:F1} s");
        AssertProbabilities([score], classes: 3);
    }

    [TestMethod]
    public void ATextColumnOfTheWrongTypeIsAnErrorThatNamesIt()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new NumberTextRow { Text = 1f, Label = "positive" }, new NumberTextRow { Text = 2f, Label = "negative" } });
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(keyed));
        StringAssert.Contains(error.Message, "Column 'Text' (text) must be String (text) but is Single");
    }

    [TestMethod]
    public void AVectorTextColumnIsAnErrorThatNamesIt()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(new[] { new VectorTextRow { Text = ["a", "b"], Label = "positive" }, new VectorTextRow { Text = ["c"], Label = "negative" } });
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(keyed));
        StringAssert.Contains(error.Message, "Column 'Text' (text) must be String");
    }

    [TestMethod]
    [DataRow("string")]
    [DataRow("float")]
    [DataRow("bool")]
    [DataRow("key64")]
    public void ALabelColumnOfTheWrongTypeIsAnErrorThatNamesIt(string kind)
    {
        var ml = new MLContext(seed: 1);
        var rows = ToyData.Rows(6, seed: 1);
        IDataView data = kind switch
        {
            "string" => ml.Data.LoadFromEnumerable(rows),
            "float" => ml.Data.LoadFromEnumerable(rows.Select((r, i) => new FloatLabelRow { Text = r.Text, Label = i % 3 })),
            "bool" => ml.Data.LoadFromEnumerable(rows.Select((r, i) => new ToyData.BinaryRow { Text = r.Text, Label = i % 2 == 0 })),
            _ => ml.Data.LoadFromEnumerable(rows.Select((r, i) => new Key64Row { Text = r.Text, Label = (ulong)(i % 3) + 1 }), SchemaWithKey64()),
        };
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(data));
        StringAssert.Contains(error.Message, "Column 'Label' must be Key<UInt32>");
    }

    [TestMethod]
    public void AMultiClassLabelGivenToTheBinaryTrainerIsAnErrorThatNamesIt()
    {
        var (ml, map) = LabelMap();
        var error = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.BinaryClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, ToyData.Rows(6, seed: 1))));
        StringAssert.Contains(error.Message, "Column 'Label' must be Boolean");
    }

    [TestMethod]
    public void ScoringDataWithATextColumnOfTheWrongTypeIsAnErrorThatNamesIt()
    {
        var (ml, map) = LabelMap();
        var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Options(_model)).Fit(Keyed(ml, map, ToyData.Rows(16, seed: 1)));
        var wrong = ml.Data.LoadFromEnumerable(new[] { new NumberTextRow { Text = 3f, Label = "positive" } });
        var error = Assert.Throws<Exception>(() => model.Transform(wrong).GetColumn<float[]>("Score").ToArray());
        var inner = Innermost(error);
        Assert.IsInstanceOfType<ArgumentException>(inner, error.ToString());
        StringAssert.Contains(inner.Message, "Text");
    }

    /// <summary>A 1 MB text of the toy task's words.</summary>
    internal static string Huge(int chars)
    {
        var text = new StringBuilder(chars + 64);
        var words = ToyData.Rows(200, seed: 9).Select(r => r.Text).ToArray();
        for (var i = 0; text.Length < chars; i++)
        {
            text.Append(words[i % words.Length]).Append(' ');
        }

        return text.ToString(0, chars);
    }

    internal static void AssertProbabilities(float[][] scores, int classes)
    {
        foreach (var row in scores)
        {
            Assert.AreEqual(classes, row.Length);
            Assert.IsTrue(row.All(float.IsFinite), $"scores [{string.Join(", ", row)}] are not finite");
            Assert.AreEqual(1.0, row.Sum(), 1e-4, $"scores [{string.Join(", ", row)}] do not sum to 1");
        }
    }

    private static SchemaDefinition SchemaWithKey64()
    {
        var schema = SchemaDefinition.Create(typeof(Key64Row));
        schema[nameof(Key64Row.Label)].ColumnType = new KeyDataViewType(typeof(ulong), 3);
        return schema;
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    private sealed class NumberTextRow
    {
        public float Text { get; set; }

        public string Label { get; set; } = string.Empty;
    }

    private sealed class VectorTextRow
    {
        public string[] Text { get; set; } = [];

        public string Label { get; set; } = string.Empty;
    }

    private sealed class FloatLabelRow
    {
        public string Text { get; set; } = string.Empty;

        public float Label { get; set; }
    }

    private sealed class Key64Row
    {
        public string Text { get; set; } = string.Empty;

        public ulong Label { get; set; }
    }
}
