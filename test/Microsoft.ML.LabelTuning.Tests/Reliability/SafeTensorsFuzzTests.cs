using System.Globalization;
using System.Text;
using CsCheck;
using Microsoft.ML.LabelTuning.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Hostile safetensors files: headers built from hostile parts (huge, negative and overflowing shapes, wrong dtypes,
/// overlapping, reversed and out-of-range offsets, wrong header lengths, odd metadata), JSON-level edits of a valid
/// header, and byte-level edits of a valid file. Every file either loads, with every tensor read back inside the
/// file's data, or is refused with an <see cref="InvalidDataException"/> that names it.
/// </summary>
[TestClass]
public sealed class SafeTensorsFuzzTests
{
    private static readonly string[] _dtypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "Q4", "f32", "", "F8_E4M3", "U64", "C64"];
    private static readonly string[] _rawShapes = ["null", "\"2\"", "{}", "[1.5]", "[\"2\"]", "[[2]]", "[-0]", "[1e3]", "[2, null]"];
    private static readonly string[] _rawOffsets = ["[0]", "null", "[0, 8, 16]", "[\"0\", \"8\"]", "[1.5, 8]", "{}", "[0, -0]", "[0, 1e2]"];
    private static readonly string[] _metadata = ["", "{\"format\": \"pt\"}", "{\"n\": 1}", "\"x\"", "null", "[]", "{\"a\": {\"b\": \"c\"}}", HostileInputs.Deep(20, array: false)];

    /// <summary>The faults the reader names, by a part of its message (the first match counts).</summary>
    internal static readonly (string Fault, string MessagePart)[] Faults =
    [
        ("file shorter than 8 bytes", "shorter than the 8-byte header length"),
        ("pickle or zip bytes", "Pickle files can execute"),
        ("header length over the 100 MB limit", "-byte limit"),
        ("offsets past the data", "reach past the"),
        ("header length past the end of the file", "(truncated file?)."),
        ("header length under 2", "too short for a JSON object"),
        ("invalid JSON or nesting over 8 levels", "not valid JSON"),
        ("invalid UTF-8 or lone surrogate", "not valid Unicode"),
        ("duplicate key", "twice in its header"),
        ("bad __metadata__", "'__metadata__"),
        ("header or entry not an object", ", not an object"),
        ("unsupported dtype", "is not supported (expected"),
        ("missing or mistyped dtype, shape or data_offsets", "is missing or not"),
        ("non-integer shape entry", "is not an integer"),
        ("negative shape entry", "is negative"),
        ("shape overflows 64 bits", "64-bit count holds"),
        ("byte count overflows 64 bits", "is too large"),
        ("offsets reversed", "begin after they end"),
        ("offsets disagree with shape and dtype", "bytes but shape"),
        ("negative or non-integer offset", "is not a non-negative integer"),
        ("overlapping tensors", "overlapping tensor"),
    ];

    public TestContext TestContext { get; set; } = null!;

    [TestMethod]
    [Timeout(300_000)]
    public void HostileSafetensorsFilesLoadOrAreRefusedNamingTheFile()
    {
        var seed = SeedFile();
        var seedHeaderLength = (int)BitConverter.ToUInt64(seed, 0);
        var seedHeader = Encoding.UTF8.GetString(seed, 8, seedHeaderLength);
        var seedData = seed[(8 + seedHeaderLength)..];

        var gen = Gen.Frequency(
            (3, Structured()),
            (1, Layouts()),
            (1, Gen.Select(Gen.Bool, Gen.Byte.Array[0, 64], (zipped, tail) => new FuzzCase("pickle", [.. zipped ? PickleRefusalTests.MaliciousTorchZip("/nonexistent/never") : PickleRefusalTests.MaliciousPickle("/nonexistent/never"), .. tail]))),
            (3, HostileInputs.EditedJson(seedHeader).Select(header => new FuzzCase("json", Assemble(header, seedData, null)))),
            (3, HostileInputs.EditedBytes(seed).Select(bytes => new FuzzCase("bytes", bytes))));

        var stats = Fuzz.Run(
            "safetensors",
            gen,
            (folder, input) => Fuzz.WriteFile(folder, "model.safetensors", input.Bytes),
            (_, file) => ReadEverything(file),
            new AllocationBound(PerByte: 40, Constant: 96 * 1024),
            context: TestContext,
            faults: Faults);
        Assert.IsTrue(stats.Outcomes.ContainsKey("accepted") && stats.Outcomes.ContainsKey(nameof(InvalidDataException)), stats.ToString());
        if (stats.Cases >= 10_000)
        {
            stats.AssertReached(
                "pickle or zip bytes", "header length over the 100 MB limit", "header length past the end of the file", "invalid JSON or nesting over 8 levels",
                "invalid UTF-8 or lone surrogate", "duplicate key", "unsupported dtype", "negative shape entry", "shape overflows 64 bits",
                "offsets reversed", "offsets past the data", "offsets disagree with shape and dtype", "overlapping tensors");
        }
    }

    /// <summary>Opens the file and reads every tensor; the tensors read must fit in the file's data section.</summary>
    internal static void ReadEverything(string file)
    {
        using var scope = torch.NewDisposeScope();
        var length = new FileInfo(file).Length;
        using var reader = SafeTensorsReader.Open(file);
        long total = 0;
        foreach (var info in reader.Tensors.Values)
        {
            var tensor = reader.ReadTensor(info.Name);
            var bytes = tensor.numel() * tensor.element_size();
            Assert.AreEqual(info.End - info.Begin, bytes, $"tensor '{info.Name}' read {bytes} bytes for offsets [{info.Begin}, {info.End}).");
            CollectionAssert.AreEqual(info.Shape, tensor.shape, $"tensor '{info.Name}'");
            total += bytes;
        }

        Assert.IsTrue(total <= length, $"{total} bytes of tensors were read from a {length}-byte file.");
    }

    /// <summary>A valid file of several dtypes, an empty tensor and metadata.</summary>
    internal static byte[] SeedFile()
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(Directory.CreateTempSubdirectory("lt-fuzz-seed-").FullName, "seed.safetensors");
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["w"] = torch.arange(6, dtype: ScalarType.Float32).reshape(2, 3),
            ["ids"] = torch.tensor(new long[] { 1, -2 }),
            ["h"] = torch.ones(4, dtype: ScalarType.BFloat16),
            ["f"] = torch.tensor(new[] { true, false, true }),
            ["e"] = torch.zeros(0, 2),
        }, new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(path);
        Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        return bytes;
    }

    /// <summary>8-byte length (the true one unless <paramref name="declaredLength"/> is given), header, data.</summary>
    internal static byte[] Assemble(string header, byte[] data, long? declaredLength)
        => Assemble(Encoding.UTF8.GetBytes(header), data, declaredLength);

    /// <summary>8-byte length, header bytes as given (they may not be UTF-8), data.</summary>
    internal static byte[] Assemble(byte[] headerBytes, byte[] data, long? declaredLength)
    {
        var bytes = new byte[8 + headerBytes.Length + data.Length];
        BitConverter.GetBytes(declaredLength ?? headerBytes.Length).CopyTo(bytes, 0);
        headerBytes.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + headerBytes.Length);
        return bytes;
    }

    private sealed record TensorSpec(string Name, string DType, long[] Dims, int ShapeMode, int OffsetMode, long A, long B);

    private static Gen<FuzzCase> Structured()
    {
        var dim = Gen.Frequency((6, Gen.Long[0, 4]), (2, Gen.OneOf(HostileInputs.Integers)));
        var dims = Gen.Frequency((12, dim.Array[0, 4]), (1, Gen.Int[50, 300].Select(n => Enumerable.Repeat(1L, n).ToArray())));
        var tensor = Gen.Select(
            Gen.OneOf("w", "b", "w", "__metadata__", "", "model.layers.0.weight", new string('n', 300)),
            Gen.OneOf(_dtypes),
            dims,
            Gen.Frequency((10, Gen.Const(-1)), (1, Gen.Int[0, _rawShapes.Length - 1])),
            Gen.Frequency((10, Gen.Const(0)), (1, Gen.Int[1, 5])),
            Gen.OneOf(HostileInputs.Integers),
            Gen.OneOf(HostileInputs.Integers),
            (name, dtype, d, shapeMode, offsetMode, a, b) => new TensorSpec(name, dtype, d, shapeMode, offsetMode, a, b));

        return Gen.Select(
            tensor.Array[0, 4],
            Gen.Int[0, _metadata.Length - 1],
            Gen.Int[-8, 16],
            Gen.Frequency((8, Gen.Const((long?)null)), (1, Gen.OneOf(HostileInputs.Integers).Select(v => (long?)v))),
            Gen.Int[0, 7],
            (tensors, metadata, slack, declared, padding) =>
            {
                var header = new StringBuilder("{");
                var position = 0L;
                var first = true;
                if (_metadata[metadata].Length > 0)
                {
                    header.Append("\"__metadata__\": ").Append(_metadata[metadata]);
                    first = false;
                }

                foreach (var t in tensors)
                {
                    var bytes = ByteCount(t);
                    string offsets = t.OffsetMode switch
                    {
                        0 => $"[{position}, {position + bytes}]",
                        1 => $"[{t.A}, {t.B}]",
                        2 => $"[{Math.Max(0, position - 4)}, {Math.Max(0, position - 4) + bytes}]",
                        3 => $"[{position + bytes}, {position}]",
                        4 => $"[{position}, {position + bytes + 1}]",
                        _ => _rawOffsets[(int)(t.A & 0x7FFF) % _rawOffsets.Length],
                    };
                    position += bytes;
                    var shape = t.ShapeMode >= 0 ? _rawShapes[t.ShapeMode] : "[" + string.Join(", ", t.Dims.Select(v => v.ToString(CultureInfo.InvariantCulture))) + "]";
                    header.Append(first ? string.Empty : ", ")
                        .Append(System.Text.Json.JsonSerializer.Serialize(t.Name))
                        .Append($": {{\"dtype\": \"{t.DType}\", \"shape\": {shape}, \"data_offsets\": {offsets}}}");
                    first = false;
                }

                header.Append('}').Append(' ', padding);
                var dataLength = (int)Math.Clamp(position + slack, 0, 4096);
                var data = new byte[dataLength];
                for (var i = 0; i < data.Length; i++)
                {
                    data[i] = (byte)(i * 37);
                }

                return new FuzzCase(declared is null ? "structured" : "structured-length", Assemble(header.ToString(), data, declared));
            });
    }

    /// <summary>
    /// Two to four valid tensors whose offsets are then broken one way: overlapping, shifted past the data, off by
    /// one, reversed, or left with a hole between them (which is accepted).
    /// </summary>
    private static Gen<FuzzCase> Layouts()
        => Gen.Select(Gen.Int[1, 6].Array[2, 4], Gen.Int[0, 4], Gen.Int[0, 3], Gen.Int[1, 8], (sizes, fault, victim, shift) =>
        {
            var offsets = new List<(long Begin, long End)>();
            long position = 0;
            foreach (var size in sizes)
            {
                offsets.Add((position, position + (4L * size)));
                position += 4L * size;
            }

            var at = victim % offsets.Count;
            var (begin, end) = offsets[at];
            offsets[at] = fault switch
            {
                0 => (Math.Max(0, begin - (4 * shift)), Math.Max(0, begin - (4 * shift)) + (end - begin)), // overlap the one before (or after)
                1 => (begin + position, end + position), // past the data
                2 => (begin, end + 1), // one byte too many
                3 => (end, begin), // reversed
                _ => (begin + 4, end + 4), // a hole before it (and maybe an overlap after it)
            };
            var header = "{" + string.Join(", ", sizes.Select((size, i) => $"\"t{i}\": {{\"dtype\": \"F32\", \"shape\": [{size}], \"data_offsets\": [{offsets[i].Begin}, {offsets[i].End}]}}")) + "}";
            return new FuzzCase("layout", Assemble(header, new byte[position + (fault == 4 ? 4 : 0)], null));
        });

    /// <summary>The bytes a tensor's dims need, or a small number when they are not a sane size.</summary>
    private static long ByteCount(TensorSpec t)
    {
        var size = t.DType switch
        {
            "F64" or "I64" => 8,
            "F32" or "I32" => 4,
            "F16" or "BF16" or "I16" => 2,
            _ => 1,
        };
        long count = 1;
        foreach (var d in t.Dims)
        {
            if (d < 0 || (d > 0 && count > 4096 / d))
            {
                return 8;
            }

            count *= d;
        }

        return count * size;
    }
}
