using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>
/// Loads TorchSharp's native library where TorchSharp's own loader fails: in a notebook kernel (.NET Interactive,
/// dotnet-repl), TorchSharp.dll runs from the NuGet cache (<c>~/.nuget/packages/torchsharp/0.107.0/lib/net8.0</c>),
/// with libtorch in another package's folder. TorchSharp there first loads <c>libtorch_cpu.so</c> from the libtorch
/// package, then a consolidated copy of <c>libLibTorchSharp.so</c> that no longer binds to it
/// (<c>undefined symbol: _ZNK3c105Error4whatEv</c>). Loading the libtorch package's <c>libtorch.so</c> and then the
/// TorchSharp package's <c>libLibTorchSharp.so</c> by path, before the first use of torch, resolves them together,
/// and TorchSharp's loader finds them already there. In an ordinary application (the native files beside the app)
/// this does nothing.
/// </summary>
internal static class NativeLoader
{
    private static readonly object _gate = new();
    private static bool _attempted;

    /// <summary>Gets what went wrong when the preload was tried and failed, or null.</summary>
    public static string? Failure { get; private set; }

    /// <summary>Runs when the library is first used, so that a notebook's first cell needs nothing but its #r lines.</summary>
#pragma warning disable CA2255 // The initializer must run before any type of the library touches TorchSharp.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Initialize() => EnsureLoaded();

    /// <summary>Preloads the native libraries from the NuGet package layout once, when TorchSharp runs from it.</summary>
    public static void EnsureLoaded()
    {
        lock (_gate)
        {
            if (_attempted)
            {
                return;
            }

            _attempted = true;
            try
            {
                Preload();
            }
            catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or IOException or UnauthorizedAccessException)
            {
                Failure = e.Message;
                var hint = e.Message.Contains("GLIBCXX", StringComparison.Ordinal)
                    ? " This distro's libstdc++ is older than libtorch needs: run ./build.sh in the repository once (it patches the NuGet cache's copy), or see docs/troubleshooting.md."
                    : string.Empty;
                Console.Error.WriteLine($"Microsoft.ML.LabelTuning: could not load TorchSharp's native library from the NuGet cache: {e.Message}{hint}");
            }
        }
    }

    private static void Preload()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            return;
        }

        if (NativePaths(typeof(TorchSharp.torch).Assembly.Location, AppContext.BaseDirectory) is { } paths)
        {
            NativeLibrary.Load(paths.LibTorch);
            NativeLibrary.Load(paths.LibTorchSharp);
        }
    }

    /// <summary>
    /// The libtorch and TorchSharp native libraries to load by path when <paramref name="torchSharpAssembly"/> sits in
    /// the NuGet cache layout (<c>&lt;packages&gt;/torchsharp/&lt;version&gt;/lib/&lt;tfm&gt;/TorchSharp.dll</c>) and no
    /// <c>libLibTorchSharp.so</c> sits beside it or the application; null otherwise (TorchSharp loads them itself, or
    /// says what is missing).
    /// </summary>
    internal static (string LibTorch, string LibTorchSharp)? NativePaths(string torchSharpAssembly, string appBase)
    {
        if (string.IsNullOrEmpty(torchSharpAssembly))
        {
            return null;
        }

        var lib = Path.GetDirectoryName(torchSharpAssembly)!;
        if (File.Exists(Path.Combine(lib, "libLibTorchSharp.so")) || File.Exists(Path.Combine(appBase, "libLibTorchSharp.so"))
            || File.Exists(Path.Combine(appBase, "runtimes", "linux-x64", "native", "libLibTorchSharp.so")))
        {
            return null; // an application with the native files beside it
        }

        var packageRoot = Directory.GetParent(lib)?.Parent;
        var packages = packageRoot?.Parent?.Parent;
        if (packageRoot?.Parent is null || packages is null || !string.Equals(packageRoot.Parent.Name, "torchsharp", StringComparison.OrdinalIgnoreCase))
        {
            return null; // not the NuGet cache layout
        }

        var libTorchSharp = Path.Combine(packageRoot.FullName, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        var libtorch = FindLibTorch(packages.FullName);
        return File.Exists(libTorchSharp) && libtorch is not null ? (libtorch, libTorchSharp) : null;
    }

    /// <summary><c>libtorch.so</c> of the highest version of the CPU libtorch package in the NuGet cache, or null.</summary>
    private static string? FindLibTorch(string packages)
    {
        var package = Path.Combine(packages, "libtorch-cpu-linux-x64");
        if (!Directory.Exists(package))
        {
            return null;
        }

        return Directory.GetDirectories(package)
            .Select(dir => (Version: Version.TryParse(Path.GetFileName(dir), out var v) ? v : null, Path: Path.Combine(dir, "runtimes", "linux-x64", "native", "libtorch.so")))
            .Where(c => c.Version is not null && File.Exists(c.Path))
            .OrderByDescending(c => c.Version)
            .Select(c => c.Path)
            .FirstOrDefault();
    }
}
