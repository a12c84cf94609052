using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>One generated input: how it was made (for the report) and the bytes of the file under test.</summary>
/// <param name="Kind">The generator that made it (<c>bytes</c>, <c>json</c>, <c>structured</c>...).</param>
/// <param name="Bytes">The content of the file under test.</param>
internal sealed record FuzzCase(string Kind, byte[] Bytes)
{
    public override string ToString()
    {
        var text = Encoding.UTF8.GetString(Bytes, 0, Math.Min(Bytes.Length, 400));
        return $"{Kind}, {Bytes.Length} bytes: {text}{(Bytes.Length > 400 ? "..." : string.Empty)}";
    }
}

/// <summary>
/// The bound on managed allocation while loading one file: <c>PerByte</c> bytes for each byte of the files in the
/// case folder plus a fixed <c>Constant</c>. A loader that trusted a declared size (a header length, a shape, a
/// protobuf length, a token id) would allocate in proportion to that number instead, far beyond the bound.
/// </summary>
internal sealed record AllocationBound(long PerByte, long Constant)
{
    public long For(long realBytes) => (PerByte * realBytes) + Constant;
}

/// <summary>What a fuzz run saw; written to the report and asserted on.</summary>
internal sealed class FuzzStats(string loader, AllocationBound bound)
{
    private readonly ConcurrentDictionary<string, long> _kinds = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _outcomes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _faults = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _unclassified = new();
    private readonly object _gate = new();
    private long _cases;

    public string Loader { get; } = loader;

    public AllocationBound Bound { get; } = bound;

    public long Cases => Interlocked.Read(ref _cases);

    public double MaxCaseMilliseconds { get; private set; }

    public long MaxAllocatedBytes { get; private set; }

    public double MaxAllocatedPerFileByte { get; private set; }

    public double Seconds { get; set; }

    public int Threads { get; set; }

    public IReadOnlyDictionary<string, long> Kinds => _kinds;

    public IReadOnlyDictionary<string, long> Outcomes => _outcomes;

    /// <summary>Gets or sets the fault classes to count: a rejected case counts under the first whose text its message contains.</summary>
    public IReadOnlyList<(string Fault, string MessagePart)> FaultClasses { get; set; } = [];

    public IReadOnlyDictionary<string, long> Faults => _faults;

    public void Record(string kind, Exception? error, TimeSpan elapsed, long allocated, long realBytes)
    {
        Interlocked.Increment(ref _cases);
        _kinds.AddOrUpdate(kind, 1, (_, n) => n + 1);
        _outcomes.AddOrUpdate(error is null ? "accepted" : error.GetType().Name, 1, (_, n) => n + 1);
        if (error is not null)
        {
            var fault = FaultClasses.FirstOrDefault(f => error.Message.Contains(f.MessagePart, StringComparison.Ordinal)).Fault ?? "other";
            _faults.AddOrUpdate(fault, 1, (_, n) => n + 1);
            if (fault == "other" && _unclassified.Count < 5)
            {
                _unclassified.Enqueue(error.Message.Length > 300 ? error.Message[..300] : error.Message);
            }
        }

        lock (_gate)
        {
            MaxCaseMilliseconds = Math.Max(MaxCaseMilliseconds, elapsed.TotalMilliseconds);
            MaxAllocatedBytes = Math.Max(MaxAllocatedBytes, allocated);
            MaxAllocatedPerFileByte = Math.Max(MaxAllocatedPerFileByte, (double)allocated / Math.Max(1, realBytes));
        }
    }

