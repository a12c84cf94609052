using Microsoft.ML.LabelTuning.Runtime;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Tests.Runtime;

[TestClass]
public sealed class NativeHeapTests
{
    [TestMethod]
    public void PhasedIsTheDefaultAndAnUnknownValueIsRefusedByName()
    {
        Assert.AreEqual(HeapMode.Phased, NativeHeap.ParseMode(null));
        Assert.AreEqual(HeapMode.Phased, NativeHeap.ParseMode(""));
        Assert.AreEqual(HeapMode.Phased, NativeHeap.ParseMode("default"));
        Assert.AreEqual(HeapMode.Phased, NativeHeap.ParseMode("Phased"));
        Assert.AreEqual(HeapMode.Lean, NativeHeap.ParseMode("LEAN"));
        Assert.AreEqual(HeapMode.Off, NativeHeap.ParseMode("off"));
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => NativeHeap.ParseMode("small"));
        StringAssert.Contains(error.Message, NativeHeap.Variable);
        StringAssert.Contains(error.Message, "'small'");
        StringAssert.Contains(error.Message, "'lean'");
        StringAssert.Contains(error.Message, "'off'");
    }

    [TestMethod]
    public void TheRuntimeReportsWhatItDidWithTheHeap()
    {
        TorchRuntime.EnsureInitialized();
        var mode = NativeHeap.ParseMode(Environment.GetEnvironmentVariable(NativeHeap.Variable));
        if (!OperatingSystem.IsLinux())
        {
            StringAssert.StartsWith(NativeHeap.State, "not Linux");
        }
        else if (NativeHeap.Usage() is null || mode == HeapMode.Off
            || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_")))
        {
            Assert.AreEqual(HeapMode.Off, NativeHeap.Mode, NativeHeap.State);
        }
        else
        {
            Assert.AreEqual(mode, NativeHeap.Mode, NativeHeap.State);
            StringAssert.StartsWith(NativeHeap.State, mode == HeapMode.Phased ? "phased" : "lean");
            StringAssert.Contains(NativeHeap.State, "huge pages");
        }
    }

    [TestMethod]
    public void OutsideFitsLargeBuffersAreMappedAndWhileOneRunsTheyComeFromTheHeap()
    {
        TorchRuntime.EnsureInitialized();
        if (NativeHeap.Mode != HeapMode.Phased)
        {
            Assert.Inconclusive($"The heap is not phased here: {NativeHeap.State}");
        }

        const long Floats = 3 << 20;      // 12 MiB: above the serving map threshold, below the training one
        const long LargerFloats = 6 << 20; // 24 MiB: larger than any block this test frees into the heap
        long MappedBy(Func<torch.Tensor> allocate)
        {
            var before = NativeHeap.Usage()!.Value.Mapped;
            using var tensor = allocate();
            return NativeHeap.Usage()!.Value.Mapped - before;
        }

        // Serving: a buffer above the map threshold is mapped, unless a free heap block left by earlier work fits it
        // (the serving trim threshold lets up to 32 MiB stay free): ask for more than every free heap byte.
        var usage = NativeHeap.Usage()!.Value;
        var servingFloats = Math.Max(Floats, ((usage.Heap - usage.InUse) / 4) + (1 << 20));
        Assert.IsGreaterThanOrEqualTo(servingFloats * 4, MappedBy(() => torch.empty(servingFloats)), "serving: a buffer above the threshold is mapped");
        using (NativeHeap.ForTraining())
        {
            using (NativeHeap.ForTraining())
            {
                Assert.AreEqual(0, MappedBy(() => torch.empty(Floats)), "training: a 12 MiB buffer comes from the heap");
            }

            Assert.AreEqual(0, MappedBy(() => torch.empty(Floats)), "one fit still runs: still the training thresholds");
        }

        // A block the fit freed into the heap may serve a later request of its size (its pages were given back when
        // the fit ended); a request larger than any such block shows the serving threshold is back.
        Assert.IsGreaterThanOrEqualTo(LargerFloats * 4, MappedBy(() => torch.empty(LargerFloats)), "the last fit ended: serving again");
    }
}
