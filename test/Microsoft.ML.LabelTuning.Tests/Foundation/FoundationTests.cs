using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.TestHost;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests.Foundation;

[TestClass]
public sealed class FoundationTests
{
    [TestMethod]
    public void TorchNativeLibraryLoadsAndComputes()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var product = torch.matmul(a, a);
        CollectionAssert.AreEqual(new float[] { 7, 10, 15, 22 }, product.data<float>().ToArray());
    }

    [TestMethod]
    public void SavedTransformerLoadsInAFreshProcessAndScoresTheSame()
    {
        var mlContext = new MLContext(seed: 1);
        var rows = new[]
        {
            new HostCommands.FeatureRow { Features = [1f, 2f, 3f] },
            new HostCommands.FeatureRow { Features = [-0.5f, 0.25f, 8f] },
        };
        var data = mlContext.Data.LoadFromEnumerable(rows);
        var transformer = new AffineScoreTransformer(mlContext, "Features", [0.5f, -1.25f, 2f], 0.125f);
        var expected = transformer.Transform(data).GetColumn<float>("Score").ToArray();

        var dir = Directory.CreateTempSubdirectory("lt-roundtrip-");
        try
        {
            var modelPath = Path.Combine(dir.FullName, "model.zip");
            mlContext.Model.Save(transformer, data.Schema, modelPath);
            var featurePath = Path.Combine(dir.FullName, "features.txt");
            File.WriteAllLines(featurePath, rows.Select(r => string.Join(' ', r.Features.Select(f => f.ToString("R", CultureInfo.InvariantCulture)))));

            var output = TestHostProcess.Run("score-features", modelPath, featurePath);
            var actual = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => float.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            CollectionAssert.AreEqual(expected, actual);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
