using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>Hand-made model folders and configs for cases the fuzzers reach rarely or cannot express.</summary>
[TestClass]
public sealed class ModelFolderEdgeCaseTests
{
    [TestMethod]
    public void AMissingConfigIsFileNotFoundNamingIt()
    {
        var path = Path.Combine(Path.GetTempPath(), $"lt-missing-{Guid.NewGuid():N}", "config.json");
        var error = Assert.ThrowsExactly<FileNotFoundException>(() => LlamaConfig.Load(path));
        StringAssert.Contains(error.Message, path);
    }

    [TestMethod]
    [DataRow("{\"hidden_size\": \"\ud800\"}")] // a lone surrogate in the .NET string itself
    [DataRow("{\"model_type\": \"\\ud800\"}")] // an escaped lone surrogate
    [DataRow("{\"hidden_size\": 1e400}")]
    [DataRow("{\"eos_token_id\": [1.5]}")]
    [DataRow("{\"eos_token_id\": {\"a\": 1}}")]
    [DataRow("{\"rope_parameters\": {\"factor\": \"x\"}}")]
    public void ParseRefusesHostileTextNamingTheSource(string json)
    {
        var error = Assert.Throws<Exception>(() => LlamaConfig.Parse(json, "hostile-config.json").Validate());
        Assert.IsTrue(error is InvalidDataException or ArgumentException, error.ToString());
        StringAssert.Contains(error.Message, "hostile-config.json");
    }

    [TestMethod]
    public void AConfigThatImpliesAHugeModelIsRefusedFromTheHeadersAlone()
    {
        var folder = Directory.CreateTempSubdirectory("lt-huge-config-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(folder, HfModelFolder.SafeTensorsFileName), ModelFolderFuzzTests.CheckpointOf(LlamaConfig.Parse(ModelFolderFuzzTests.SeedConfig)));
            var huge = ModelFolderFuzzTests.SeedConfig.Replace("\"num_hidden_layers\": 1", "\"num_hidden_layers\": 2147483647", StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(folder, "config.json"), huge);
            var watch = System.Diagnostics.Stopwatch.StartNew();
            var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadModel(folder).Dispose());
            Assert.IsTrue(watch.Elapsed < TimeSpan.FromSeconds(5), $"refusing took {watch.Elapsed.TotalSeconds:F1} s");
            StringAssert.Contains(error.Message, Path.Combine(folder, "config.json"));
            StringAssert.Contains(error.Message, "implies at least");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void ASmallerConfigIsRefusedNamingTheConfigAndTheCheckpoint()
    {
        var folder = Directory.CreateTempSubdirectory("lt-small-config-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(folder, HfModelFolder.SafeTensorsFileName), ModelFolderFuzzTests.CheckpointOf(LlamaConfig.Parse(ModelFolderFuzzTests.SeedConfig)));
            File.WriteAllText(Path.Combine(folder, "config.json"), ModelFolderFuzzTests.SeedConfig.Replace("\"vocab_size\": 32", "\"vocab_size\": 31", StringComparison.Ordinal));
            var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadModel(folder).Dispose());
            StringAssert.Contains(error.Message, Path.Combine(folder, "config.json"));
            StringAssert.Contains(error.Message, HfModelFolder.SafeTensorsFileName);
            StringAssert.Contains(error.Message, "embed_tokens.weight");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [TestMethod]
    public void ATokenizerWithMoreTokensThanTheModelHasEmbeddingsIsAClearError()
    {
        // The tiny tokenizer has 400 pieces; this model embeds only 100 of them.
        var folder = TinyModels.CreateFolder(seed: 51, config: TinyModels.Config(hidden: 32, intermediate: 64, vocab: 100));
        try
        {
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(ToyData.Rows(16, seed: 1));
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
            var error = Assert.Throws<Exception>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(BadDataTests.Options(folder)).Fit(keyed));
            var inner = PickleRefusalTests.Innermost(error);
            Assert.IsTrue(inner is InvalidDataException or ArgumentException, $"expected a clear error naming the tokenizer and vocab_size, got {error}");
            StringAssert.Contains(inner.Message, "vocab_size");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
