using System.Globalization;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

/// <summary>Tiny configs, random inputs and tolerance checks shared by the engine tests.</summary>
internal static class LlamaTesting
{
    public static LlamaConfig TinyConfig(int kvHeads = 2, bool tied = false, int layers = 2) => new()
    {
        HiddenSize = 32,
        IntermediateSize = 64,
        NumHiddenLayers = layers,
        NumAttentionHeads = 4,
        NumKeyValueHeads = kvHeads,
        VocabSize = 101,
        RmsNormEps = 1e-5,
        RopeTheta = 10000,
        MaxPositionEmbeddings = 128,
        TieWordEmbeddings = tied,
        BosTokenId = 1,
        EosTokenId = [2],
        PadTokenId = 0,
        InitializerRange = 0.2, // larger than HF's 0.02 so that layers visibly change the outputs
    };

    public static LlamaModel TinyModel(LlamaConfig? config = null, int seed = 7)
    {
        torch.manual_seed(seed);
        return new LlamaModel(config ?? TinyConfig());
    }

    public static Tensor RandomIds(long batch, long length, int vocab, int seed)
    {
        var generator = new Generator((ulong)seed);
        return torch.randint(3, vocab, [batch, length], dtype: ScalarType.Int64, generator: generator);
    }

    /// <summary>Random per-layer prefix keys and values, each [batch, KvHeads, length, Dh].</summary>
    public static List<(Tensor Key, Tensor Value)> RandomPrefix(LlamaConfig config, long batch, long length, int seed = 99)
    {
        using var generator = new Generator((ulong)seed);
        return Enumerable.Range(0, config.NumHiddenLayers)
            .Select(_ => (
                torch.randn([batch, config.KeyValueHeadCount, length, config.HeadDimension], generator: generator),
                torch.randn([batch, config.KeyValueHeadCount, length, config.HeadDimension], generator: generator)))
            .ToList();
    }

    public static float MaxAbsDiff(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        return (a - b).abs().max().to(ScalarType.Float32).item<float>();
    }

    public static void AssertClose(Tensor expected, Tensor actual, double tolerance, string what)
    {
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shapes differ.");
        var diff = MaxAbsDiff(expected, actual);
        Assert.IsTrue(diff <= tolerance, $"{what}: max |difference| {diff.ToString("G4", CultureInfo.InvariantCulture)} exceeds {tolerance}.");
    }

    /// <summary>Within <paramref name="tolerance"/>, relative to the largest magnitude of <paramref name="expected"/> where that exceeds 1.</summary>
    public static void AssertCloseToScale(Tensor expected, Tensor actual, double tolerance, string what)
        => AssertClose(expected, actual, tolerance * Math.Max(1, expected.abs().max().to(ScalarType.Float64).item<double>()), what);

    private static readonly List<string> _tempFolders = [];

    /// <summary>A fresh temporary folder, removed by <see cref="DeleteTempFolders"/>.</summary>
    public static string TempFolder(string prefix)
    {
        var folder = Directory.CreateTempSubdirectory("lt-" + prefix + "-").FullName;
        lock (_tempFolders)
        {
            _tempFolders.Add(folder);
        }

        return folder;
    }

    /// <summary>Removes the folders <see cref="TempFolder"/> made (call from [ClassCleanup]).</summary>
    public static void DeleteTempFolders()
    {
        lock (_tempFolders)
        {
            foreach (var folder in _tempFolders.Where(Directory.Exists))
            {
                Directory.Delete(folder, recursive: true);
            }

            _tempFolders.Clear();
        }
    }
}
