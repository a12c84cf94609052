using System.Runtime.InteropServices;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>
/// An opt-in setting of the C heap for tensor memory on Linux (glibc). Torch's CPU tensors come from <c>malloc</c>. With
/// glibc's defaults the threshold above which a block is mapped (and returned to the system when freed) starts at
/// 128 KiB and rises to the largest freed block, up to 32 MiB; after a model load frees its large source buffers,
/// activations of a few MB to 32 MB (a 1B model's per-layer buffers) come from the heap, where freed space is kept and
/// fragments: scoring a TinyLlama-size model leaves 0.4-0.7 GB resident on top of the weights. With
/// <c>LABELTUNING_MALLOC=lean</c> the library fixes the map threshold at <see cref="MapThresholdBytes"/> (blocks from
/// 4 MB are mapped and returned when freed) and the trim threshold at <see cref="TrimThresholdBytes"/>, once per
/// process: resident memory then stays within a few percent of the weights, but every large buffer is mapped and
/// faulted in afresh, which cost 20-30% of step and scoring speed on the TinyLlama shape (docs/performance.md), so it
/// is not the default. Unset or <c>default</c> leaves the heap as the process has it (as do glibc's own
/// <c>MALLOC_MMAP_THRESHOLD_</c> and <c>MALLOC_TRIM_THRESHOLD_</c>, which take precedence); other C libraries are left alone.
/// </summary>
internal static class NativeHeap
{
    /// <summary>The environment variable that selects the setting: <c>lean</c>, or <c>default</c> (the same as unset).</summary>
    internal const string Variable = "LABELTUNING_MALLOC";

    /// <summary>Blocks of this size and larger are mapped, and given back to the system when freed.</summary>
    internal const int MapThresholdBytes = 4 << 20;

    /// <summary>Free space at the top of the heap beyond this is given back to the system.</summary>
    internal const int TrimThresholdBytes = 32 << 20;

    private const int TrimThresholdParameter = -1; // M_TRIM_THRESHOLD in glibc's malloc.h
    private const int MapThresholdParameter = -3;  // M_MMAP_THRESHOLD

    /// <summary>Gets what <see cref="Configure"/> did, for logs and benchmarks.</summary>
    internal static string State { get; private set; } = "not configured";

    /// <summary>Applies the settings (called once, by <see cref="TorchRuntime.EnsureInitialized"/>).</summary>
    internal static void Configure()
    {
        if (!OperatingSystem.IsLinux())
        {
            State = "not Linux: the C library's defaults";
            return;
        }

        if (!IsLean(Environment.GetEnvironmentVariable(Variable)))
        {
            State = "glibc defaults";
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
            var trim = Mallopt(TrimThresholdParameter, TrimThresholdBytes);
            var map = Mallopt(MapThresholdParameter, MapThresholdBytes);
            State = trim == 1 && map == 1
                ? $"lean: map threshold {MapThresholdBytes >> 20} MiB, trim threshold {TrimThresholdBytes >> 20} MiB"
                : "mallopt refused: unchanged";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            State = "no mallopt (not glibc): unchanged";
        }
    }

    /// <summary>Reads the variable's value: true for <c>lean</c>; false when unset, empty or <c>default</c>.</summary>
    /// <exception cref="InvalidOperationException">Any other value, named with the variable.</exception>
    internal static bool IsLean(string? value)
    {
        if (string.IsNullOrEmpty(value) || string.Equals(value, "default", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        return string.Equals(value, "lean", StringComparison.OrdinalIgnoreCase)
            ? true
            : throw new InvalidOperationException($"{Variable} must be 'lean' or 'default' (or unset) but is '{value}'.");
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int Mallopt(int parameter, int value);
}
