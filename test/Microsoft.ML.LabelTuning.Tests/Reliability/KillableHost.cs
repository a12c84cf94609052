using System.Diagnostics;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// The TestHost console started as a child process that a test can watch line by line and kill with SIGKILL
/// (<see cref="Process.Kill()"/> sends SIGKILL on Linux and macOS, TerminateProcess on Windows: no handler runs).
/// </summary>
internal sealed class KillableHost : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly System.Text.StringBuilder _stderr = new();
    private readonly string _description;

    private KillableHost(Process process, string description)
    {
        _process = process;
        _description = description;
    }

    /// <summary>Gets every stdout line so far (after <see cref="WaitForExit"/> or <see cref="Kill"/>, all of them).</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return _lines.ToList();
            }
        }
    }

    /// <summary>Gets the process's stderr so far.</summary>
    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Starts <c>TestHost</c> with <paramref name="arguments"/>, one torch thread (deterministic and light on a shared machine).</summary>
    public static KillableHost Start(params string[] arguments)
    {
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
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.LabelTuning.TestHost.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["LABELTUNING_THREADS"] = "1";
        var process = new Process { StartInfo = start };
        var host = new KillableHost(process, "TestHost " + string.Join(' ', arguments));
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (host._lines)
                {
                    host._lines.Add(e.Data);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (host._stderr)
                {
                    host._stderr.AppendLine(e.Data);
                }
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return host;
    }

    /// <summary>Polls stdout until a line matches; fails the test if the process exits or the time runs out first.</summary>
    public string WaitForLine(Func<string, bool> match, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var found = Lines.FirstOrDefault(match);
            if (found is not null)
            {
                return found;
            }

            if (_process.HasExited)
            {
                _process.WaitForExit();
                found = Lines.FirstOrDefault(match);
                return found ?? throw new AssertFailedException(
                    $"{_description} exited with {_process.ExitCode} before printing the awaited line. stdout tail: " +
                    $"{string.Join(" | ", Lines.TakeLast(5))}; stderr: {Stderr}");
            }

            if (clock.Elapsed > timeout)
            {
                throw new AssertFailedException($"{_description} did not print the awaited line in {timeout.TotalSeconds:F0} s. stdout tail: {string.Join(" | ", Lines.TakeLast(5))}");
            }

            Thread.Sleep(5);
        }
    }

    /// <summary>Kills the process with SIGKILL and waits until it is gone and its output is drained.</summary>
    public void Kill()
    {
        try
        {
            _process.Kill();
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }

        _process.WaitForExit();
    }

    /// <summary>Waits for a normal exit; fails the test on a timeout or a non-zero exit code.</summary>
    public void WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
        {
            Kill();
            throw new AssertFailedException($"{_description} did not finish in {timeout.TotalSeconds:F0} s.");
        }

        _process.WaitForExit(); // drains the asynchronous output
        if (_process.ExitCode != 0)
        {
            throw new AssertFailedException($"{_description} exited with {_process.ExitCode}: {Stderr}");
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Kill();
        }

        _process.Dispose();
    }
}
