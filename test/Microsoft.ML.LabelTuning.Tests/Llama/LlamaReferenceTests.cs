using System.Globalization;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

/// <summary>
/// Golden parity with Meta's reference llama/model.py: every case folder of Fixtures/llama-reference (or of
/// LABELTUNING_LLAMA_REFERENCE_DIR) is loaded, run with its attention mask, and compared on unmasked positions.
/// </summary>
[TestClass]
public sealed class LlamaReferenceTests
{
    public const string DirectoryVariable = "LABELTUNING_LLAMA_REFERENCE_DIR";

    public static string Root
        => Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } custom
            ? custom
            : Path.Combine(AppContext.BaseDirectory, "Fixtures", "llama-reference");

    public static IEnumerable<object[]> Cases()
        => Directory.GetDirectories(Root)
            .Where(d => File.Exists(Path.Combine(d, "case.json")))
            .Select(d => new object[] { Path.GetFileName(d) })
            .OrderBy(c => (string)c[0], StringComparer.Ordinal);

    [TestMethod]
    public void FixtureDirectoryHoldsCases()
    {
        Assert.IsTrue(Cases().Count() >= 3, $"Expected at least 3 case folders under '{Root}'.");
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MatchesMetaReferenceOnUnmaskedPositions(string caseName)
    {
        var folder = Path.Combine(Root, caseName);
        using var caseJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "case.json")));
        var atol = caseJson.RootElement.GetProperty("atol").GetDouble();
        var rtol = caseJson.RootElement.GetProperty("rtol").GetDouble();

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var model = CheckpointLoader.LoadCausalLM(folder, dtype: ScalarType.Float32);
        model.eval();
        var (ids, mask) = ReadInputs(Path.Combine(folder, "inputs.json"));
        var input = new LlamaInput { InputIds = ids, AttentionMask = mask };
        var hidden = model.Model.call(input).LastHiddenState;
        var logits = model.call(input);

        using var expected = SafeTensorsReader.Open(Path.Combine(folder, "expected.safetensors"));
        CompareUnmasked(expected.ReadTensor("last_hidden_state"), hidden, mask, atol, rtol, $"{caseName} last_hidden_state");
        CompareUnmasked(expected.ReadTensor("logits"), logits, mask, atol, rtol, $"{caseName} logits");
    }

    internal static (Tensor Ids, Tensor Mask) ReadInputs(string path)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        static Tensor Matrix(JsonElement rows)
        {
            var data = rows.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
            var flat = data.SelectMany(r => r).ToArray();
            return torch.tensor(flat, dtype: ScalarType.Int64).view(data.Length, data[0].Length);
        }

        return (Matrix(json.RootElement.GetProperty("input_ids")), Matrix(json.RootElement.GetProperty("attention_mask")));
    }

    private static void CompareUnmasked(Tensor expected, Tensor actual, Tensor mask, double atol, double rtol, string what)
    {
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shapes differ.");
        var keep = mask.ne(0).unsqueeze(-1);                                    // [B, T, 1]
        var excess = ((actual - expected).abs() - (atol + rtol * expected.abs())).masked_fill(keep.logical_not(), -1);
        var worst = excess.max().item<float>();
        var failing = excess.gt(0).sum().item<long>();
        var maxDiff = (actual - expected).abs().masked_fill(keep.logical_not(), 0).max().item<float>();
        Assert.AreEqual(0L, failing,
            $"{what}: {failing} elements outside atol {atol} + rtol {rtol}·|expected| (worst excess {worst.ToString("G4", CultureInfo.InvariantCulture)}, max |diff| {maxDiff.ToString("G4", CultureInfo.InvariantCulture)}).");
    }
}
