using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Tests.Tokenizers;
using Microsoft.ML.LabelTuning.Tokenizers;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;

/// <summary>
/// A LLaMA-3-shaped model folder: the real LLaMA-3 tokenizer.json (128,256 ids), tied embeddings, llama3 RoPE scaling
/// and a tiny random decoder (hidden size 16, so the embedding table stays about 8 MB).
/// </summary>
[TestClass]
public sealed class Llama3ModelFolderTests
{
    [TestMethod]
    public void TrainsSavesReloadsAndScoresIdentically()
    {
        var folder = Directory.CreateTempSubdirectory("lt-llama3-").FullName;
        try
        {
            var config = new LlamaConfig
            {
                HiddenSize = 16,
                IntermediateSize = 32,
                NumHiddenLayers = 1,
                NumAttentionHeads = 2,
                NumKeyValueHeads = 1,
                VocabSize = 128256,
                MaxPositionEmbeddings = 512,
                RmsNormEps = 1e-5,
                RopeTheta = 500000,
                RopeScaling = new RopeScalingConfig { RopeType = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 },
                BosTokenId = 128000,
                EosTokenId = [128001, 128009],
                TieWordEmbeddings = true,
            };
            torch.random.manual_seed(3);
            using (var causal = new LlamaForCausalLM(config))
            {
                CheckpointLoader.SaveHfFolder(causal, config, folder);
            }

            TokenizerFixtures.WriteLlama3Folder(folder);
            var tokenizer = LlamaTextTokenizer.FromModelFolder(folder);
            StringAssert.EndsWith(tokenizer.TokenizerFile, "tokenizer.json");
            Assert.AreEqual(config.VocabSize, tokenizer.VocabSize);

            var ml = new MLContext(seed: 1);
            var train = ml.Data.LoadFromEnumerable(ToyData.Rows(16, seed: 1));
            var test = ml.Data.LoadFromEnumerable(ToyData.Rows(8, seed: 2));
            var options = LabelSupervisedLlamaTests.FastOptions(folder);
            options.Epochs = 1;
            options.BatchSize = 8;
            var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue);
            var model = mapLabel.Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options)).Fit(train);
            var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();

            var zip = Path.Combine(folder, "model.zip");
            ml.Model.Save(model, train.Schema, zip);
            var loaded = ml.Model.Load(zip, out _);
            var actual = loaded.Transform(test).GetColumn<float[]>("Score").ToArray();

            Assert.HasCount(expected.Length, actual);
            for (var i = 0; i < expected.Length; i++)
            {
                Assert.IsTrue(expected[i].All(float.IsFinite), $"row {i}: scores are finite");
                CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}: the reloaded model scores identically");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
