using Microsoft.ML.LabelTuning.Checkpoints;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>Hand-made safetensors headers for the cases the fuzzer found or that it reaches only rarely.</summary>
[TestClass]
public sealed class SafeTensorsEdgeCaseTests
{
    private string _folder = string.Empty;

    [TestInitialize]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("lt-st-edge-").FullName;

    [TestCleanup]
    public void DeleteFolder() => Directory.Delete(_folder, recursive: true);

    [TestMethod]
    [DataRow("""{"w\ud800": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", "not valid Unicode")]
    [DataRow("""{"w": {"dtype": "F3\udfff", "shape": [1], "data_offsets": [0, 4]}}""", "not valid Unicode")]
    [DataRow("""{"__metadata__": {"k": "\ud800"}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}""", "not valid Unicode")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [0, 4611686018427387904, 4611686018427387904], "data_offsets": [0, 0]}}""", "more elements than a 64-bit count holds")]
    [DataRow("""{"w": {"dtype": "F32", "shape": [0, 9223372036854775807, 9223372036854775807], "data_offsets": [0, 0]}}""", "more elements than a 64-bit count holds")]
    public void HostileHeadersAreRefusedNamingTheFile(string header, string hint)
    {
        var path = Write(System.Text.Encoding.UTF8.GetBytes(header), dataBytes: 4);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => SafeTensorsFuzzTests.ReadEverything(path));
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, hint);
    }

    [TestMethod]
    public void InvalidUtf8InTheHeaderIsRefusedNamingTheFile()
    {
        var header = System.Text.Encoding.UTF8.GetBytes("{\"w\u00e9\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}");
        header[4] = 0xFF; // the first byte of "\u00e9" becomes one that UTF-8 never uses
        var path = Write(header, dataBytes: 4);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => SafeTensorsFuzzTests.ReadEverything(path));
        StringAssert.Contains(error.Message, path);
    }

    [TestMethod]
    public void ManyDimensionsOfOneAndEmptyTensorsOfHugeExtentLoad()
    {
        var ones = string.Join(", ", Enumerable.Repeat("1", 64));
        var header = "{\"w\": {\"dtype\": \"F32\", \"shape\": [" + ones + "], \"data_offsets\": [0, 4]}, "
            + "\"e\": {\"dtype\": \"F32\", \"shape\": [0, 1099511627776], \"data_offsets\": [4, 4]}, "
            + "\"z\": {\"dtype\": \"F32\", \"shape\": [9223372036854775807, 0], \"data_offsets\": [4, 4]}}";
        var path = Write(System.Text.Encoding.UTF8.GetBytes(header), dataBytes: 4);
        SafeTensorsFuzzTests.ReadEverything(path);
    }

    [TestMethod]
    [DataRow(new byte[] { 0x80, 0x02, 0x7D, 0x71, 0x00, 0x28, 0x58, 0x01 }, "pickle")]
    [DataRow(new byte[] { 0x50, 0x4B, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00 }, "pickle")]
    public void PickleAndZipBytesAreRefusedAsPickles(byte[] start, string hint)
    {
        var path = Fuzz.WriteFile(_folder, "model.safetensors", [.. start, .. new byte[64]]);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => SafeTensorsReader.Open(path));
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, hint);
    }

    [TestMethod]
    public void SafetensorsBytesInsideASavedModelAreCheckedAndNamedByTheirEntry()
    {
        // ModelPersistence reads the adapter of a saved model zip through SafeTensors.Read(Stream, description).
        var hostile = SafeTensorsFuzzTests.Assemble("""{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}""", new byte[8], null);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => SafeTensors.Read(new MemoryStream(hostile), "adapter.safetensors in the saved model"));
        StringAssert.StartsWith(error.Message, "adapter.safetensors in the saved model");
        StringAssert.Contains(error.Message, "reach past");
        Assert.IsFalse(error.Message.Contains(Path.GetTempPath(), StringComparison.Ordinal), "the temporary file is not named: " + error.Message);
    }

    private string Write(byte[] header, int dataBytes)
        => Fuzz.WriteFile(_folder, $"edge-{Guid.NewGuid():N}.safetensors", SafeTensorsFuzzTests.Assemble(header, new byte[dataBytes], null));
}
