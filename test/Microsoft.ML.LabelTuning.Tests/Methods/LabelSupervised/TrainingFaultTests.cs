using Microsoft.ML.LabelTuning.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;

[TestClass]
public sealed class TrainingFaultTests
{
    [TestMethod]
    public void ANonFiniteLossStopsWithTheStepAndLikelyCause()
    {
        var folder = TinyModels.CreateFolder(seed: 71);
        try
        {
            // Corrupt base weights: one NaN in the first layer's value projection poisons every forward pass.
            var path = Path.Combine(folder, "model.safetensors");
            Dictionary<string, Tensor> tensors;
            using (var scope = NewDisposeScope())
            {
                (tensors, _) = SafeTensors.ReadFile(path);
                foreach (var t in tensors.Values)
                {
                    t.MoveToOuterDisposeScope();
                }
            }

            tensors["model.layers.0.self_attn.v_proj.weight"][0, 0] = float.NaN;
            SafeTensors.WriteFile(path, tensors);
            foreach (var t in tensors.Values)
            {
                t.Dispose();
            }

            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(ToyData.Rows(20, seed: 1));
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
            var error = Assert.ThrowsExactly<InvalidOperationException>(
                () => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(LabelSupervisedLlamaTests.FastOptions(folder)).Fit(keyed));
            StringAssert.Contains(error.Message, "became NaN at step 1");
            StringAssert.Contains(error.Message, "corrupt base weights");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
