using System.Diagnostics;
using System.Text;

namespace Microsoft.ML.LabelTuning.Tests.Foundation;

/// <summary>build.sh's set-up step, run as a new user would run it (issue 17).</summary>
[TestClass]
public sealed class BuildScriptTests
{
    /// <summary>
    /// A machine with many shared libraries prints a long <c>ldconfig -p</c>. build.sh used to pipe it into an awk that
    /// exits at its first match, so ldconfig died of SIGPIPE once the listing passed a pipe buffer, and pipefail made
    /// that build.sh's exit status: 141, with no message (1 when run from dotnet, which ignores SIGPIPE, so ldconfig sees
    /// EPIPE instead). The stub prints a libstdc++ line first, then several MB, so the old line fails every run.
    /// </summary>
    [TestMethod]
    public void PrerequisiteCheckSurvivesALongLdconfigListing()
    {
        var bash = FindOnPath("bash");
        if (bash is null || OperatingSystem.IsWindows())
        {
            Assert.Inconclusive("build.sh needs bash, which is not on PATH here (Windows uses build.cmd).");
            return;
        }

        var buildScript = FindBuildScript();
        if (buildScript is null)
        {
            Assert.Inconclusive($"build.sh was not found above {AppContext.BaseDirectory}: the tests run outside the repository.");
            return;
        }

        var dir = Directory.CreateTempSubdirectory("lt-build-sh-");
        try
        {
            // A libstdc++ stand-in that has the symbol version build.sh looks for, so the check ends there: no apt-get.
            var libstdcxx = Path.Combine(dir.FullName, "libstdc++.so.6");
            File.WriteAllText(libstdcxx, "GLIBCXX_3.4.32\n");

            var listing = new StringBuilder();
            listing.Append("60002 libs found in cache `/etc/ld.so.cache'\n");
            listing.Append($"\tlibstdc++.so.6 (libc6,x86-64) => {libstdcxx}\n");
            for (var i = 0; i < 60000; i++)
            {
                listing.Append($"\tlibexample{i}.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libexample{i}.so.1\n");
            }

            var listingPath = Path.Combine(dir.FullName, "ldconfig-p.txt");
            File.WriteAllText(listingPath, listing.ToString());
            Assert.IsGreaterThan(1 << 20, new FileInfo(listingPath).Length, "The listing must be far larger than a pipe buffer.");

            var stubs = Directory.CreateDirectory(Path.Combine(dir.FullName, "bin")).FullName;
            WriteExecutable(Path.Combine(stubs, "ldconfig"), $"#!/bin/sh\nexec cat '{listingPath}'\n");
            WriteExecutable(Path.Combine(stubs, "dotnet"), "#!/bin/sh\nexit 0\n"); // the check only asks that it is there

            var start = new ProcessStartInfo(bash)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(buildScript);
            start.ArgumentList.Add("prerequisites");
            start.Environment["PATH"] = stubs + Path.PathSeparator + Environment.GetEnvironmentVariable("PATH");

            using var process = Process.Start(start)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            if (!process.WaitForExit(TimeSpan.FromMinutes(1)))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("./build.sh prerequisites did not finish in a minute.");
            }

            Assert.AreEqual(0, process.ExitCode, $"./build.sh prerequisites exited with {process.ExitCode} (141, or 1 where SIGPIPE is ignored as under dotnet, is ldconfig's broken pipe).\nstdout: {stdout}\nstderr: {stderr.Result}");
            if (OperatingSystem.IsLinux())
            {
                // The stub's listing was read, not skipped for a fallback.
                StringAssert.Contains(stdout, libstdcxx, $"build.sh did not report the stub's libstdc++.\nstderr: {stderr.Result}");
            }
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static void WriteExecutable(string path, string text)
    {
        File.WriteAllText(path, text);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    private static string? FindOnPath(string name)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        return path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
    }

    /// <summary>build.sh next to the solution above the test binaries, or null outside the repository.</summary>
    private static string? FindBuildScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.LabelTuning.sln")))
            {
                var script = Path.Combine(dir.FullName, "build.sh");
                return File.Exists(script) ? script : null;
            }
        }

        return null;
    }
}