    public JsonObject ToJson() => new()
    {
        ["cases"] = Cases,
        ["threads"] = Threads,
        ["seconds"] = Math.Round(Seconds, 2),
        ["maxCaseMilliseconds"] = Math.Round(MaxCaseMilliseconds, 2),
        ["maxAllocatedBytes"] = MaxAllocatedBytes,
        ["maxAllocatedPerFileByte"] = Math.Round(MaxAllocatedPerFileByte, 2),
        ["allocationBound"] = $"{Bound.PerByte} x file bytes + {Bound.Constant}",
        ["kinds"] = new JsonObject(_kinds.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => KeyValuePair.Create(k.Key, (JsonNode?)k.Value))),
        ["outcomes"] = new JsonObject(_outcomes.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => KeyValuePair.Create(k.Key, (JsonNode?)k.Value))),
        ["faults"] = new JsonObject(_faults.OrderByDescending(k => k.Value).Select(k => KeyValuePair.Create(k.Key, (JsonNode?)k.Value))),
        ["unclassifiedExamples"] = new JsonArray([.. _unclassified.Select(m => (JsonNode?)m)]),
    };

    /// <summary>Asserts that the generators reached each of <paramref name="faults"/> at least once.</summary>
    public void AssertReached(params string[] faults)
    {
        var missed = faults.Where(f => !_faults.ContainsKey(f)).ToArray();
        Assert.IsTrue(missed.Length == 0, $"{Loader}: no case reached {string.Join(", ", missed)}; {this}");
    }

    public override string ToString()
        => $"{Loader}: {Cases} cases in {Seconds:F1} s on {Threads} thread(s); outcomes "
            + string.Join(", ", _outcomes.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value}"))
            + $"; slowest {MaxCaseMilliseconds:F1} ms; most allocated {MaxAllocatedBytes:N0} B ({MaxAllocatedPerFileByte:F1} B per file byte); faults "
            + string.Join(", ", _faults.OrderByDescending(o => o.Value).Select(o => $"{o.Key} {o.Value}"));
}

/// <summary>
/// Runs generated hostile files at a loader through CsCheck and checks the contract of every case: it loads, or it
/// fails with <see cref="InvalidDataException"/>, <see cref="ArgumentException"/> or
/// <see cref="FileNotFoundException"/> whose message names the file; it finishes within
/// <see cref="MaxCaseTime"/>; and it allocates no more than its <see cref="AllocationBound"/> of the files' real size.
/// A case that runs past <see cref="HangTime"/> fails the run at once (the stuck thread is abandoned) and its input
/// is saved under TestResults. Counts go to <c>TestResults/reliability-fuzz.json</c>.
/// </summary>
internal static class Fuzz
{
    /// <summary>The longest one case may take, generous for a loaded 2-core CI machine; cases take about a millisecond.</summary>
    public static readonly TimeSpan MaxCaseTime = TimeSpan.FromSeconds(2);

    /// <summary>A case still running after this long is a hang.</summary>
    public static readonly TimeSpan HangTime = TimeSpan.FromSeconds(20);

    private static readonly Lock _reportGate = new();
    private static readonly ConcurrentDictionary<string, byte[]> _written = new(StringComparer.Ordinal);

