using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Tests.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Tests.Catalog;

[TestClass]
public sealed class BaseModelSearchTests
{
    private static (MLContext Ml, IDataView Test, string Zip, string Sha, float[][] Expected) TrainAndSave(string baseFolder, string zipFolder)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.Rows(30, seed: 1));
        var test = ml.Data.LoadFromEnumerable(ToyData.Rows(12, seed: 2));
        var options = LabelSupervisedLlamaTests.FastOptions(baseFolder);
        options.Epochs = 1;
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options));
        var model = pipeline.Fit(train);
        var zip = Path.Combine(zipFolder, "model.zip");
        ml.Model.Save(model, train.Schema, zip);
        var expected = model.Transform(test).GetColumn<float[]>("Score").ToArray();
        (model as IDisposable)?.Dispose();
        return (ml, test, zip, BaseModelReference.Fingerprint(baseFolder), expected);
    }

    private static void AssertScores(float[][] expected, ITransformer loaded, IDataView test)
    {
        var actual = loaded.Transform(test).GetColumn<float[]>("Score").ToArray();
        (loaded as IDisposable)?.Dispose();
        Assert.AreEqual(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            CollectionAssert.AreEqual(expected[i], actual[i], $"row {i}");
        }
    }

    [TestMethod]
    public void AMovedBaseIsFoundByHashThroughTheSearchPathTheEnvironmentAndTheZipFolder()
    {
        var dir = Directory.CreateTempSubdirectory("lt-move-").FullName;
        var original = TinyModels.CreateFolder(seed: 31);
        try
        {
            var zips = Directory.CreateDirectory(Path.Combine(dir, "zips")).FullName;
            var (ml, test, zip, sha, expected) = TrainAndSave(original, zips);

            // Moved away: nothing finds it, and the error arrives as itself, naming the hash and where it looked.
            var models = Directory.CreateDirectory(Path.Combine(dir, "models")).FullName;
            var moved = Path.Combine(models, "renamed-base");
            Directory.Move(original, moved);
            var missing = Assert.ThrowsExactly<FileNotFoundException>(() => ml.Model.LoadLabelTuning(zip, out _));
            StringAssert.Contains(missing.Message, sha);
            StringAssert.Contains(missing.Message, original);
            StringAssert.Contains(missing.Message, zips);

            // A folder named on load, holding the base one level down under another name.
            AssertScores(expected, ml.Model.LoadLabelTuning(zip, out _, [models]), test);

            // The environment variable, with plain mlContext.Model.Load; the folder itself is the base.
            var previous = Environment.GetEnvironmentVariable(BaseModelSearch.EnvironmentVariable);
            try
            {
                Environment.SetEnvironmentVariable(BaseModelSearch.EnvironmentVariable, Path.Combine(dir, "nowhere") + Path.PathSeparator + moved);
                AssertScores(expected, ml.Model.Load(zip, out _), test);
            }
            finally
            {
                Environment.SetEnvironmentVariable(BaseModelSearch.EnvironmentVariable, previous);
            }

            // Next to the zip.
            var besideZip = Path.Combine(zips, "base");
            Directory.Move(moved, besideZip);
            AssertScores(expected, ml.Model.LoadLabelTuning(zip, out _), test);
            original = besideZip;
        }
        finally
        {
            if (Directory.Exists(original))
            {
                Directory.Delete(original, recursive: true);
            }

            Directory.Delete(dir, recursive: true);
        }
    }

    [TestMethod]
    public void ABaseWithAnotherHashIsRefusedNamingTheExpectedHashAndWhereItLooked()
    {
        var dir = Directory.CreateTempSubdirectory("lt-wrong-").FullName;
        var original = TinyModels.CreateFolder(seed: 32);
        var impostor = TinyModels.CreateFolder(seed: 33);
        try
        {
            var (ml, _, zip, sha, _) = TrainAndSave(original, dir);
            var models = Directory.CreateDirectory(Path.Combine(dir, "models")).FullName;
            var wrong = Path.Combine(models, Path.GetFileName(original));
            Directory.Move(impostor, wrong);
            Directory.Delete(original, recursive: true);

            var error = Assert.ThrowsExactly<InvalidDataException>(() => ml.Model.LoadLabelTuning(zip, out _, [models]));
            StringAssert.Contains(error.Message, sha);
            StringAssert.Contains(error.Message, wrong);
            StringAssert.Contains(error.Message, BaseModelReference.Fingerprint(wrong));
            StringAssert.Contains(error.Message, models);
        }
        finally
        {
            foreach (var folder in new[] { original, impostor, dir })
            {
                if (Directory.Exists(folder))
                {
                    Directory.Delete(folder, recursive: true);
                }
            }
        }
    }
}
