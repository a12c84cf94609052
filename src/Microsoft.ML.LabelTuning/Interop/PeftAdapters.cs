using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Interop;

/// <summary>
/// Moves adapters between this library and Hugging Face PEFT, in PEFT's own layout: <c>adapter_config.json</c> and
/// <c>adapter_model.safetensors</c> with PEFT's key names (task type SEQ_CLS; the trained head is saved as
/// <c>score.weight</c> and replaces the base model's). Each tuning method's folder holds its own mapping (LS-LLaMA's LORA,
/// PROMPT_TUNING, PREFIX_TUNING) and registers it with its descriptor; this class finds them only through the registry.
/// </summary>
public static class PeftAdapters
{
    /// <summary>
    /// Imports a PEFT SEQ_CLS adapter onto a base model folder and returns a multiclass transformer that scores
    /// <paramref name="textColumnName"/>. The tokenizer is read from <paramref name="baseModelPath"/>.
    /// </summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="adapterPath">The folder PEFT's save_pretrained wrote.</param>
    /// <param name="baseModelPath">The base model folder (config.json, safetensors, tokenizer).</param>
    /// <param name="classNames">Names of the classes in head order; default "0", "1", ….</param>
    /// <param name="textColumnName">The text column to score.</param>
    /// <param name="maxSequenceLength">Tokens per input.</param>
    public static LabelTuningMulticlassTransformer Import(
        MLContext mlContext,
        string adapterPath,
        string baseModelPath,
        IReadOnlyList<string>? classNames = null,
        string textColumnName = "Text",
        int maxSequenceLength = 512)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        IHostEnvironment env = mlContext;
        var internalEnv = env as IHostEnvironmentInternal;
        var device = DeviceSelection.Select(internalEnv?.GpuDeviceId, internalEnv?.FallbackToCpu ?? false);
        var tokenizer = LlamaTextTokenizer.FromModelFolder(baseModelPath);
        var (classifier, method, settings) = LoadClassifier(adapterPath, baseModelPath, device);
        if (classNames is not null && classNames.Count != classifier.ClassCount)
        {
            classifier.Dispose(); // with the decoder it owns
            throw new ArgumentException($"classNames has {classNames.Count} names but the adapter's head scores {classifier.ClassCount} classes.", nameof(classNames));
        }

        var names = classNames?.ToArray() ?? Enumerable.Range(0, classifier.ClassCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var description = new ClassifierDescription(method, settings, names, textColumnName, null, maxSequenceLength, Truncation.Head, 8,
            TokenLevel: false, Path.GetFullPath(baseModelPath), BaseModelReference.Fingerprint(baseModelPath), BaseModelEmbedded: false, [],
            "float32", DefaultColumnNames.Score, DefaultColumnNames.PredictedLabel, ClassNamesAreKeyValues: classNames is not null);
        var keyValues = classNames is null ? (Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>>?)null
            : new Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>>(names.Length, names.Select(n => n.AsMemory()).ToArray());
        var runtime = new ClassifierRuntime(classifier, new TextEncoder(tokenizer, maxSequenceLength, Truncation.Head), device, description) { KeyValues = keyValues };
        return new LabelTuningMulticlassTransformer(env, runtime);
    }

    /// <summary>Exports a trained model's adapter and head in PEFT's layout, so Python's PeftModel.from_pretrained loads it.</summary>
    /// <param name="transformer">A trained label-tuning transformer.</param>
    /// <param name="folder">The output folder (created; files are written atomically).</param>
    /// <exception cref="NotSupportedException">The model's method (or its settings, such as DePT) has no PEFT equivalent.</exception>
    public static void ExportPeftAdapter(this LabelTuningTransformerBase transformer, string folder)
    {
        ArgumentNullException.ThrowIfNull(transformer);
        var runtime = transformer.Runtime;
        var description = runtime.Description;
        var mapping = TuningMethodRegistry.Get(description.Method).Peft
            ?? throw new NotSupportedException($"PEFT export of {description.Method} models is not available; PEFT has no equivalent adapter type.");
        Directory.CreateDirectory(folder);
        mapping.Export(new PeftExport(runtime.Classifier, description.Settings, description.BaseModelPath, folder));
    }

    /// <summary>Reads a PEFT adapter and builds the classifier it describes on the base model (no tokenizer needed).</summary>
    internal static (LlamaSequenceClassifier Classifier, TuningMethod Method, JsonElement Settings) LoadClassifier(string adapterPath, string baseModelPath, Device device)
    {
        var configPath = Path.Combine(adapterPath, PeftFormat.ConfigFile);
        var weightsPath = Path.Combine(adapterPath, PeftFormat.WeightsFile);
        if (!File.Exists(configPath))
        {
            throw new FileNotFoundException($"'{adapterPath}' has no {PeftFormat.ConfigFile}; it is not a PEFT adapter folder.", configPath);
        }

        if (!File.Exists(weightsPath))
        {
            var pickled = Path.Combine(adapterPath, "adapter_model.bin");
            throw File.Exists(pickled)
                ? new InvalidDataException($"'{pickled}' is a pickle file, which can execute code when loaded and is refused. Re-save the adapter with safe_serialization=True.")
                : new FileNotFoundException($"'{adapterPath}' has no {PeftFormat.WeightsFile}.", weightsPath);
        }

        JsonNode config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(configPath), documentOptions: new JsonDocumentOptions { MaxDepth = 64 })
                ?? throw new InvalidDataException($"{configPath} is empty.");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"'{configPath}' is not valid JSON: {ex.Message}", ex);
        }

        var peftType = config["peft_type"]?.GetValue<string>() ?? throw new InvalidDataException($"'{configPath}' has no peft_type.");
        var taskType = config["task_type"]?.GetValue<string>();
        if (taskType is not null && taskType != "SEQ_CLS")
        {
            throw new InvalidDataException($"'{configPath}' has task_type {taskType}; only SEQ_CLS adapters (sequence classification) can be imported.");
        }

        var method = TuningMethodRegistry.ForPeftType(peftType)
            ?? throw new NotSupportedException(
                $"PEFT type {peftType} in '{configPath}' is not supported for import ({string.Join(", ", TuningMethodRegistry.PeftTypes)} are).");
        var (tensors, _) = SafeTensors.ReadFile(weightsPath);
        try
        {
            var model = ClassifierFactory.LoadDecoder(baseModelPath, device, ScalarType.Float32);
            try
            {
                var (classifier, settings) = method.Peft!.Import(model, new PeftAdapterFiles(config, configPath, tensors, weightsPath));
                return (classifier, method.Method, settings);
            }
            catch
            {
                model.Dispose(); // a mapping that built its classifier has disposed it (and so the decoder) already; twice is harmless
                throw;
            }
        }
        finally
        {
            foreach (var tensor in tensors.Values)
            {
                tensor.Dispose(); // copied into the parameters, or refused
            }
        }
    }
}
