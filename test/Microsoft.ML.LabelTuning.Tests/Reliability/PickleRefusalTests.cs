using System.IO.Compression;
using System.Text;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Interop;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Transformers;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Pickle checkpoints (<c>.bin</c>, <c>.pt</c>, <c>.pth</c>, <c>.ckpt</c>, <c>.pkl</c>) are refused, never
/// unpickled: each test plants a pickle that would create a marker file if it were ever executed, and checks that
/// every way into the library refuses it with a message naming the file, and that the marker never appears.
/// </summary>
[TestClass]
public sealed class PickleRefusalTests
{
    private string _folder = string.Empty;
    private string _marker = string.Empty;

    [TestInitialize]
    public void CreateFolder()
    {
        _folder = Directory.CreateTempSubdirectory("lt-pickle-").FullName;
        _marker = Path.Combine(Path.GetTempPath(), $"lt-pickle-executed-{Guid.NewGuid():N}");
    }

    [TestCleanup]
    public void DeleteFolder()
    {
        Assert.IsFalse(File.Exists(_marker), $"The pickle was executed: '{_marker}' exists.");
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>A protocol-2 pickle that runs <c>os.system("touch marker")</c> when unpickled.</summary>
    internal static byte[] MaliciousPickle(string marker)
    {
        var command = Encoding.UTF8.GetBytes($"touch {marker}");
        return
        [
            0x80, 0x02,                                  // PROTO 2
            .. "cos\nsystem\n"u8,                        // GLOBAL os.system
            (byte)'X', .. BitConverter.GetBytes(command.Length), .. command, // BINUNICODE command
            0x85,                                        // TUPLE1
            (byte)'R',                                   // REDUCE: call os.system(command)
            (byte)'.',                                   // STOP
        ];
    }

    /// <summary>The same pickle inside the zip that <c>torch.save</c> writes (archive/data.pkl).</summary>
    internal static byte[] MaliciousTorchZip(string marker)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var entry = zip.CreateEntry("archive/data.pkl", CompressionLevel.NoCompression).Open();
            entry.Write(MaliciousPickle(marker));
        }

