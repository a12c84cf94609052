using TorchSharp;

namespace Microsoft.ML.LabelTuning.Runtime;

/// <summary>
/// Process-wide torch settings. Torch's default thread count differs between libtorch builds, so the
/// library sets it explicitly once: <c>LABELTUNING_THREADS</c> when set, otherwise the processor count. With
/// <c>LABELTUNING_MALLOC=lean</c> it also fixes glibc's heap thresholds for tensor memory once (see <c>NativeHeap</c>);
/// unset, the heap is left as the process has it.
/// </summary>
public static class TorchRuntime
{
    private static readonly object _gate = new();
    private static bool _initialized;

    /// <summary>The environment variable that sets the default thread count when no option does.</summary>
    internal const string ThreadsVariable = "LABELTUNING_THREADS";

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

            NativeHeap.Configure();
            var threads = DefaultThreads();
            torch.set_num_threads(threads);
            torch.set_num_interop_threads(1);
            Threads = threads;
            _initialized = true;
        }
    }

    /// <summary>
    /// Uses <paramref name="threads"/> intra-op threads (null keeps the default: <c>LABELTUNING_THREADS</c>, else the
    /// processor count) until the returned scope is disposed, which restores the previous count. Torch's thread count
    /// is process-wide, so fits that run at the same time on different threads share the last one set.
    /// </summary>
    internal static IDisposable UseThreads(int? threads)
    {
        EnsureInitialized();
        if (threads is not { } wanted)
        {
            return new ThreadScope(null);
        }

        if (wanted <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(threads), threads, "NumberOfThreads must be positive.");
        }

        lock (_gate)
        {
            var previous = Threads;
            if (wanted != previous)
            {
                torch.set_num_threads(wanted);
                Threads = wanted;
            }

            return new ThreadScope(previous);
        }
    }

    private static int DefaultThreads()
    {
        var configured = Environment.GetEnvironmentVariable(ThreadsVariable);
        if (string.IsNullOrEmpty(configured))
        {
            return Environment.ProcessorCount;
        }

        if (!int.TryParse(configured, out var threads) || threads <= 0)
        {
            throw new InvalidOperationException($"{ThreadsVariable} must be a positive integer but is '{configured}'.");
        }

        return threads;
    }

    private sealed class ThreadScope(int? previous) : IDisposable
    {
        private int? _previous = previous;

        public void Dispose()
        {
            if (_previous is not { } restore)
            {
                return;
            }

            _previous = null;
            lock (_gate)
            {
                if (Threads != restore)
                {
                    torch.set_num_threads(restore);
                    Threads = restore;
                }
            }
        }
    }
}
