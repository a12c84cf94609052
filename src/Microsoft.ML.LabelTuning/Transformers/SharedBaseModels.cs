using Microsoft.ML.LabelTuning.Llama;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// One copy of each frozen base model per process: classifiers over the same base (a trained model and its reload,
/// several adapters served side by side, the trials of a sweep) get decoders whose parameters are the same storage.
/// Bases are keyed by the SHA-256 of their defining files (so a moved copy is the same base), the device and the
/// dtype, and counted: the weights are loaded by the first decoder and released with the last one.
/// </summary>
/// <remarks>
/// A decoder from here is the caller's own module tree (LoRA replaces its projections, not anyone else's) over
/// shared, frozen parameters; nothing writes into them (training writes only adapters and heads), and scoring keeps
/// no merged copies of them (<see cref="LlamaModel.SharesBaseWeights"/>).
/// </remarks>
internal static class SharedBaseModels
{
    private static readonly object _gate = new();
    private static readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>Gets the number of distinct bases loaded now (tests).</summary>
    internal static int LoadedCount
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>
    /// A decoder over the shared weights of the model folder's base, loaded now if no one holds them; dispose it (or
    /// the classifier that owns it) to release them.
    /// </summary>
    public static LlamaModel Rent(string folder, Device device, ScalarType dtype)
    {
        var entry = Acquire(folder, device, dtype);
        try
        {
            return LlamaModel.SharingWeightsOf(entry.Weights, new Lease(entry));
        }
        catch
        {
            Release(entry);
            throw;
        }
    }

    /// <summary>
    /// Keeps the base loaded until the result is disposed, so that consecutive users (the trials of a sweep, each
    /// disposed before the next) load it once.
    /// </summary>
    public static IDisposable Hold(string folder, Device device, ScalarType dtype) => new Lease(Acquire(folder, device, dtype));

    /// <summary>Gets the number of decoders and holds using the base of a folder now; 0 when it is not loaded (tests).</summary>
    internal static int UsersOf(string folder, Device device, ScalarType dtype)
    {
        lock (_gate)
        {
            return _entries.TryGetValue(Key(folder, device, dtype), out var entry) ? entry.Users : 0;
        }
    }

    private static string Key(string folder, Device device, ScalarType dtype)
        => $"{BaseModelReference.Fingerprint(folder)}|{device}|{dtype}";

    private static Entry Acquire(string folder, Device device, ScalarType dtype)
    {
        var key = Key(folder, device, dtype); // hashing (cached by path, size and time) happens outside the lock's loads
        lock (_gate)
        {
            if (!_entries.TryGetValue(key, out var entry))
            {
                // Loaded under the lock: a second caller for the same base waits for this load instead of making its own.
                entry = new Entry(key, ClassifierFactory.LoadDecoder(folder, device, dtype));
                _entries.Add(key, entry);
            }

            entry.Users++;
            return entry;
        }
    }

    private static void Release(Entry entry)
    {
        LlamaModel? unused = null;
        lock (_gate)
        {
            entry.Users--;
            if (entry.Users == 0)
            {
                _entries.Remove(entry.Key);
                unused = entry.Weights;
            }
        }

        unused?.Dispose();
    }

    /// <summary>
    /// A hold taken once a base is known to load (after the first trial of a sweep trains), and released with this
    /// object; later trials then share the first one's weights instead of loading their own.
    /// </summary>
    internal sealed class DeferredHold : IDisposable
    {
        private IDisposable? _held;

        /// <summary>Holds the base of <paramref name="runtime"/>'s model, unless a base is held already.</summary>
        public void Ensure(ClassifierRuntime runtime)
        {
            _held ??= Hold(runtime.Description.BaseModelPath, runtime.Device, Runtime.DeviceSelection.ParseDtype(runtime.Description.Dtype));
        }

        public void Dispose()
        {
            _held?.Dispose();
            _held = null;
        }
    }

    private sealed class Entry(string key, LlamaModel weights)
    {
        public string Key { get; } = key;

        /// <summary>Gets the loaded decoder that holds the weights; never handed out, never modified.</summary>
        public LlamaModel Weights { get; } = weights;

        public int Users { get; set; }
    }

    private sealed class Lease(Entry entry) : IDisposable
    {
        private Entry? _entry = entry;

        public void Dispose()
        {
            var held = Interlocked.Exchange(ref _entry, null);
            if (held is not null)
            {
                Release(held);
            }
        }
    }
}
