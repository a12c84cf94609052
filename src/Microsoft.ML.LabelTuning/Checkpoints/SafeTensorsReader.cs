using System.Text;
using System.Text.Json;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Checkpoints;

/// <summary>The element types a safetensors file can hold that this library reads.</summary>
internal enum SafeTensorsDType
{
    /// <summary>IEEE float32.</summary>
    F32,

    /// <summary>IEEE float16.</summary>
    F16,

    /// <summary>bfloat16.</summary>
    BF16,

    /// <summary>IEEE float64.</summary>
    F64,

    /// <summary>Signed 64-bit integer.</summary>
    I64,

    /// <summary>Signed 32-bit integer.</summary>
    I32,

    /// <summary>Signed 16-bit integer.</summary>
    I16,

    /// <summary>Signed 8-bit integer.</summary>
    I8,

    /// <summary>Unsigned 8-bit integer.</summary>
    U8,

    /// <summary>One byte per boolean.</summary>
    BOOL,
}

/// <summary>Conversions between safetensors dtype names, <see cref="SafeTensorsDType"/> and torch types.</summary>
internal static class SafeTensorsDTypes
{
    public static bool TryParse(string name, out SafeTensorsDType dtype)
    {
        switch (name)
        {
            case "F32": dtype = SafeTensorsDType.F32; return true;
            case "F16": dtype = SafeTensorsDType.F16; return true;
            case "BF16": dtype = SafeTensorsDType.BF16; return true;
            case "F64": dtype = SafeTensorsDType.F64; return true;
            case "I64": dtype = SafeTensorsDType.I64; return true;
            case "I32": dtype = SafeTensorsDType.I32; return true;
            case "I16": dtype = SafeTensorsDType.I16; return true;
            case "I8": dtype = SafeTensorsDType.I8; return true;
            case "U8": dtype = SafeTensorsDType.U8; return true;
            case "BOOL": dtype = SafeTensorsDType.BOOL; return true;
            default: dtype = default; return false;
        }
    }

    public static int ElementSize(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F64 or SafeTensorsDType.I64 => 8,
        SafeTensorsDType.F32 or SafeTensorsDType.I32 => 4,
        SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.I16 => 2,
        _ => 1,
    };

    public static ScalarType ToScalarType(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.F32 => ScalarType.Float32,
        SafeTensorsDType.F16 => ScalarType.Float16,
        SafeTensorsDType.BF16 => ScalarType.BFloat16,
        SafeTensorsDType.F64 => ScalarType.Float64,
        SafeTensorsDType.I64 => ScalarType.Int64,
        SafeTensorsDType.I32 => ScalarType.Int32,
        SafeTensorsDType.I16 => ScalarType.Int16,
        SafeTensorsDType.I8 => ScalarType.Int8,
        SafeTensorsDType.U8 => ScalarType.Byte,
        SafeTensorsDType.BOOL => ScalarType.Bool,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown safetensors dtype."),
    };

    public static SafeTensorsDType FromScalarType(ScalarType type) => type switch
    {
        ScalarType.Float32 => SafeTensorsDType.F32,
        ScalarType.Float16 => SafeTensorsDType.F16,
        ScalarType.BFloat16 => SafeTensorsDType.BF16,
        ScalarType.Float64 => SafeTensorsDType.F64,
        ScalarType.Int64 => SafeTensorsDType.I64,
        ScalarType.Int32 => SafeTensorsDType.I32,
        ScalarType.Int16 => SafeTensorsDType.I16,
        ScalarType.Int8 => SafeTensorsDType.I8,
        ScalarType.Byte => SafeTensorsDType.U8,
        ScalarType.Bool => SafeTensorsDType.BOOL,
        _ => throw new ArgumentException($"Tensors of type {type} cannot be stored in safetensors by this library.", nameof(type)),
    };

