using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>The training engine's checkpoint format: versioned, and never silently ignored when it is another version.</summary>
[TestClass]
public sealed class TrainingCheckpointFormatTests
{
    [TestMethod]
    public void ACheckpointRoundTripsItsStateAndTensors()
    {
        using var work = new TempFolder("lt-ckpt-format-");
        using var scope = NewDisposeScope();
        var state = new TrainingCheckpointState
        {
            TaskKind = "classifier",
            Step = 7,
            OptimizerSteps = 7,
            Fingerprint = "abc",
            BestValue = 0.5,
            BestStep = 4,
            Task = new System.Text.Json.Nodes.JsonObject { ["epoch"] = 1 },
        };
        TrainingCheckpoint.Write(work.Path, new Dictionary<string, Tensor> { ["param.w"] = ones(3) }, state);

        var read = TrainingCheckpoint.Read(work.Path)!.Value;
        Assert.AreEqual(TrainingCheckpoint.FormatVersion, read.State.FormatVersion);
        Assert.AreEqual((7L, 7L, "abc", 0.5, 4L), (read.State.Step, read.State.OptimizerSteps, read.State.Fingerprint, read.State.BestValue!.Value, read.State.BestStep));
        Assert.AreEqual(1, read.State.Task!["epoch"]!.GetValue<int>());
        CollectionAssert.AreEqual(new[] { 1f, 1f, 1f }, read.Tensors["param.w"].data<float>().ToArray());
        StringAssert.Contains(File.ReadAllText(work.File("checkpoint.json")), "\"format_version\": 2");
    }

    /// <summary>
    /// A fine-tuning checkpoint of the library before the engine (its state in the metadata without a version, or in
    /// checkpoint.json only) is refused with what to do: never ignored, which would restart the run.
    /// </summary>
    [TestMethod]
    [DataRow(true)]
    [DataRow(false)]
    public void AnUnversionedFineTuningCheckpointIsRefusedNeverRestarted(bool stateInMetadata)
    {
        using var work = new TempFolder("lt-ckpt-format-");
        using var scope = NewDisposeScope();
        const string json = """{"Step":5,"Epoch":0,"BatchInEpoch":5,"OptimizerSteps":5,"BestValidationLoss":null,"EpochsWithoutImprovement":0,"Fingerprint":"f","HasBestWeights":false}""";
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["step"] = "5" };
        if (stateInMetadata)
        {
            metadata["training_state"] = json;
        }

        SafeTensors.WriteFile(work.File("checkpoint.safetensors"), new Dictionary<string, Tensor> { ["param.w"] = ones(3) }, metadata);
        File.WriteAllText(work.File("checkpoint.json"), json);

        var error = Assert.ThrowsExactly<InvalidDataException>(() => TrainingCheckpoint.ReadState(work.Path));
        StringAssert.Contains(error.Message, stateInMetadata ? "no format version" : "early version");
        StringAssert.Contains(error.Message, "version that wrote it");
    }

    /// <summary>The one schedule's fine-tuning and constant shapes (the pretraining shapes are tested with the pretrainer).</summary>
    [TestMethod]
    public void TheScheduleWarmsUpThenDecaysLinearlyToZeroOrHoldsThePeak()
    {
        var linear = LearningRateSchedule.Linear(peak: 1.0, totalSteps: 10, warmupRatio: 0.2);
        Assert.AreEqual(2, linear.WarmupSteps, "ceil(10 × 0.2)");
        CollectionAssert.AreEqual(new[] { 0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125 }, Enumerable.Range(0, 10).Select(s => linear.At(s)).ToArray());
        Assert.AreEqual(0.0, linear.At(10));
        var constant = new LearningRateSchedule(ScheduleShape.Constant, 0.3, 100, 3);
        Assert.AreEqual(0.1, constant.At(0), 1e-15);
        Assert.AreEqual(0.3, constant.At(50));
        Assert.AreEqual(0.3, constant.At(99));
    }
}