        return buffer.ToArray();
    }

    [TestMethod]
    [DataRow("pytorch_model.bin", false)]
    [DataRow("pytorch_model.bin", true)]
    [DataRow("model.pt", false)]
    [DataRow("consolidated.00.pth", true)]
    [DataRow("last.ckpt", false)]
    [DataRow("weights.pkl", false)]
    public void APickleOnlyModelFolderIsRefusedByEveryLoader(string file, bool zipped)
    {
        File.WriteAllText(Path.Combine(_folder, "config.json"), ModelFolderFuzzTests.SeedConfig);
        File.WriteAllBytes(Path.Combine(_folder, file), zipped ? MaliciousTorchZip(_marker) : MaliciousPickle(_marker));

        foreach (var load in new Action[]
        {
            () => HfModelFolder.Open(_folder),
            () => CheckpointLoader.LoadCausalLM(_folder).Dispose(),
            () => CheckpointLoader.LoadModel(_folder).Dispose(),
            () => ClassifierFactory.LoadDecoder(_folder, CPU, ScalarType.Float32).Dispose(),
        })
        {
            var error = Assert.ThrowsExactly<InvalidDataException>(load);
            StringAssert.Contains(error.Message, file);
            StringAssert.Contains(error.Message, "arbitrary code");
        }
    }

    [TestMethod]
    public void ThePickleIsNeverOpenedWhenSafetensorsAreThere()
    {
        var config = LlamaConfigFromSeed();
        File.WriteAllBytes(Path.Combine(_folder, HfModelFolder.SafeTensorsFileName), ModelFolderFuzzTests.CheckpointOf(config));
        File.WriteAllText(Path.Combine(_folder, "config.json"), ModelFolderFuzzTests.SeedConfig);
        var pickle = Path.Combine(_folder, "pytorch_model.bin");
        File.WriteAllBytes(pickle, MaliciousPickle(_marker));

        // Held open with no sharing: a loader that tried to read it would fail.
        using (new FileStream(pickle, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            using var model = CheckpointLoader.LoadCausalLM(_folder);
            Assert.AreEqual(config.HiddenSize, model.Config.HiddenSize);
        }
    }

    [TestMethod]
    [DataRow(false)]
    [DataRow(true)]
    public void APickleNamedModelSafetensorsIsRefusedAsAPickle(bool zipped)
    {
        File.WriteAllText(Path.Combine(_folder, "config.json"), ModelFolderFuzzTests.SeedConfig);
        var path = Path.Combine(_folder, HfModelFolder.SafeTensorsFileName);
        File.WriteAllBytes(path, zipped ? MaliciousTorchZip(_marker) : MaliciousPickle(_marker));
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadCausalLM(_folder).Dispose());
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, "pickle");
    }

    [TestMethod]
    public void AShardIndexThatNamesAPickleIsRefused()
    {
        File.WriteAllText(Path.Combine(_folder, "config.json"), ModelFolderFuzzTests.SeedConfig);
        File.WriteAllBytes(Path.Combine(_folder, "pytorch_model-00001-of-00001.bin"), MaliciousPickle(_marker));
        File.WriteAllText(Path.Combine(_folder, HfModelFolder.SafeTensorsIndexFileName),
            """{"weight_map": {"model.embed_tokens.weight": "pytorch_model-00001-of-00001.bin"}}""");
        var error = Assert.ThrowsExactly<InvalidDataException>(() => HfModelFolder.Open(_folder));
        StringAssert.Contains(error.Message, "pytorch_model-00001-of-00001.bin");
        StringAssert.Contains(error.Message, "not a .safetensors file name");
    }

    [TestMethod]
    public void AFileNamedDirectlyIsReadAsSafetensorsAndAPickleIsRefused()
    {
        var path = Path.Combine(_folder, "model.bin");
        File.WriteAllBytes(path, MaliciousPickle(_marker));
        using var module = nn.Linear(2, 2);
        var error = Assert.ThrowsExactly<InvalidDataException>(() => CheckpointLoader.LoadInto(module, path));
        StringAssert.Contains(error.Message, path);
        StringAssert.Contains(error.Message, "pickle");
    }

    [TestMethod]
    public void APickledPeftAdapterIsRefused()
    {
        File.WriteAllText(Path.Combine(_folder, "adapter_config.json"), """{"peft_type": "LORA", "r": 4}""");
        var pickle = Path.Combine(_folder, "adapter_model.bin");
        File.WriteAllBytes(pickle, MaliciousPickle(_marker));
        var error = Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapters.LoadClassifier(_folder, _folder, CPU));
        StringAssert.Contains(error.Message, pickle);
        StringAssert.Contains(error.Message, "pickle");
    }

    [TestMethod]
    public void TheTrainerRefusesAPickleOnlyBaseModel()
    {
        File.WriteAllText(Path.Combine(_folder, "config.json"), ModelFolderFuzzTests.SeedConfig);
        File.Copy(TinyModels.TokenizerModel, Path.Combine(_folder, "tokenizer.model"));
        File.WriteAllBytes(Path.Combine(_folder, "pytorch_model.bin"), MaliciousPickle(_marker));
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(ToyData.Rows(8, seed: 1));
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(data).Transform(data);
        var options = new LabelSupervisedLlamaOptions { ModelPath = _folder, Epochs = 1, MaxSequenceLength = 16 };
        var error = Assert.Throws<Exception>(() => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(keyed));
        var inner = Innermost(error);
        Assert.IsInstanceOfType<InvalidDataException>(inner, error.ToString());
        StringAssert.Contains(inner.Message, "pytorch_model.bin");
        StringAssert.Contains(inner.Message, "arbitrary code");
    }

    [TestMethod]
    public void TheLibraryReferencesNoUnpickler()
    {
        var references = typeof(HfModelFolder).Assembly.GetReferencedAssemblies().Select(a => a.Name ?? string.Empty).ToArray();
        foreach (var name in references)
        {
            Assert.IsFalse(
                name.Contains("Pickle", StringComparison.OrdinalIgnoreCase) || name.Contains("Razorvine", StringComparison.OrdinalIgnoreCase)
                || name.Contains("PyBridge", StringComparison.OrdinalIgnoreCase),
                $"The library references '{name}', which can unpickle.");
        }
    }

    internal static Exception Innermost(Exception error)
    {
        while (error.InnerException is not null)
        {
            error = error.InnerException;
        }

        return error;
    }

    private static LlamaConfig LlamaConfigFromSeed() => LlamaConfig.Parse(ModelFolderFuzzTests.SeedConfig);
}
