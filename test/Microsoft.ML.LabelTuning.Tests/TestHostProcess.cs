using System.Diagnostics;

namespace Microsoft.ML.LabelTuning.Tests;

/// <summary>Runs the TestHost console in a separate process, for save/load round trips in a fresh runtime.</summary>
internal static class TestHostProcess
{
    public static string Run(params string[] arguments)
    {
        var hostDll = Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.LabelTuning.TestHost.dll");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add("--runtimeconfig");
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.LabelTuning.TestHost.runtimeconfig.json"));
        start.ArgumentList.Add("--depsfile");
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.LabelTuning.TestHost.deps.json"));
        start.ArgumentList.Add(hostDll);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"TestHost {string.Join(' ', arguments)} did not finish in 5 minutes.");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"TestHost {string.Join(' ', arguments)} exited with {process.ExitCode}: {stderr.Result}");
        }

        return stdout;
    }
}