    public static bool IsFloatingPoint(SafeTensorsDType dtype)
        => dtype is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64;
}

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor's key.</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">The shape (empty for a scalar).</param>
/// <param name="Begin">The first byte, relative to the start of the data section.</param>
/// <param name="End">One past the last byte, relative to the start of the data section.</param>
internal sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Gets the number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Gets the shape formatted as <c>[a, b]</c>.</summary>
    public string ShapeText => $"[{string.Join(", ", Shape)}]";
}

/// <summary>
/// Reads a safetensors file: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}</c>), then the data.
/// Every bound is checked before anything is allocated (header size, offsets, overlaps, byte counts against the
/// shape); a bad file raises <see cref="InvalidDataException"/> naming the file and the tensor. Tensors are copied
/// one at a time out of a read-only memory map, so loading never holds a second copy of the whole file.
/// </summary>
internal sealed class SafeTensorsReader : IDisposable
{
    /// <summary>The largest header accepted (100 MB), as the reference implementation does.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const int CopyChunkBytes = 1 << 30;
    private readonly SafeFileHandle _file;
    private readonly long _dataStart;
    private bool _disposed;

    private SafeTensorsReader(string path, SafeFileHandle file, long dataStart,
        IReadOnlyDictionary<string, SafeTensorInfo> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        Path = path;
        _file = file;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>Gets the file path.</summary>
    public string Path { get; }

    /// <summary>Gets the tensors by name, in file order.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>Gets the <c>__metadata__</c> strings (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The header is malformed or inconsistent with the file.</exception>
    public static SafeTensorsReader Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Reading safetensors needs a little-endian machine.");
        }

        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Safetensors file '{path}' does not exist.", path);
        }

        Dictionary<string, SafeTensorInfo> tensors;
        Dictionary<string, string> metadata;
        long dataStart;
        using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            var fileLength = stream.Length;
            if (fileLength < 8)
            {
                throw Bad(path, $"is {fileLength} bytes long, shorter than the 8-byte header length.");
            }

            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            var headerLength = BitConverter.ToUInt64(lengthBytes);
            if (headerLength > (ulong)MaxHeaderBytes && LooksLikePickle(lengthBytes) is { } kind)
            {
                throw Bad(path, $"is {kind}, not safetensors. Pickle files can execute arbitrary code when loaded, so they are refused; "
                    + "convert the checkpoint with Python's save_pretrained(out, safe_serialization=True).");
            }

            if (headerLength > (ulong)MaxHeaderBytes)
            {
                throw Bad(path, $"declares a header of {headerLength} bytes, more than the {MaxHeaderBytes}-byte limit.");
            }

            if ((long)headerLength > fileLength - 8)
            {
                throw Bad(path, $"declares a header of {headerLength} bytes but only {fileLength - 8} bytes follow (truncated file?).");
            }

            if (headerLength < 2)
            {
                throw Bad(path, $"declares a header of {headerLength} bytes, too short for a JSON object.");
            }

            var header = new byte[headerLength];
            stream.ReadExactly(header);
            dataStart = 8 + (long)headerLength;
            (tensors, metadata) = ParseHeader(path, header, fileLength - dataStart);
        }

        // Tensors are read with positioned reads straight into their destination, not through a memory map: pages of a
        // mapped file count in the process's resident memory until it is unmapped, so mapping a 2 GB checkpoint kept
        // its bytes resident next to the converted weights for the whole load (1.4x the float32 bytes at peak).
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        return new SafeTensorsReader(path, file, dataStart, tensors, metadata);
    }

    /// <summary>Gets a tensor's entry, or throws naming the file when it is absent.</summary>
    public SafeTensorInfo Info(string name)
        => Tensors.TryGetValue(name, out var info)
            ? info
            : throw new KeyNotFoundException($"Tensor '{name}' is not in '{Path}'.");

    /// <summary>Reads a tensor into a new CPU tensor of its stored type, converted to <paramref name="dtype"/> and moved to <paramref name="device"/> when given.</summary>
    public Tensor ReadTensor(string name, ScalarType? dtype = null, Device? device = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = Info(name);
        var stored = SafeTensorsDTypes.ToScalarType(info.DType);
        var cpu = torch.empty(info.Shape, dtype: stored, device: torch.CPU);
        CopyBytes(info, cpu);
        if ((dtype is null || dtype == stored) && (device is null || device.type == DeviceType.CPU))
        {
            return cpu;
        }

        using (cpu)
        {
            return cpu.to(dtype ?? stored, device ?? torch.CPU);
        }
    }

    /// <summary>
    /// Copies a tensor into <paramref name="destination"/> (same shape; dtype and device may differ and are
    /// converted). A contiguous CPU destination of the stored type is filled directly, without a temporary.
    /// </summary>
    public void ReadInto(string name, Tensor destination)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var info = Info(name);
        if (!info.Shape.SequenceEqual(destination.shape))
        {
            throw new InvalidDataException(
                $"Tensor '{name}' has shape {info.ShapeText} in '{Path}' but the destination is [{string.Join(", ", destination.shape)}].");
        }

        using var noGrad = torch.no_grad();
        var stored = SafeTensorsDTypes.ToScalarType(info.DType);
        if (destination.device_type == DeviceType.CPU && destination.dtype == stored && destination.is_contiguous())
        {
            CopyBytes(info, destination);
            return;
        }

        using var temp = torch.empty(info.Shape, dtype: stored, device: torch.CPU);
        CopyBytes(info, temp);
        destination.copy_(temp);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _file.Dispose();
    }

    private void CopyBytes(SafeTensorInfo info, Tensor destination)
    {
        var total = info.End - info.Begin;
        if (total == 0)
        {
            return;
        }

        // Span lengths are ints: copy through flat views of at most 1 GiB each.
        var elementSize = SafeTensorsDTypes.ElementSize(info.DType);
        var elementsPerChunk = CopyChunkBytes / elementSize;
        using var flat = destination.view(-1);
        var offset = _dataStart + info.Begin;
        for (long start = 0; start < info.ElementCount; start += elementsPerChunk)
        {
            var count = Math.Min(elementsPerChunk, info.ElementCount - start);
            using var chunk = flat.narrow(0, start, count);
            var target = chunk.bytes;
            var position = offset + (start * elementSize);
            while (!target.IsEmpty)
            {
                var read = RandomAccess.Read(_file, target, position);
                if (read <= 0)
                {
                    throw Bad(Path, $"ended while reading tensor '{info.Name}' (the file was truncated after it was opened?).");
                }

                target = target[read..];
                position += read;
            }
        }
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw Bad(path, $"has a header that is not valid JSON: {e.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw Bad(path, $"has a header that is a JSON {document.RootElement.ValueKind}, not an object.");
            }

            if (JsonStrings.FindInvalid(document.RootElement) is { } invalid)
            {
                throw Bad(path, $"has a header whose string at '{invalid}' is not valid Unicode (bytes that are not UTF-8, or an escaped lone surrogate such as \\ud800).");
            }

            var tensors = new List<SafeTensorInfo>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (!names.Add(property.Name))
                {
                    throw Bad(path, $"lists '{property.Name}' twice in its header.");
                }

                if (property.Name == "__metadata__")
                {
                    ReadMetadata(path, property.Value, metadata);
                    continue;
                }

                tensors.Add(ReadEntry(path, property.Name, property.Value, dataLength));
            }

            // Offsets must not overlap (a hole between tensors is tolerated).
            tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
            for (var i = 1; i < tensors.Count; i++)
            {
                var (previous, current) = (tensors[i - 1], tensors[i]);
                if (current.Begin < previous.End)
                {
                    throw Bad(path, $"stores tensor '{current.Name}' at bytes [{current.Begin}, {current.End}) overlapping tensor '{previous.Name}' at [{previous.Begin}, {previous.End}).");
                }
            }

            return (tensors.ToDictionary(t => t.Name, StringComparer.Ordinal), metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Bad(path, $"has a '__metadata__' that is a JSON {value.ValueKind}, not an object of strings.");
        }

        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw Bad(path, $"has '__metadata__.{entry.Name}' that is a JSON {entry.Value.ValueKind}, not a string.");
            }

            metadata[entry.Name] = entry.Value.GetString()!;
        }
    }

    private static SafeTensorInfo ReadEntry(string path, string name, JsonElement entry, long dataLength)
    {
        InvalidDataException Fail(string problem) => Bad(path, $"has tensor '{name}' whose {problem}");

        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw Fail($"entry is a JSON {entry.ValueKind}, not an object.");
        }

        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Fail("'dtype' is missing or not a string.");
        }

        var dtypeName = dtypeElement.GetString()!;
        if (!SafeTensorsDTypes.TryParse(dtypeName, out var dtype))
        {
            throw Fail($"dtype '{dtypeName}' is not supported (expected F32, F16, BF16, F64, I64, I32, I16, I8, U8 or BOOL).");
        }

        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw Fail("'shape' is missing or not an array.");
        }

        var shape = new long[shapeElement.GetArrayLength()];
        var elements = 1L;
        var extent = 1L; // the product of the non-zero sizes: torch computes strides from it even when a size is 0
        var index = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var size))
            {
                throw Fail($"shape entry {index} is not an integer ({dim.GetRawText()}).");
            }

            if (size < 0)
            {
                throw Fail($"shape entry {index} is negative ({size}).");
            }

            try
            {
                elements = checked(elements * size);
                extent = checked(extent * Math.Max(size, 1));
            }
            catch (OverflowException)
            {
                throw Fail($"shape {shapeElement.GetRawText()} has more elements than a 64-bit count holds.");
            }

            shape[index++] = size;
        }

        if (!entry.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2)
        {
            throw Fail("'data_offsets' is missing or not a [begin, end] pair.");
        }

        var begin = ReadOffset(offsets[0], "begin");
        var end = ReadOffset(offsets[1], "end");
        if (begin > end)
        {
            throw Fail($"data_offsets [{begin}, {end}] begin after they end.");
        }

        if (end > dataLength)
        {
            throw Fail($"data_offsets [{begin}, {end}] reach past the {dataLength} data bytes of the file (truncated file?).");
        }

        long expectedBytes;
        try
        {
            expectedBytes = checked(elements * SafeTensorsDTypes.ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw Fail($"shape {shapeElement.GetRawText()} is too large.");
        }

        if (end - begin != expectedBytes)
        {
            throw Fail($"data_offsets [{begin}, {end}] span {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtypeName} needs {expectedBytes}.");
        }

        return new SafeTensorInfo(name, dtype, shape, begin, end);

        long ReadOffset(JsonElement value, string which)
        {
            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var offset) || offset < 0)
            {
                throw Fail($"data_offsets {which} is not a non-negative integer ({value.GetRawText()}).");
            }

            return offset;
        }
    }

    /// <summary>
    /// Names the pickle formats whose first bytes a safetensors file cannot start with (it would declare a header
    /// beyond <see cref="MaxHeaderBytes"/>): a raw pickle (PROTO opcode 0x80, protocol 2 to 5) or the zip of
    /// <c>torch.save</c>.
    /// </summary>
    private static string? LooksLikePickle(ReadOnlySpan<byte> start)
        => start[0] == 0x80 && start[1] is >= 2 and <= 5 ? "a Python pickle (a PyTorch .bin/.pt checkpoint)"
            : start[..4].SequenceEqual("PK\u0003\u0004"u8) ? "a zip archive (a PyTorch torch.save checkpoint, which holds a pickle)"
            : null;

    private static InvalidDataException Bad(string path, string problem)
        => new($"Safetensors file '{path}' {problem}");
}
