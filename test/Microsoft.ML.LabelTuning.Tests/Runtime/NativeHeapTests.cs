using Microsoft.ML.LabelTuning.Runtime;

namespace Microsoft.ML.LabelTuning.Tests.Runtime;

[TestClass]
public sealed class NativeHeapTests
{
    [TestMethod]
    public void LeanIsOptInAndAnUnknownValueIsRefusedByName()
    {
        Assert.IsFalse(NativeHeap.IsLean(null));
        Assert.IsFalse(NativeHeap.IsLean(""));
        Assert.IsFalse(NativeHeap.IsLean("default"));
        Assert.IsTrue(NativeHeap.IsLean("lean"));
        Assert.IsTrue(NativeHeap.IsLean("LEAN"));
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => NativeHeap.IsLean("small"));
        StringAssert.Contains(error.Message, NativeHeap.Variable);
        StringAssert.Contains(error.Message, "'small'");
        StringAssert.Contains(error.Message, "'lean'");
    }

    [TestMethod]
    public void TheRuntimeReportsWhatItDidWithTheHeap()
    {
        TorchRuntime.EnsureInitialized();
        var lean = NativeHeap.IsLean(Environment.GetEnvironmentVariable(NativeHeap.Variable));
        if (!OperatingSystem.IsLinux())
        {
            StringAssert.StartsWith(NativeHeap.State, "not Linux");
        }
        else if (!lean)
        {
            Assert.AreEqual("glibc defaults", NativeHeap.State);
        }
        else
        {
            Assert.AreNotEqual("not configured", NativeHeap.State);
        }
    }
}
