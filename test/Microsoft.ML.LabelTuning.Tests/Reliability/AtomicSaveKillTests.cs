using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.TestHost;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// A kill during a save leaves the previous file intact. A child process (TestHost <c>save-loop</c>) saves a
/// safetensors file, a JSON file and a model zip over and over through <see cref="AtomicFile"/> and
/// <see cref="ModelSaveCatalog.SaveAtomically"/>, and is killed with SIGKILL half-way through a chosen save, and at
/// moments the test does not choose; after each kill every file must be complete, loadable, and the previous or the
/// new version. A fourth file saved the way ML.NET's <c>Model.Save(path)</c> does is the control: it breaks.
/// </summary>
[TestClass]
public sealed class AtomicSaveKillTests
{
    private const int Runs = 6;
    private static readonly TimeSpan _timeout = TimeSpan.FromMinutes(4);
    private static readonly string[] _texts = ["great film", "awful boring plot", "the team won the match", string.Empty];
    private static string _model = string.Empty;
    private static string _work = string.Empty;
    private static string _sourceZip = string.Empty;
    private static float[][] _expected = [];

    [ClassInitialize]
    public static void TrainAndSaveTheModel(TestContext context)
    {
        _ = context;
        _model = TinyModels.CreateFolder(seed: 13);
        _work = Directory.CreateTempSubdirectory("lt-atomic-save-").FullName;
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyData.Rows(30, seed: 1));
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.MulticlassClassification.Trainers.LabelSupervisedLlama(new LabelSupervisedLlamaOptions
            {
                ModelPath = _model,
                Epochs = 1,
                BatchSize = 16,
                LearningRate = 1e-2,
                LoraRank = 4,
                LoraAlpha = 8,
                MaxSequenceLength = 32,
                Seed = 5,
            }));
        var model = pipeline.Fit(train);
        _sourceZip = Path.Combine(_work, "source.zip");
        ml.Model.SaveAtomically(model, train.Schema, _sourceZip);
        _expected = Score(ml, model);
    }

    [ClassCleanup]
    public static void DeleteFolders()
    {
        foreach (var folder in new[] { _model, _work })
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    /// <summary>
    /// Iteration 3 stalls half-way through writing one file and is killed there: that file is still iteration 2's,
    /// complete; the half-written bytes are only in a hidden temporary file, which no loader opens and
    /// <see cref="AtomicFile.DeleteTemporaryFiles"/> removes.
    /// </summary>
    [TestMethod]
    [DataRow("weights", "weights.safetensors")]
    [DataRow("state", "state.json")]
    [DataRow("model", "model.zip")]
    public void AKillHalfWayThroughAnAtomicSaveLeavesThePreviousVersionIntact(string target, string file)
    {
        using var folder = new TempFolder("lt-save-stall-");
        using (var host = KillableHost.Start("save-loop", _sourceZip, folder.Path, "1", "--stall", target, "--stall-at", "3"))
        {
            host.WaitForLine(l => l == "stalled", _timeout);
            host.Kill();
            Assert.AreEqual("committed 2", host.Lines.Last(l => l.StartsWith("committed ", StringComparison.Ordinal)));
        }

        var versions = Inspect(folder.Path);
        Assert.AreEqual(2, versions[file], $"{file} must still be iteration 2's after a kill half-way through saving iteration 3");
        var temporary = Directory.GetFiles(folder.Path, $".{file}.*.tmp");
        Assert.AreEqual(1, temporary.Length, "the kill must have hit the save (its temporary file is there)");
        Assert.IsTrue(new FileInfo(temporary[0]).Length > 0, "the temporary file holds the half-written bytes");
        Assert.AreEqual(1, AtomicFile.DeleteTemporaryFiles(folder.Path, file));
        Assert.AreEqual(2, Inspect(folder.Path)[file]);
    }

    /// <summary>
    /// The control: the same kill half-way through a save done the way ML.NET's <c>Model.Save(model, schema, path)</c>
    /// does it (File.Create, then write) destroys the previous model. This is why <c>SaveAtomically</c> exists, and it
    /// shows that the kill in the test above really lands inside the save.
    /// </summary>
    [TestMethod]
    public void AKillHalfWayThroughMLNetsOwnSaveToAPathLosesThePreviousModel()
    {
        using var folder = new TempFolder("lt-save-plain-");
        using (var host = KillableHost.Start("save-loop", _sourceZip, folder.Path, "1", "--stall", "plain", "--stall-at", "3"))
        {
            host.WaitForLine(l => l == "stalled", _timeout);
            host.Kill();
        }

        Assert.AreEqual(3, Inspect(folder.Path)["model.zip"], "the atomic save before it finished");
        Assert.IsNull(TryLoadVersion(Path.Combine(folder.Path, "plain.zip")), "a kill during a non-atomic save leaves a broken zip");
    }

    /// <summary>
    /// Killed six times at moments the test does not choose, each file is after every kill complete and loadable,
    /// never older than before the run, at least the version the run last reported committed, and at most the one it
    /// was writing; no temporary file is taken for the file. Counts of kills that landed inside a save go to
    /// <c>TestResults/reliability-kill.txt</c>.
    /// </summary>
    [TestMethod]
    public void KillsAtUnchosenMomentsNeverLeaveABrokenOrOlderFile()
    {
        using var folder = new TempFolder("lt-save-random-");
        var random = new Random(7);
        var files = new[] { "weights.safetensors", "state.json", "model.zip" };
        var before = files.ToDictionary(f => f, _ => 0);
        int temporaries = 0, brokenPlain = 0, next = 1;
        for (var run = 0; run < Runs; run++)
        {
            var first = next;
            int? committed = null;
            using (var host = KillableHost.Start("save-loop", _sourceZip, folder.Path, first.ToString(CultureInfo.InvariantCulture)))
            {
                var waitFor = random.Next(3);
                host.WaitForLine(l => waitFor == 0 ? l == "ready" : l == $"committed {first + waitFor - 1}", _timeout);
                Thread.Sleep(random.Next(150));
                host.Kill();
                committed = host.Lines.Where(l => l.StartsWith("committed ", StringComparison.Ordinal))
                    .Select(l => (int?)int.Parse(l["committed ".Length..], CultureInfo.InvariantCulture)).LastOrDefault();
            }

            var writing = (committed ?? first - 1) + 1;
            var versions = Inspect(folder.Path);
            foreach (var file in files)
            {
                var v = versions[file];
                var message = $"run {run} (iterations from {first}, last committed {committed?.ToString(CultureInfo.InvariantCulture) ?? "none"}): {file} is version {v}";
                Assert.IsTrue(v >= before[file], message + $", older than before the run ({before[file]})");
                Assert.IsTrue(v <= writing, message + $", newer than the iteration being written ({writing})");
                Assert.IsTrue(committed is null || v >= committed, message + ", older than the last committed iteration");
                Assert.IsTrue(v == before[file] || v >= first, message + ", a version this run did not write");
                before[file] = v;
            }

            temporaries += Directory.GetFiles(folder.Path, ".*.tmp").Length;
            brokenPlain += File.Exists(Path.Combine(folder.Path, "plain.zip")) && TryLoadVersion(Path.Combine(folder.Path, "plain.zip")) is null ? 1 : 0;
            AtomicFile.DeleteTemporaryFiles(folder.Path, [.. files, "plain.zip"]);
            next = writing + 1;
        }

        Assert.AreEqual(0, Directory.GetFiles(folder.Path, ".*.tmp").Length);
        Assert.IsTrue(before.Values.All(v => v > 0), "every file was saved at least once");
        var summary = $"{Runs} kills: {temporaries} landed inside an atomic save (temporary file left, target intact); " +
            $"the non-atomic control zip was broken after {brokenPlain}; last versions {string.Join(", ", before.Select(kv => $"{kv.Key} {kv.Value}"))}.";
        Directory.CreateDirectory(Fuzz.ResultsFolder);
        File.WriteAllText(Path.Combine(Fuzz.ResultsFolder, "reliability-kill.txt"), summary + "\n");
        Console.WriteLine(summary);
    }

    /// <summary>Checks every file is complete and consistent and returns its version (0 when it does not exist yet).</summary>
    private static Dictionary<string, int> Inspect(string folder)
    {
        var versions = new Dictionary<string, int>();
        var weights = Path.Combine(folder, "weights.safetensors");
        if (File.Exists(weights))
        {
            using var scope = TorchSharp.torch.NewDisposeScope();
            var (tensors, metadata) = SafeTensors.ReadFile(weights);
            var v = int.Parse(metadata["iteration"], CultureInfo.InvariantCulture);
            var w = tensors["w"];
            Assert.AreEqual(1L << 20, w.numel(), "weights.safetensors: tensor 'w' is complete");
            Assert.AreEqual(v, w.min().item<float>(), "weights.safetensors: the data belongs to the metadata's iteration");
            Assert.AreEqual(v, w.max().item<float>(), "weights.safetensors: the data belongs to the metadata's iteration");
            versions["weights.safetensors"] = v;
        }
        else
        {
            versions["weights.safetensors"] = 0;
        }

        var state = Path.Combine(folder, "state.json");
        if (File.Exists(state))
        {
            using var json = JsonDocument.Parse(File.ReadAllText(state));
            Assert.AreEqual(200_000, json.RootElement.GetProperty("payload").GetString()!.Length, "state.json is complete");
            versions["state.json"] = json.RootElement.GetProperty("iteration").GetInt32();
        }
        else
        {
            versions["state.json"] = 0;
        }

        var zip = Path.Combine(folder, "model.zip");
        if (File.Exists(zip))
        {
            var ml = new MLContext(seed: 0);
            var model = ml.Model.Load(zip, out var schema);
            var scores = Score(ml, model);
            for (var i = 0; i < _expected.Length; i++)
            {
                CollectionAssert.AreEqual(_expected[i], scores[i], $"model.zip scores text {i} differently from the saved model");
            }

            versions["model.zip"] = ReliabilityCommands.VersionOf(schema);
        }
        else
        {
            versions["model.zip"] = 0;
        }

        return versions;
    }

    private static int? TryLoadVersion(string zip)
    {
        try
        {
            var ml = new MLContext(seed: 0);
            ml.Model.Load(zip, out var schema);
            return ReliabilityCommands.VersionOf(schema);
        }
        catch (Exception ex) when (ex is InvalidDataException or InvalidOperationException or FormatException or IOException or ArgumentException)
        {
            return null;
        }
    }

    private static float[][] Score(MLContext ml, ITransformer model)
        => model.Transform(ml.Data.LoadFromEnumerable(_texts.Select(t => new ToyData.Row { Text = t, Label = "positive" })))
            .GetColumn<float[]>("Score").ToArray();
}
