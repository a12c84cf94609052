using System.Diagnostics;
using System.Text;

namespace Microsoft.ML.LabelTuning.Orleans.Tests;

/// <summary>LabelTuning.Worker in a separate process, with its output collected; disposing kills it.</summary>
internal sealed class WorkerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private bool _disposed;

    public WorkerProcess(params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in (string[])["exec", "--runtimeconfig", Path.Combine(AppContext.BaseDirectory, "LabelTuning.Worker.runtimeconfig.json"),
            "--depsfile", Path.Combine(AppContext.BaseDirectory, "LabelTuning.Worker.deps.json"), Path.Combine(AppContext.BaseDirectory, "LabelTuning.Worker.dll"), .. arguments])
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["LABELTUNING_THREADS"] = "1";
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public int? ExitCode => _process.HasExited ? _process.ExitCode : null;

    /// <summary>Waits until the output contains <paramref name="text"/>; false when the process exits or the time runs out first.</summary>
    public async Task<bool> WaitForAsync(string text, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (Output.Contains(text, StringComparison.Ordinal))
            {
                return true;
            }

            if (_process.HasExited)
            {
                await Task.Delay(200); // the last lines
                return Output.Contains(text, StringComparison.Ordinal);
            }

            await Task.Delay(200);
        }

        return false;
    }

    /// <summary>Waits for the process to exit; false when the time runs out.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
            _process.WaitForExit(); // flushes the asynchronous output readers
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
