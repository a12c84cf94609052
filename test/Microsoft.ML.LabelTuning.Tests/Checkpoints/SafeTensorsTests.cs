using System.Text;
using Microsoft.ML.LabelTuning.Checkpoints;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Checkpoints;

[TestClass]
public sealed class SafeTensorsTests
{
    [ClassCleanup]
    public static void Cleanup() => DeleteTempFolders();

    [TestMethod]
    [DataRow(ScalarType.Float32, "F32")]
    [DataRow(ScalarType.Float16, "F16")]
    [DataRow(ScalarType.BFloat16, "BF16")]
    public void WriterAndReaderRoundTripFloatTypes(ScalarType type, string name)
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(TempFolder("st"), "t.safetensors");
        var a = torch.randn(3, 5, generator: new Generator(1)).to(type);
        var b = torch.randn(7, generator: new Generator(2)).to(type);
        var ids = torch.tensor(new long[] { 1, -2, 3 });
        var flags = torch.tensor(new[] { true, false, true });
        var scalar = torch.tensor(2.5f).to(type);
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a, ["b.weight"] = b, ["ids"] = ids, ["flags"] = flags, ["s"] = scalar });

        var bytes = File.ReadAllBytes(path);
        var headerLength = BitConverter.ToInt64(bytes, 0);
        Assert.AreEqual(0, (8 + headerLength) % 8, "The data section starts on an 8-byte boundary.");
        StringAssert.Contains(Encoding.UTF8.GetString(bytes, 8, (int)headerLength), "\"format\":\"pt\"");

        using var reader = SafeTensorsReader.Open(path);
        Assert.AreEqual(Enum.Parse<SafeTensorsDType>(name), reader.Info("a").DType);
        Assert.AreEqual("pt", reader.Metadata["format"]);
        Assert.AreEqual(0f, MaxAbsDiff(a.to(ScalarType.Float32), reader.ReadTensor("a").to(ScalarType.Float32)));
        Assert.AreEqual(type, reader.ReadTensor("b.weight").dtype);
        CollectionAssert.AreEqual(new long[] { 1, -2, 3 }, reader.ReadTensor("ids").data<long>().ToArray());
        CollectionAssert.AreEqual(new[] { true, false, true }, reader.ReadTensor("flags").data<bool>().ToArray());
        Assert.AreEqual(0, reader.ReadTensor("s").dim());

        // Converting reads, and reading into an existing tensor of another type.
        Assert.AreEqual(0f, MaxAbsDiff(b.to(ScalarType.Float32), reader.ReadTensor("b.weight", ScalarType.Float32)));
        var into = torch.zeros(3, 5, dtype: ScalarType.Float64);
        reader.ReadInto("a", into);
        Assert.AreEqual(0f, MaxAbsDiff(a.to(ScalarType.Float64), into));
    }

    [TestMethod]
    public void WriterReplacesAtomicallyAndLeavesNoTemporaryFiles()
    {
        using var scope = torch.NewDisposeScope();
        var folder = TempFolder("st-atomic");
        var path = Path.Combine(folder, "m.safetensors");
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = torch.ones(2) });
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = torch.full(3, 4f) });
        using (var reader = SafeTensorsReader.Open(path))
        {
            CollectionAssert.AreEqual(new[] { 4f, 4f, 4f }, reader.ReadTensor("x").data<float>().ToArray());
        }

        Assert.ThrowsExactly<ArgumentException>(() => SafeTensorsWriter.Write(path, new[] { KeyValuePair.Create("x", torch.ones(1)), KeyValuePair.Create("x", torch.ones(1)) }));
        CollectionAssert.AreEqual(new[] { "m.safetensors" }, Directory.GetFiles(folder).Select(Path.GetFileName).ToArray());
    }

    [TestMethod]
    public void TruncatedFileIsRejectedNamingTheFileAndTensor()
    {
        using var scope = torch.NewDisposeScope();
        var path = Path.Combine(TempFolder("st-bad"), "cut.safetensors");
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["big"] = torch.ones(64) });
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        var error = Expect(path);
        StringAssert.Contains(error.Message, "'big'");
        StringAssert.Contains(error.Message, "truncated");

        File.WriteAllBytes(path, bytes[..5]);
        StringAssert.Contains(Expect(path).Message, "shorter than the 8-byte header length");
    }

    [TestMethod]
    public void HugeHeaderLengthIsRejectedBeforeAllocating()
    {
        var path = Raw("{}", declaredLength: ulong.MaxValue - 3);
        StringAssert.Contains(Expect(path).Message, "limit");
        path = Raw("{}", declaredLength: 90_000_000);
        StringAssert.Contains(Expect(path).Message, "only");
    }

    [TestMethod]
    [DataRow("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}""", 8, "reach past")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}""", 8, "begin after they end")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}""", 8, "negative")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}""", 8, "needs 12")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}""", 8, "non-negative")]
    [DataRow("""{"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}""", 8, "'Q4' is not supported")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}""", 16, "overlapping")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [2]}}""", 8, "data_offsets")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 8]}}""", 8, "more elements")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"n": 1}}""", 8, "__metadata__")]
    [DataRow("""[1, 2]""", 8, "not an object")]
    [DataRow("""{"w": """, 8, "not valid JSON")]
    public void MalformedHeadersAreRejectedNamingTheFile(string header, int dataBytes, string hint)
    {
        var path = Raw(header, dataBytes: dataBytes);
        var error = Expect(path);
        StringAssert.Contains(error.Message, hint);
    }

    [TestMethod]
    public void MetadataAndHolesAreAccepted()
    {
        var path = Raw("""{"__metadata__": {"format": "pt"}, "w": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}, "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}}""", dataBytes: 8);
        using var reader = SafeTensorsReader.Open(path);
        Assert.AreEqual(2, reader.Tensors.Count);
        CollectionAssert.AreEqual(new long[] { 0, 3 }, reader.ReadTensor("e").shape);
        Assert.AreEqual(2L, reader.ReadTensor("w").numel());
    }

    private static InvalidDataException Expect(string path)
    {
        var error = Assert.ThrowsExactly<InvalidDataException>(() => SafeTensorsReader.Open(path).Dispose());
        StringAssert.Contains(error.Message, path);
        return error;
    }

    private static string Raw(string header, int dataBytes = 0, ulong? declaredLength = null)
    {
        var path = Path.Combine(TempFolder("st-raw"), "raw.safetensors");
        var json = Encoding.UTF8.GetBytes(header);
        using var stream = File.Create(path);
        stream.Write(BitConverter.GetBytes(declaredLength ?? (ulong)json.Length));
        stream.Write(json);
        stream.Write(new byte[dataBytes]);
        return path;
    }
}
