using Microsoft.ML.LabelTuning.Runtime;

namespace Microsoft.ML.LabelTuning.Tests.Runtime;

[TestClass]
public sealed class NativeLoaderTests
{
    [TestMethod]
    public void InTheNuGetCacheLayoutItLoadsTheHighestLibTorchAndTheTorchSharpPackagesNativeLibrary()
    {
        var packages = Directory.CreateTempSubdirectory("lt-packages-").FullName;
        try
        {
            var assembly = Touch(packages, "torchsharp/0.107.0/lib/net8.0/TorchSharp.dll");
            var libTorchSharp = Touch(packages, "torchsharp/0.107.0/runtimes/linux-x64/native/libLibTorchSharp.so");
            Touch(packages, "libtorch-cpu-linux-x64/2.9.1/runtimes/linux-x64/native/libtorch.so");
            var libtorch = Touch(packages, "libtorch-cpu-linux-x64/2.10.0/runtimes/linux-x64/native/libtorch.so");
            Directory.CreateDirectory(Path.Combine(packages, "libtorch-cpu-linux-x64", "not-a-version"));
            var app = Directory.CreateDirectory(Path.Combine(packages, "tool")).FullName;

            Assert.AreEqual((libtorch, libTorchSharp), NativeLoader.NativePaths(assembly, app), "2.10.0 is newer than 2.9.1 (versions, not strings)");

            Touch(app, "runtimes/linux-x64/native/libLibTorchSharp.so");
            Assert.IsNull(NativeLoader.NativePaths(assembly, app), "an application with the native files beside it is left to TorchSharp");
        }
        finally
        {
            Directory.Delete(packages, recursive: true);
        }
    }

    [TestMethod]
    public void OutsideTheNuGetCacheLayoutOrWithoutLibTorchItDoesNothing()
    {
        var root = Directory.CreateTempSubdirectory("lt-app-").FullName;
        try
        {
            var app = Touch(root, "bin/TorchSharp.dll");
            Assert.IsNull(NativeLoader.NativePaths(app, Path.GetDirectoryName(app)!));
            var cached = Touch(root, "packages/torchsharp/0.107.0/lib/net8.0/TorchSharp.dll");
            Touch(root, "packages/torchsharp/0.107.0/runtimes/linux-x64/native/libLibTorchSharp.so");
            Assert.IsNull(NativeLoader.NativePaths(cached, Path.Combine(root, "bin")), "no libtorch package: TorchSharp says what is missing");
            Assert.IsNull(NativeLoader.NativePaths(string.Empty, root));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static string Touch(string root, string relative)
    {
        var path = Path.Combine(root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, []);
        return path;
    }
}