    /// <summary>Cases per loader: 10,000, or <c>LABELTUNING_FUZZ_CASES</c>.</summary>
    public static int CasesPerLoader
        => int.TryParse(Environment.GetEnvironmentVariable("LABELTUNING_FUZZ_CASES"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
            ? n
            : 10_000;

    /// <summary>Gets TestResults beside the test assembly (where the test platform writes its own results): the report and the inputs of failed cases go there.</summary>
    public static string ResultsFolder => Path.Combine(AppContext.BaseDirectory, "TestResults");

    public static string ReportPath => Path.Combine(ResultsFolder, "reliability-fuzz.json");

    /// <summary>Whether an exception is one a loader may throw for a bad file.</summary>
    public static bool IsExpected(Exception error)
        => error is InvalidDataException or ArgumentException or FileNotFoundException;

    /// <summary>Whether <paramref name="message"/> names <paramref name="file"/> (by path or by file name).</summary>
    public static bool NamesFile(string message, string file)
        => message.Contains(file, StringComparison.Ordinal) || message.Contains(Path.GetFileName(file), StringComparison.Ordinal);

    /// <summary>
    /// Runs <paramref name="cases"/> inputs from <paramref name="gen"/>. <paramref name="write"/> writes one into a
    /// per-thread folder and returns the path of the file under test; <paramref name="load"/> loads the folder
    /// (and may check more, throwing <see cref="AssertFailedException"/>).
    /// </summary>
    public static FuzzStats Run(
        string loader,
        Gen<FuzzCase> gen,
        Func<string, FuzzCase, string> write,
        Action<string, string> load,
        AllocationBound bound,
        int? cases = null,
        TestContext? context = null,
        IReadOnlyList<(string Fault, string MessagePart)>? faults = null)
        => Run(loader, gen, write, (folder, file) =>
        {
            load(folder, file);
            return null;
        }, bound, cases, context, faults);

    /// <summary>
    /// As <see cref="Run(string, Gen{FuzzCase}, Func{string, FuzzCase, string}, Action{string, string}, AllocationBound, int?, TestContext?, IReadOnlyList{ValueTuple{string, string}}?)"/>,
    /// where a successful load returns a probe that uses what was loaded (encodes text with a tokenizer). The probe
    /// runs within the case's time bound but outside its allocation bound, and must not throw.
    /// </summary>
    public static FuzzStats Run(
        string loader,
        Gen<FuzzCase> gen,
        Func<string, FuzzCase, string> write,
        Func<string, string, Action?> load,
        AllocationBound bound,
        int? cases = null,
        TestContext? context = null,
        IReadOnlyList<(string Fault, string MessagePart)>? faults = null)
    {
        var count = cases ?? CasesPerLoader;
        var stats = new FuzzStats(loader, bound) { Threads = Environment.ProcessorCount, FaultClasses = faults ?? [] };
        var root = CreateRoot();
        var folders = new ThreadLocal<string>(() => Directory.CreateDirectory(Path.Combine(root, Guid.NewGuid().ToString("N")[..8])).FullName);
        var running = new ConcurrentDictionary<int, (long Started, FuzzCase Case)>();
        Exception? failure = null;

        void RunOne(FuzzCase input)
        {
            var folder = folders.Value!;
            var file = write(folder, input);
            var realBytes = Directory.EnumerateFiles(folder).Sum(f => new FileInfo(f).Length);
            running[Environment.CurrentManagedThreadId] = (Stopwatch.GetTimestamp(), input);
            var (error, elapsed, allocated) = Measure(load, folder, file);
            if (allocated > bound.For(realBytes))
            {
                // The first run of a code path loads resources and types; measure the case again, warm.
                (error, elapsed, allocated) = Measure(load, folder, file);
            }

            running.TryRemove(Environment.CurrentManagedThreadId, out _);
            stats.Record(input.Kind, error, elapsed, allocated, realBytes);
            try
            {
                Check(error, elapsed, allocated, realBytes, file);
            }
            catch (AssertFailedException e)
            {
                throw new AssertFailedException($"{e.Message}{Environment.NewLine}The input is saved at '{Save(loader, "failure", input)}'.", e.InnerException ?? e);
            }
        }

        void Check(Exception? error, TimeSpan elapsed, long allocated, long realBytes, string file)
        {

            if (error is not null && !IsExpected(error))
            {
                throw new AssertFailedException($"{loader}: threw {error.GetType().Name} where InvalidDataException, ArgumentException or FileNotFoundException was expected:{Environment.NewLine}{error}", error);
            }

            if (error is not null && !NamesFile(error.Message, file))
            {
                throw new AssertFailedException($"{loader}: the {error.GetType().Name} does not name '{Path.GetFileName(file)}': {error.Message}", error);
            }

            if (elapsed > MaxCaseTime)
            {
                throw new AssertFailedException($"{loader}: one case took {elapsed.TotalMilliseconds:F0} ms, more than {MaxCaseTime.TotalMilliseconds:F0} ms.");
            }

            if (allocated > bound.For(realBytes))
            {
                throw new AssertFailedException($"{loader}: one case allocated {allocated:N0} bytes for {realBytes:N0} bytes of files, more than the bound of {bound.For(realBytes):N0} ({bound.PerByte} per byte + {bound.Constant}).");
            }
        }

        var watch = Stopwatch.StartNew();
        var worker = new Thread(() =>
        {
            try
            {
                gen.Sample(RunOne, iter: count, threads: stats.Threads, print: c => c.ToString());
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { IsBackground = true, Name = $"fuzz {loader}" };
        worker.Start();
        while (!worker.Join(100))
        {
            foreach (var (_, (started, input)) in running)
            {
                if (Stopwatch.GetElapsedTime(started) > HangTime)
                {
                    var saved = Save(loader, "hang", input);
                    Assert.Fail($"{loader}: a case has run for more than {HangTime.TotalSeconds:F0} s (a hang); its input is saved at '{saved}': {input}");
                }
            }
        }

        stats.Seconds = watch.Elapsed.TotalSeconds;
        folders.Dispose();
        foreach (var path in _written.Keys.Where(p => p.StartsWith(root, StringComparison.Ordinal)))
        {
            _written.TryRemove(path, out _);
        }

        TryDelete(root);
        if (failure is not null)
        {
            throw new AssertFailedException($"{loader}: {failure.Message}{Environment.NewLine}{failure.InnerException?.Message}", failure);
        }

        Assert.IsTrue(stats.Cases >= count, $"{loader}: ran {stats.Cases} cases, expected {count}.");
        Report(stats, context);
        return stats;
    }

    /// <summary>
    /// Writes a file and returns its path; a file that already holds this very array (a seed) is left alone. The old
    /// file is deleted first: ext4 flushes a file that is truncated and rewritten (auto_da_alloc), and writes were
    /// most of the suite's time.
    /// </summary>
    public static string WriteFile(string folder, string name, byte[] bytes)
    {
        var path = Path.Combine(folder, name);
        if (_written.TryGetValue(path, out var last) && ReferenceEquals(last, bytes) && File.Exists(path))
        {
            return path;
        }

        File.Delete(path);
        File.WriteAllBytes(path, bytes);
        _written[path] = bytes;
        return path;
    }

    /// <summary>The fuzz folders live in memory (/dev/shm) where there is such a file system, else in the temp folder.</summary>
    private static string CreateRoot()
    {
        const string Shm = "/dev/shm";
        // No loader or file name in the path: a message that names only the folder must not pass as naming the file.
        var name = $"lt-fuzz-{Guid.NewGuid():N}";
        try
        {
            if (OperatingSystem.IsLinux() && Directory.Exists(Shm))
            {
                return Directory.CreateDirectory(Path.Combine(Shm, name)).FullName;
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), name)).FullName;
    }

    private static (Exception? Error, TimeSpan Elapsed, long Allocated) Measure(Func<string, string, Action?> load, string folder, string file)
    {
        Exception? error = null;
        Action? probe = null;
        var before = GC.GetAllocatedBytesForCurrentThread();
        var start = Stopwatch.GetTimestamp();
        try
        {
            probe = load(folder, file);
        }
        catch (Exception e)
        {
            error = e;
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        try
        {
            probe?.Invoke();
        }
        catch (Exception e)
        {
            error = new AssertFailedException($"'{file}' loaded, but using what was loaded threw {e.GetType().Name}: {e.Message}", e);
        }

        return (error, Stopwatch.GetElapsedTime(start), allocated);
    }

    private static string Save(string loader, string what, FuzzCase input)
    {
        Directory.CreateDirectory(ResultsFolder);
        var path = Path.Combine(ResultsFolder, $"fuzz-{loader}-{what}-{Guid.NewGuid():N}.bin");
        File.WriteAllBytes(path, input.Bytes);
        return path;
    }

    private static void Report(FuzzStats stats, TestContext? context)
    {
        var line = stats.ToString();
        context?.WriteLine(line);
        Console.WriteLine(line);
        lock (_reportGate)
        {
            Directory.CreateDirectory(ResultsFolder);
            JsonObject report;
            try
            {
                report = File.Exists(ReportPath) ? JsonNode.Parse(File.ReadAllText(ReportPath)) as JsonObject ?? [] : [];
            }
            catch (JsonException)
            {
                report = [];
            }

            report[stats.Loader] = stats.ToJson();
            File.WriteAllText(ReportPath, report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
            // A memory map still closing; the temp folder is cleaned later.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
