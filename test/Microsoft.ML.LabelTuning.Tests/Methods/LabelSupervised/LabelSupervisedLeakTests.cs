using Microsoft.ML.Data;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;

[TestClass]
public sealed class LabelSupervisedLeakTests
{
    [TestMethod]
    public void FitScoreAndDisposeLeaveNoLiveTensors()
    {
        var model = TinyModels.CreateFolder(seed: 41);
        try
        {
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(ToyData.Rows(40, seed: 1));
            var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);

            void Cycle()
            {
                var options = LabelSupervisedLlamaTests.FastOptions(model);
                options.Epochs = 2;
                using var transformer = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(keyed);
                _ = transformer.Transform(keyed).GetColumn<float[]>("Score").ToArray();
                var engine = ml.Model.CreatePredictionEngine<ToyData.Row, ScoreOnly>(transformer);
                _ = engine.Predict(new ToyData.Row { Text = "great film" });
            }

            Cycle(); // warm-up: lazily created caches
            var baseline = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (var i = 0; i < 2; i++)
            {
                Cycle();
            }

            Assert.AreEqual(baseline, DisposeScopeManager.Statistics.ThreadTotalLiveCount, "live tensors after two more fit/score/dispose cycles");
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    private sealed class ScoreOnly
    {
        public float[] Score { get; set; } = [];
    }
}
