using System.Runtime.InteropServices;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>
/// How the C heap holds tensor memory on Linux (glibc). Torch's CPU tensors come from <c>malloc</c>. With glibc's own
/// settings the threshold above which a block is mapped (and returned to the system when freed) starts at 128 KiB and
/// rises to the largest freed block, up to 32 MiB; after a model load frees its large source buffers, activations of a
/// few MB to 32 MB (a 1B model's per-layer buffers) come from the heap, where freed space stays resident and fragments:
/// scoring a TinyLlama-size model left 0.4-0.7 GB resident on top of the weights, and two classifiers over one base
/// then peaked at 1.14-1.25x the base (docs/performance.md).
/// <para>
/// The library therefore sets the heap by phase (<see cref="HeapMode.Phased"/>, the default). Outside training (loading,
/// scoring, serving) blocks from <see cref="ServingMapBytes"/> are mapped and given back when freed, so resident memory
/// stays within a few percent of the weights. While a fit runs (<see cref="ForTraining"/>) the thresholds are where
/// glibc's own adjustment takes them after a load (<see cref="TrainingMapBytes"/>, trim at twice that), so a step reuses
/// its resident buffers at full speed; when the last fit ends the heap's free pages are given back
/// (<c>malloc_trim</c>). Large torch buffers (2 MB and up) are also backed by transparent huge pages (libtorch's
/// <c>THP_MEM_ALLOC_ENABLE</c>, set for the process before torch allocates), which makes mapping a block afresh about
/// three times cheaper than in 4 KiB pages.
/// </para>
/// <para>
/// <c>LABELTUNING_MALLOC</c> selects the mode: unset, <c>default</c> or <c>phased</c>; <c>lean</c> (serving thresholds
/// throughout, also while training: the least memory, 15-30% slower steps); <c>off</c> (the C library's own settings,
/// no huge pages). glibc's own <c>MALLOC_MMAP_THRESHOLD_</c> or <c>MALLOC_TRIM_THRESHOLD_</c>, when set, take precedence
/// (as <c>off</c>); other C libraries are left alone.
/// </para>
/// </summary>
internal static class NativeHeap
{
    /// <summary>The environment variable that selects the mode.</summary>
    internal const string Variable = "LABELTUNING_MALLOC";

    /// <summary>libtorch's switch for huge-page backing of buffers of 2 MB and more.</summary>
    internal const string HugePagesVariable = "THP_MEM_ALLOC_ENABLE";

    /// <summary>Outside training, blocks of this size and larger are mapped, and given back to the system when freed.</summary>
    internal const int ServingMapBytes = 4 << 20;

    /// <summary>Outside training, free space at the top of the heap beyond this is given back to the system.</summary>
    internal const int ServingTrimBytes = 32 << 20;

    /// <summary>While training, the map threshold: glibc's own ceiling for its adjustment (32 MiB on 64-bit).</summary>
    internal const int TrainingMapBytes = 32 << 20;

    /// <summary>While training, the trim threshold: twice the map threshold, as glibc's adjustment sets it.</summary>
    internal const int TrainingTrimBytes = 64 << 20;

    private const int TrimThresholdParameter = -1; // M_TRIM_THRESHOLD in glibc's malloc.h
    private const int MapThresholdParameter = -3;  // M_MMAP_THRESHOLD

    private static readonly object _gate = new();
    private static int _fits;

    /// <summary>Gets the mode <see cref="Configure"/> applied (<see cref="HeapMode.Off"/> before it ran or where nothing could be set).</summary>
    internal static HeapMode Mode { get; private set; } = HeapMode.Off;

    /// <summary>Gets what <see cref="Configure"/> did, for logs and benchmarks.</summary>
    internal static string State { get; private set; } = "not configured";

