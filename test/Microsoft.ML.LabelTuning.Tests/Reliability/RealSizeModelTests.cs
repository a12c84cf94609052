using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// A model of real size (issue 23), opt-in: a random-weight checkpoint of the TinyLlama-1.1B shape (bf16 shards, as it
/// ships) loads in a fresh process within 1.15 × its float32 parameter bytes of peak resident memory, trains two
/// steps, and its saved model scores the same in a fresh process. About 4.5 GB of memory per process and a few
/// minutes of CPU; run with <c>./build.sh test --all</c>.
/// </summary>
[TestClass]
public sealed class RealSizeModelTests
{
    [TestMethod]
    [TestCategory("Slow")]
    public void ATinyLlamaSizedModelLoadsLeanTrainsAndReloadsInAFreshProcessWithIdenticalScores()
    {
        var folder = WriteTinyLlamaShapedFolder();
        try
        {

            // Lean loading, measured where nothing else has touched memory: a fresh process.
            var load = TestHostProcess.Run("load-rss", folder).Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var peakOverParameters = double.Parse(load[Array.IndexOf(load, "peak_over_params") + 1], CultureInfo.InvariantCulture);
            Console.WriteLine(string.Join(' ', load));
            Assert.IsTrue(peakOverParameters <= 1.15, $"peak RSS after load is {peakOverParameters:F3} × the float32 parameter bytes (at most 1.15)");
            Assert.AreEqual("False", load[Array.IndexOf(load, "lm_head") + 1], "a classifier's decoder has no LM head");

            // Two optimizer steps: 8 rows in batches of 4, one epoch.
            var ml = new MLContext(seed: 1);
            var rows = ToyData.Rows(8, seed: 1);
            var train = ml.Data.LoadFromEnumerable(rows);
            var options = new LabelSupervisedLlamaOptions
            {
                ModelPath = folder,
                Epochs = 1,
                BatchSize = 4,
                LearningRate = 1e-3,
                LoraRank = 8,
                MaxSequenceLength = 32,
                NumberOfThreads = 2,
                Seed = 5,
            };
            var texts = ToyData.Rows(6, seed: 2).Select(r => r.Text).ToArray();
            var pipeline = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options));
            var zip = Path.Combine(folder, "classifier.zip");
            float[][] expected;
            using (var model = pipeline.Fit(train))
            {
                var transformer = (LabelTuningMulticlassTransformer)((IEnumerable<ITransformer>)model).Last();
                Assert.AreEqual(2, transformer.Runtime.LastTraining!.Steps, "two optimizer steps");
                expected = model.Transform(ml.Data.LoadFromEnumerable(texts.Select(t => new ToyData.Row { Text = t }))).GetColumn<float[]>("Score").ToArray();
                ml.Model.Save(model, train.Schema, zip);
            }

            // The base is released with the model, so the fresh process is the only one holding it.
            Assert.AreEqual(0, SharedBaseModels.UsersOf(folder, TorchSharp.torch.CPU, TorchSharp.torch.ScalarType.Float32));
            var textFile = Path.Combine(folder, "texts.txt");
            File.WriteAllLines(textFile, texts);
            var actual = TestHostProcess.Run("score-texts", zip, textFile).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                .Select(line => line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
            Assert.AreEqual(expected.Length, actual.Length);
            for (var i = 0; i < expected.Length; i++)
            {
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}: scores in a fresh process");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// Batch 16 × 1024 on the TinyLlama shape with the trainer's default memory settings: without checkpointing the
    /// activations alone would be tens of gigabytes, so the defaults must either fit (Auto checkpointing, micro-batches)
    /// or refuse before the first step; an out-of-memory kill fails the test (the fit runs in its own process). One
    /// optimizer step of 16,384 tokens at 1.1B parameters, after the trainer's timing warm-up (one more forward and
    /// backward pass here): 18 minutes on 2 idle cores. The host's output goes to TestResults/default-fit-16x1024.txt.
    /// </summary>
    [TestMethod]
    [TestCategory("Slow")]
    public void ABatchOf16x1024OnTheTinyLlamaShapeTrainsWithinMemoryByDefault()
    {
        var folder = WriteTinyLlamaShapedFolder();
        try
        {
            var output = TestHostProcess.Run("default-fit", folder, "16", "1024");
            Console.WriteLine(output);
            Directory.CreateDirectory(Fuzz.ResultsFolder);
            File.WriteAllText(Path.Combine(Fuzz.ResultsFolder, "default-fit-16x1024.txt"), output);
            var last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1].Split(' ');
            string Value(string key) => last[Array.IndexOf(last, key) + 1];
            Assert.AreEqual("1", Value("steps"), "one optimizer step");
            Assert.AreEqual("True", Value("checkpointing"), "Auto turned gradient checkpointing on");
            var available = long.Parse(Value("available_bytes"), CultureInfo.InvariantCulture);
            var atStart = long.Parse(Value("rss_at_start_bytes"), CultureInfo.InvariantCulture);
            var peak = long.Parse(Value("peak_rss_bytes"), CultureInfo.InvariantCulture);
            Assert.IsTrue(peak <= atStart + available, $"peak RSS {peak} within what the process had ({atStart}) plus what was available when it started ({available})");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>A random-weight checkpoint of the TinyLlama-1.1B shape (bf16 shards) with the tiny test tokenizer.</summary>
    private static string WriteTinyLlamaShapedFolder()
    {
        var folder = Directory.CreateTempSubdirectory("lt-tinyllama-").FullName;
        try
        {
            RandomCheckpoint.Write(RandomCheckpoint.Shapes["tinyllama-1.1b"], folder, seed: 1);
            File.Copy(TinyModels.TokenizerModel, Path.Combine(folder, "tokenizer.model"));
            File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"),
                """{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}""");
            return folder;
        }
        catch
        {
            Directory.Delete(folder, recursive: true);
            throw;
        }
    }
}
