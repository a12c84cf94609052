using System.Text.Json;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Interop;

[TestClass]
public sealed class PeftInteropTests
{
    /// <summary>Methods whose import is implemented; a case of any other method must be refused with an error that names it.</summary>
    private static readonly HashSet<string> _supported = ["LORA", "PROMPT_TUNING", "PREFIX_TUNING"];

    public static IEnumerable<object[]> Cases()
    {
        var root = Environment.GetEnvironmentVariable("LABELTUNING_PEFT_REFERENCE_DIR")
            ?? Path.Combine(AppContext.BaseDirectory, "Fixtures", "peft-reference");
        return Directory.GetDirectories(root).Where(d => File.Exists(Path.Combine(d, "case.json"))).OrderBy(d => d)
            .Select(d => new object[] { d });
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void ImportedAdapterMatchesPeftLogits(string caseFolder)
    {
        using var caseJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseFolder, "case.json")));
        var method = caseJson.RootElement.GetProperty("method").GetString()!;
        if (!_supported.Contains(method))
        {
            var refusal = Assert.ThrowsExactly<NotSupportedException>(() => PeftAdapters.LoadClassifier(Path.Combine(caseFolder, "adapter"), Path.Combine(caseFolder, "base"), CPU));
            StringAssert.Contains(refusal.Message, method);
            return;
        }

        var atol = caseJson.RootElement.GetProperty("atol").GetDouble();
        var rtol = caseJson.RootElement.GetProperty("rtol").GetDouble();
        using var scope = NewDisposeScope();
        var (classifier, _, _) = PeftAdapters.LoadClassifier(Path.Combine(caseFolder, "adapter"), Path.Combine(caseFolder, "base"), CPU);
        using var inputs = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseFolder, "inputs.json")));
        var ids = ToTensor(inputs.RootElement.GetProperty("input_ids"));
        var mask = ToTensor(inputs.RootElement.GetProperty("attention_mask"));
        using var noGrad = no_grad();
        var logits = classifier.forward(new TokenBatch(ids, mask, mask.sum().item<long>()));
        var (expectedTensors, _) = SafeTensors.ReadFile(Path.Combine(caseFolder, "expected.safetensors"));
        var expected = expectedTensors["logits"];
        CollectionAssert.AreEqual(expected.shape, logits.shape, $"{Path.GetFileName(caseFolder)}: logits shape");
        var bound = atol + (rtol * expected.abs());
        var excess = ((logits - expected).abs() - bound).max().item<float>();
        var worst = (logits - expected).abs().max().item<float>();
        Assert.IsTrue(excess <= 0, $"{Path.GetFileName(caseFolder)}: max |diff| {worst:E3} exceeds atol {atol} + rtol {rtol}·|expected|");
    }

    [TestMethod]
    [DataRow("lora-seqcls", "LORA", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "base_model.model.score.weight")]
    [DataRow("prompt-tuning-seqcls", "PROMPT_TUNING", "prompt_embeddings", "base_model.score.weight")]
    [DataRow("prefix-tuning-seqcls", "PREFIX_TUNING", "prompt_embeddings", "base_model.score.weight")]
    public void ExportThenImportGivesTheSameLogits(string caseName, string peftType, string adapterKey, string headKey)
    {
        var caseFolder = Path.Combine(AppContext.BaseDirectory, "Fixtures", "peft-reference", caseName);
        var output = Directory.CreateTempSubdirectory("lt-peft-export-");
        try
        {
            var (classifier, method, settings) = PeftAdapters.LoadClassifier(Path.Combine(caseFolder, "adapter"), Path.Combine(caseFolder, "base"), CPU);
            var runtime = new Transformers.ClassifierRuntime(classifier, null!, CPU, new Transformers.ClassifierDescription(
                method, settings, ["a", "b", "c"], "Text", null, 64, Data.Truncation.Head, 8, false,
                Path.Combine(caseFolder, "base"), "sha", false, [], "float32", "Score", "PredictedLabel", false));
            using var transformer = new Transformers.LabelTuningMulticlassTransformer(new MLContext(), runtime);
            transformer.ExportPeftAdapter(output.FullName);

            using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(output.FullName, "adapter_config.json")));
            Assert.AreEqual(peftType, config.RootElement.GetProperty("peft_type").GetString());
            Assert.AreEqual("SEQ_CLS", config.RootElement.GetProperty("task_type").GetString());
            var (tensors, _) = SafeTensors.ReadFile(Path.Combine(output.FullName, "adapter_model.safetensors"));
            CollectionAssert.Contains(tensors.Keys.ToList(), adapterKey);
            CollectionAssert.Contains(tensors.Keys.ToList(), headKey);
            var (original, _) = SafeTensors.ReadFile(Path.Combine(caseFolder, "adapter", "adapter_model.safetensors"));
            CollectionAssert.AreEquivalent(original.Keys.ToList(), tensors.Keys.ToList(), "the export writes the keys PEFT wrote");
            foreach (var (key, value) in original)
            {
                Assert.AreEqual(0f, (value - tensors[key]).abs().max().item<float>(), $"{key} changed in the round trip");
            }

            var (reimported, _, _) = PeftAdapters.LoadClassifier(output.FullName, Path.Combine(caseFolder, "base"), CPU);
            using var inputs = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseFolder, "inputs.json")));
            using var noGrad = no_grad();
            var ids = ToTensor(inputs.RootElement.GetProperty("input_ids"));
            var mask = ToTensor(inputs.RootElement.GetProperty("attention_mask"));
            var batch = new TokenBatch(ids, mask, 0);
            var before = classifier.forward(batch);
            var after = reimported.forward(batch);
            Assert.AreEqual(0f, (before - after).abs().max().item<float>());
        }
        finally
        {
            output.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void UnsupportedPeftTypesAreRefusedByName()
    {
        var lora = Path.Combine(AppContext.BaseDirectory, "Fixtures", "peft-reference", "lora-seqcls");
        var folder = Directory.CreateTempSubdirectory("lt-peft-ia3-");
        try
        {
            File.WriteAllText(Path.Combine(folder.FullName, "adapter_config.json"), """{"peft_type": "IA3", "task_type": "SEQ_CLS"}""");
            File.Copy(Path.Combine(lora, "adapter", "adapter_model.safetensors"), Path.Combine(folder.FullName, "adapter_model.safetensors"));
            var error = Assert.ThrowsExactly<NotSupportedException>(() => PeftAdapters.LoadClassifier(folder.FullName, Path.Combine(lora, "base"), CPU));
            StringAssert.Contains(error.Message, "IA3");
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    [TestMethod]
    public void PickledAdaptersAreRefused()
    {
        var folder = Directory.CreateTempSubdirectory("lt-peft-pickle-");
        try
        {
            File.WriteAllText(Path.Combine(folder.FullName, "adapter_config.json"), """{"peft_type": "LORA", "task_type": "SEQ_CLS"}""");
            File.WriteAllBytes(Path.Combine(folder.FullName, "adapter_model.bin"), [0x80, 0x02]);
            var error = Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapters.LoadClassifier(folder.FullName, folder.FullName, CPU));
            StringAssert.Contains(error.Message, "pickle");
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    private static Tensor ToTensor(JsonElement rows)
    {
        var data = rows.EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        return tensor(data.SelectMany(r => r).ToArray(), [data.Length, data[0].Length]);
    }
}
