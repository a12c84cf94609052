using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Runtime;

[TestClass]
public sealed class DeviceSelectionTests
{
    [TestMethod]
    public void CpuByDefaultAndGpuRequestsFollowFallbackToCpu()
    {
        Assert.AreEqual(DeviceType.CPU, DeviceSelection.Select(null, fallbackToCpu: false).type);
        if (cuda.is_available())
        {
            Assert.AreEqual(DeviceType.CUDA, DeviceSelection.Select(0, fallbackToCpu: false).type);
            return;
        }

        Assert.AreEqual(DeviceType.CPU, DeviceSelection.Select(0, fallbackToCpu: true).type);
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => DeviceSelection.Select(0, fallbackToCpu: false));
        StringAssert.Contains(error.Message, "CUDA is not available");
        StringAssert.Contains(error.Message, "FallbackToCpu");
    }

    [TestMethod]
    public void DtypeNamesParseAndUnknownOnesAreRejected()
    {
        Assert.AreEqual(ScalarType.BFloat16, DeviceSelection.ParseDtype("bfloat16"));
        Assert.AreEqual(ScalarType.Float16, DeviceSelection.ParseDtype("fp16"));
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => DeviceSelection.ParseDtype("int4")).Message, "int4");
    }

    [TestMethod]
    [TestCategory("Gpu")]
    public void TheDecoderGivesTheSameHiddenStatesOnCuda()
    {
        if (!cuda.is_available())
        {
            Assert.Inconclusive("No CUDA device: this test runs where libtorch-cuda and a GPU are present (-p:TorchBackend=cuda).");
        }

        var folder = TinyModels.CreateFolder(seed: 61);
        try
        {
            using var scope = NewDisposeScope();
            using var cpuModel = CheckpointLoader.LoadModel(folder);
            using var gpuModel = CheckpointLoader.LoadModel(folder, CUDA);
            var ids = randint(3, 400, [2, 9]);
            using var noGrad = no_grad();
            var onCpu = cpuModel.forward(new LlamaInput { InputIds = ids }).LastHiddenState;
            var onGpu = gpuModel.forward(new LlamaInput { InputIds = ids.cuda() }).LastHiddenState.cpu();
            Assert.IsTrue((onCpu - onGpu).abs().max().item<float>() < 1e-3);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
