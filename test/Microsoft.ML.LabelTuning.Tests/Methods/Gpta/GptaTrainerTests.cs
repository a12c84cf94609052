using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.Gpta;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Tests.Methods.Gpta;

/// <summary>GPTA end to end on a tiny random model: real trainers, a scripted chat model.</summary>
[TestClass]
public sealed class GptaTrainerTests
{
    private const string Task = "Sort short texts into praise, complaints and sport.";
    private static string _model = string.Empty;
    private string _transcript = string.Empty;

    [ClassInitialize]
    public static void CreateModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 61);
    }

    [ClassCleanup]
    public static void DeleteModel() => Directory.Delete(_model, recursive: true);

    [TestInitialize]
    public void Setup() => _transcript = Path.Combine(Path.GetTempPath(), $"gpta-e2e-{Guid.NewGuid():N}.jsonl");

    [TestCleanup]
    public void Cleanup()
    {
        if (File.Exists(_transcript))
        {
            File.Delete(_transcript);
        }
    }

    [TestMethod]
    public void NoTrainingOrValidationTextEverReachesTheChatClient()
    {
        var (ml, train, valid, trainRows, validRows) = Views();
        var leak = trainRows.First(r => r.Text.Length >= 30).Text.Substring(2, 25);
        var scripted = new ScriptedChatClient(
            $$"""["Which topic is this text about?", "{{leak}}", "Sentiment or sport:"]""",
            "no idea",
            """["Decide the class of the text:"]""");
        var spy = new PrivacySpyChatClient(scripted, trainRows.Concat(validRows).Select(r => r.Text));
        var options = LabelSupervisedLlamaTests.FastOptions(_model);
        options.Epochs = 2;
        var gpta = ml.MulticlassClassification.Trainers.WithLlmPrefixAssistant(
            ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options),
            spy,
            new LlmPrefixAssistantOptions { TaskDescription = Task, ValidationSet = valid, Rounds = 2, TranscriptPath = _transcript });
        using var model = gpta.Fit(train);

        Assert.IsTrue(spy.MessagesSeen >= 6, "the loop talked to the chat model");
        Assert.AreEqual(0, spy.Violations.Count, "data reached the chat model:\n" + string.Join("\n", spy.Violations));
        var search = gpta.LastSearch!;
        CollectionAssert.AreEqual(
            new string?[] { null, "Which topic is this text about?", "Sentiment or sport:", "Decide the class of the text:" },
            search.Candidates.Select(c => c.Prefix).ToArray());
        Assert.AreEqual(1, search.RejectedCandidates, "the candidate quoting a training text");
        Assert.AreEqual(1, search.FailedReplies, "the malformed reply");
        Assert.AreEqual(search.Candidates.Max(c => c.Score), search.BestScore);
        Assert.AreEqual(search.BestPrefix, model.TextPrefix, "the final model carries the winning prefix");
        StringAssert.Contains(scripted.LastUserText(1), "\"Which topic is this text about?\": macro-F1");
        Assert.IsNull(options.TextPrefix, "the user's options are not written");
        Assert.AreEqual(2, options.Epochs);
        Assert.IsTrue(File.ReadAllLines(_transcript).All(l => JsonDocument.Parse(l).RootElement.TryGetProperty("event", out _)));
    }

    [TestMethod]
    public void SavedModelKeepsThePrefixInAFreshProcess()
    {
        var (ml, train, valid, _, _) = Views();
        var options = LabelSupervisedLlamaTests.FastOptions(_model);
        options.Epochs = 2;
        var gpta = ml.MulticlassClassification.Trainers.WithLlmPrefixAssistant(
            ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options),
            new ScriptedChatClient("""["Label the topic of the text:"]"""),
            new LlmPrefixAssistantOptions
            {
                TaskDescription = Task, ValidationSet = valid, Rounds = 1, CandidatesPerRound = 1, IncludeBaseline = false, RetrainBest = false,
                TranscriptPath = _transcript,
            });
        using var model = gpta.Fit(train);
        Assert.AreEqual("Label the topic of the text:", model.TextPrefix);
        var test = ml.Data.LoadFromEnumerable(ToyData.Rows(20, seed: 3));
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        var engine = ml.Model.CreatePredictionEngine<ToyData.Row, ScoreRow>(model);
        var single = engine.Predict(ToyData.Rows(20, seed: 3)[0]).Score;
        for (var k = 0; k < single.Length; k++)
        {
            Assert.AreEqual(expected[0][k], single[k], 1e-5, "PredictionEngine applies the prefix too");
        }

        var dir = Directory.CreateTempSubdirectory("lt-gpta-save-");
        try
        {
            var zip = Path.Combine(dir.FullName, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            using (var archive = ZipFile.OpenRead(zip))
            {
                var entry = archive.Entries.Single(e => e.FullName.EndsWith("Description.json", StringComparison.Ordinal));
                using var reader = new StreamReader(entry.Open());
                StringAssert.Contains(reader.ReadToEnd(), "Label the topic of the text:");
            }

            var loaded = (LabelTuningMulticlassTransformer)ml.Model.Load(zip, out _);
            Assert.AreEqual("Label the topic of the text:", loaded.TextPrefix);
            CollectionAssert.AreEqual(expected[0], loaded.Transform(test).GetColumn<float[]>("Score").First());
            loaded.Dispose();

            var texts = Path.Combine(dir.FullName, "texts.txt");
            File.WriteAllLines(texts, ToyData.Rows(20, seed: 3).Select(r => r.Text));
            var actual = TestHostProcess.Run("score-texts", zip, texts).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(line => line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            Assert.AreEqual(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}: the fresh process scores with the saved prefix");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [TestMethod]
    [DataRow("ls")]
    [DataRow("prompt")]
    [DataRow("prefix")]
    [DataRow("ltuning-prefix")]
    [DataRow("ltuning-prompt")]
    [DataRow("binary-ls")]
    [DataRow("binary-prompt")]
    public void WorksWithEveryTrainer(string trainer)
    {
        var ml = new MLContext(seed: 1);
        var assistant = new LlmPrefixAssistantOptions
        {
            TaskDescription = Task, Rounds = 1, CandidatesPerRound = 1, IncludeBaseline = false, RetrainBest = false, TranscriptPath = _transcript,
        };
        var chat = new ScriptedChatClient("""["Label the text:"]""");
        T Shared<T>(T o)
            where T : Training.LabelTuningOptions
        {
            o.ModelPath = _model;
            o.Epochs = 1;
            o.BatchSize = 16;
            o.MaxSequenceLength = 32;
            o.LearningRate = 1e-2;
            o.Seed = 3;
            return o;
        }

        LabelTuningTransformerBase model;
        IDataView test;
        if (trainer.StartsWith("binary", StringComparison.Ordinal))
        {
            var train = ml.Data.LoadFromEnumerable(ToyData.BinaryRows(40, seed: 1));
            assistant.ValidationSet = ml.Data.LoadFromEnumerable(ToyData.BinaryRows(20, seed: 2));
            test = assistant.ValidationSet;
            BinaryLabelTuningTrainer inner = trainer == "binary-ls"
                ? ml.BinaryClassification.Trainers.LabelSupervisedLlama(Shared(new LabelSupervisedLlamaOptions { LoraRank = 4 }))
                : ml.BinaryClassification.Trainers.PromptTuning(Shared(new PromptTuningOptions { VirtualTokenCount = 4 }));
            model = ml.BinaryClassification.Trainers.WithLlmPrefixAssistant(inner, chat, assistant).Fit(train);
        }
        else
        {
            var (_, train, valid, _, _) = Views(ml, trainCount: 45);
            assistant.ValidationSet = valid;
            test = valid;
            MulticlassLabelTuningTrainer inner = trainer switch
            {
                "ls" => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(Shared(new LabelSupervisedLlamaOptions { LoraRank = 4 })),
                "prompt" => ml.MulticlassClassification.Trainers.PromptTuning(Shared(new PromptTuningOptions { VirtualTokenCount = 4 })),
                "prefix" => ml.MulticlassClassification.Trainers.PrefixTuning(Shared(new PrefixTuningOptions { VirtualTokenCount = 4 })),
                "ltuning-prefix" => ml.MulticlassClassification.Trainers.LTuningPrefix(Shared(new LTuningOptions())),
                _ => ml.MulticlassClassification.Trainers.LTuningPrompt(Shared(new LTuningOptions())),
            };
            model = ml.MulticlassClassification.Trainers.WithLlmPrefixAssistant(inner, chat, assistant).Fit(train);
        }

        using (model)
        {
            Assert.AreEqual("Label the text:", model.TextPrefix);
            var scored = model.Transform(test);
            var scores = trainer.StartsWith("binary", StringComparison.Ordinal)
                ? scored.GetColumn<float>("Score").Select(s => new[] { s }).ToArray()
                : scored.GetColumn<float[]>("Score").ToArray();
            Assert.IsTrue(scores.Length > 0 && scores.All(s => s.All(float.IsFinite)));
        }
    }

    [TestMethod]
    public void MissingValidationDataAndDataQuotingTasksAreRefused()
    {
        var (ml, train, valid, trainRows, _) = Views();
        var inner = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(LabelSupervisedLlamaTests.FastOptions(_model));
        var chat = new ScriptedChatClient();
        var error = Assert.ThrowsExactly<ArgumentException>(() => ml.MulticlassClassification.Trainers.WithLlmPrefixAssistant(inner, chat, new LlmPrefixAssistantOptions { TaskDescription = Task }));
        StringAssert.Contains(error.Message, "ValidationSet");

        var quoting = ml.MulticlassClassification.Trainers.WithLlmPrefixAssistant(inner, chat, new LlmPrefixAssistantOptions
        {
            TaskDescription = "Texts look like: " + trainRows.First(r => r.Text.Length >= 25).Text,
            ValidationSet = valid,
            TranscriptPath = _transcript,
        });
        StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(() => quoting.Fit(train)).Message, "TaskDescription");
        Assert.AreEqual(0, chat.Requests.Count, "nothing was sent");
    }

    private static (MLContext Ml, IDataView Train, IDataView Valid, List<ToyData.Row> TrainRows, List<ToyData.Row> ValidRows) Views(MLContext? ml = null, int trainCount = 60)
    {
        ml ??= new MLContext(seed: 1);
        var trainRows = ToyData.Rows(trainCount, seed: 1);
        var validRows = ToyData.Rows(30, seed: 2);
        var map = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue)
            .Fit(ml.Data.LoadFromEnumerable(trainRows));
        return (ml, map.Transform(ml.Data.LoadFromEnumerable(trainRows)), map.Transform(ml.Data.LoadFromEnumerable(validRows)), trainRows, validRows);
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }
}
