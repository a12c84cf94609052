using System.Text.Json;
using Microsoft.ML.LabelTuning.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Checkpoints;

/// <summary>
/// Writes safetensors files the way Hugging Face's library does: the JSON header padded with spaces so the data
/// starts on an 8-byte boundary, tensors ordered by descending element size then name (so each stays aligned to
/// its element size), little-endian row-major data. Writes are atomic: a temporary file in the same folder is
/// written, flushed to disk, and renamed over the target, so a crash never leaves a half-written file.
/// </summary>
internal static class SafeTensorsWriter
{
    private const int CopyChunkBytes = 1 << 30;

    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/> atomically.</summary>
    /// <param name="path">The target file; replaced if it exists.</param>
    /// <param name="tensors">Name → tensor (any device, any layout); names must be unique and non-empty.</param>
    /// <param name="metadata">Strings stored under <c>__metadata__</c>; default <c>{"format": "pt"}</c>.</param>
    /// <param name="dtype">Converts floating-point tensors to this type before writing, when given.</param>
    public static void Write(
        string path,
        IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null,
        ScalarType? dtype = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var write = Prepare(tensors, metadata, dtype);
        AtomicFile.Write(path, write);
    }

    /// <summary>Writes <paramref name="tensors"/> in safetensors format to <paramref name="destination"/>, front to back (no seeking).</summary>
    /// <param name="destination">A writable stream, such as an entry of a model zip.</param>
    /// <param name="tensors">Name → tensor (any device, any layout); names must be unique and non-empty.</param>
    /// <param name="metadata">Strings stored under <c>__metadata__</c>; default <c>{"format": "pt"}</c>.</param>
    public static void Write(Stream destination, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        Prepare(tensors, metadata, dtype: null)(destination);
    }

    /// <summary>Validates the tensors, builds the header, and returns the action that writes the file's bytes.</summary>
    private static Action<Stream> Prepare(IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata, ScalarType? dtype)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Writing safetensors needs a little-endian machine.");
        }

        var entries = new List<(string Name, Tensor Tensor, SafeTensorsDType DType)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (string.IsNullOrEmpty(name) || name == "__metadata__")
            {
                throw new ArgumentException($"'{name}' cannot name a tensor in a safetensors file.", nameof(tensors));
            }

            if (!names.Add(name))
            {
                throw new ArgumentException($"Tensor '{name}' is given twice.", nameof(tensors));
            }

            var type = dtype is { } target && tensor.is_floating_point() ? target : tensor.dtype;
            entries.Add((name, tensor, SafeTensorsDTypes.FromScalarType(type)));
        }

        entries.Sort((a, b) =>
        {
            var bySize = SafeTensorsDTypes.ElementSize(b.DType).CompareTo(SafeTensorsDTypes.ElementSize(a.DType));
            return bySize != 0 ? bySize : string.CompareOrdinal(a.Name, b.Name);
        });

        var header = BuildHeader(entries, metadata ?? new Dictionary<string, string> { ["format"] = "pt" });
        return stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BitConverter.TryWriteBytes(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var (_, tensor, type) in entries)
            {
                WriteData(stream, tensor, SafeTensorsDTypes.ToScalarType(type));
            }
        };
    }

    private static byte[] BuildHeader(
        List<(string Name, Tensor Tensor, SafeTensorsDType DType)> entries, IReadOnlyDictionary<string, string> metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata.Count > 0)
            {
                json.WriteStartObject("__metadata__");
                foreach (var (key, value) in metadata)
                {
                    json.WriteString(key, value);
                }

                json.WriteEndObject();
            }

            long offset = 0;
            foreach (var (name, tensor, type) in entries)
            {
                var bytes = tensor.numel() * SafeTensorsDTypes.ElementSize(type);
                json.WriteStartObject(name);
                json.WriteString("dtype", type.ToString());
                json.WriteStartArray("shape");
                foreach (var dim in tensor.shape)
                {
                    json.WriteNumberValue(dim);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }

            json.WriteEndObject();
        }

        // Pad with spaces so that 8 + header length is a multiple of 8.
        var padding = (8 - (int)(buffer.Length % 8)) % 8;
        for (var i = 0; i < padding; i++)
        {
            buffer.WriteByte((byte)' ');
        }

        return buffer.ToArray();
    }

    private static void WriteData(Stream stream, Tensor tensor, ScalarType type)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var cpu = tensor.detach().to(type, torch.CPU).contiguous().view(-1);
        var elementSize = SafeTensorsDTypes.ElementSize(SafeTensorsDTypes.FromScalarType(type));
        var elementsPerChunk = CopyChunkBytes / elementSize;
        var count = cpu.numel();
        for (long start = 0; start < count; start += elementsPerChunk)
        {
            using var chunk = cpu.narrow(0, start, Math.Min(elementsPerChunk, count - start));
            stream.Write(chunk.bytes);
        }
    }
}
