using TorchSharp;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>
/// Process-wide torch settings. Torch's default thread count differs between libtorch builds, so the
/// library sets it explicitly once: <c>LABELTUNING_THREADS</c> when set, otherwise the processor count.
/// </summary>
public static class TorchRuntime
{
    private static readonly object _gate = new();
    private static bool _initialized;

    /// <summary>Gets the number of intra-op threads torch uses.</summary>
    public static int Threads { get; private set; }

    /// <summary>Applies the thread settings once; later calls do nothing.</summary>
    public static void EnsureInitialized()
    {
        lock (_gate)
        {
            if (_initialized)
            {
                return;
            }

            var threads = Environment.ProcessorCount;
            var configured = Environment.GetEnvironmentVariable("LABELTUNING_THREADS");
            if (!string.IsNullOrEmpty(configured))
            {
                if (!int.TryParse(configured, out threads) || threads <= 0)
                {
                    throw new InvalidOperationException(
                        $"LABELTUNING_THREADS must be a positive integer but is '{configured}'.");
                }
            }

            torch.set_num_threads(threads);
            torch.set_num_interop_threads(1);
            Threads = threads;
            _initialized = true;
        }
    }
}
