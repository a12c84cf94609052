using Microsoft.ML.LabelTuning.Runtime;

// Torch state is global: run tests one at a time.
[assembly: DoNotParallelize]

namespace Microsoft.ML.LabelTuning.Tests;

[TestClass]
public static class AssemblySetup
{
    [AssemblyInitialize]
    public static void Initialize(TestContext context)
    {
        _ = context;
        TorchRuntime.EnsureInitialized();
    }
}