    /// <summary>Applies the mode (called once, by <see cref="TorchRuntime.EnsureInitialized"/>, before torch allocates).</summary>
    internal static void Configure()
    {
        var mode = ParseMode(Environment.GetEnvironmentVariable(Variable));
        if (!OperatingSystem.IsLinux())
        {
            State = "not Linux: the C library's defaults";
            return;
        }

        if (mode == HeapMode.Off)
        {
            State = $"{Variable}=off: the C library's settings";
            return;
        }

        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_"))
            || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("MALLOC_TRIM_THRESHOLD_")))
        {
            State = "glibc's MALLOC_*_THRESHOLD_ set by the user: unchanged";
            return;
        }

        try
        {
            // mallopt returns 1 on success; the trim threshold first, as fixing either turns off glibc's adjustment of both.
            if (!Set(ServingMapBytes, ServingTrimBytes))
            {
                State = "mallopt refused: unchanged";
                return;
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            State = "no mallopt (not glibc): unchanged";
            return;
        }

        Mode = mode;
        var hugePages = EnableHugePages();
        State = (mode == HeapMode.Lean
            ? $"lean: map threshold {ServingMapBytes >> 20} MiB, trim threshold {ServingTrimBytes >> 20} MiB throughout"
            : $"phased: map threshold {ServingMapBytes >> 20} MiB outside fits, {TrainingMapBytes >> 20} MiB while one runs")
            + $"; huge pages {hugePages}";
    }

    /// <summary>
    /// Marks a fit as running until the returned scope is disposed: in <see cref="HeapMode.Phased"/> the heap keeps
    /// training's buffers resident for reuse meanwhile, and when the last running fit ends it returns to the serving
    /// thresholds and gives the heap's free pages back. Does nothing in the other modes.
    /// </summary>
    internal static IDisposable ForTraining()
    {
        lock (_gate)
        {
            if (Mode != HeapMode.Phased)
            {
                return new FitScope(false);
            }

            if (_fits++ == 0)
            {
                Set(TrainingMapBytes, TrainingTrimBytes);
            }

            return new FitScope(true);
        }
    }

    /// <summary>Reads the variable's value; unset, empty, <c>default</c> and <c>phased</c> mean <see cref="HeapMode.Phased"/>.</summary>
    /// <exception cref="InvalidOperationException">Any other value than those, <c>lean</c> and <c>off</c>, named with the variable.</exception>
    internal static HeapMode ParseMode(string? value)
    {
        if (string.IsNullOrEmpty(value) || value.Equals("default", StringComparison.OrdinalIgnoreCase) || value.Equals("phased", StringComparison.OrdinalIgnoreCase))
        {
            return HeapMode.Phased;
        }

        if (value.Equals("lean", StringComparison.OrdinalIgnoreCase))
        {
            return HeapMode.Lean;
        }

        return value.Equals("off", StringComparison.OrdinalIgnoreCase)
            ? HeapMode.Off
            : throw new InvalidOperationException($"{Variable} must be 'phased' (the default), 'lean' or 'off' (or unset) but is '{value}'.");
    }

    /// <summary>
    /// Gets the C heap's own account (glibc's <c>mallinfo2</c>, all arenas): bytes the heap holds from the system outside
    /// mapped blocks, the part of them in use, and the bytes in mapped blocks. Null where there is no <c>mallinfo2</c>.
    /// </summary>
    internal static (long Heap, long InUse, long Mapped)? Usage()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        try
        {
            var info = MallInfo2();
            return ((long)info.Arena, (long)info.InUse, (long)info.MappedBytes);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    private static bool Set(int map, int trim) => Mallopt(TrimThresholdParameter, trim) == 1 && Mallopt(MapThresholdParameter, map) == 1;

    /// <summary>Sets libtorch's huge-page switch in the process environment (where libtorch reads it), unless the user set it.</summary>
    private static string EnableHugePages()
    {
        var given = Environment.GetEnvironmentVariable(HugePagesVariable);
        if (!string.IsNullOrEmpty(given))
        {
            return $"as {HugePagesVariable}={given} says";
        }

        try
        {
            // .NET's Environment keeps its own copy; libtorch reads the C library's, so it is set there.
            return SetEnv(HugePagesVariable, "1", 0) == 0 ? "on for buffers of 2 MB and more" : "off (setenv failed)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return "off (no setenv)";
        }
    }

    private static void EndFit()
    {
        lock (_gate)
        {
            if (--_fits == 0)
            {
                Set(ServingMapBytes, ServingTrimBytes);
                MallocTrim(0);
            }
        }
    }

    private sealed class FitScope(bool counted) : IDisposable
    {
        private bool _disposed;

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (counted)
            {
                EndFit();
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2Struct
    {
        public nuint Arena;        // non-mapped space from the system
        public nuint FreeChunks;   // ordblks
        public nuint FastChunks;   // smblks
        public nuint MappedChunks; // hblks
        public nuint MappedBytes;  // hblkhd
        public nuint Unused;       // usmblks
        public nuint FastFree;     // fsmblks
        public nuint InUse;        // uordblks
        public nuint Free;         // fordblks
        public nuint TopFree;      // keepcost
    }

    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo2Struct MallInfo2();

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int parameter, int value);
}

/// <summary>How <see cref="NativeHeap"/> sets the C heap.</summary>
internal enum HeapMode
{
    /// <summary>The C library's own settings.</summary>
    Off,

    /// <summary>Serving thresholds outside fits, training thresholds while one runs (the default).</summary>
    Phased,

    /// <summary>Serving thresholds throughout.</summary>
    Lean,
}
