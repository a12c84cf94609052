using System.Text.Json;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Checkpoints;

/// <summary>
/// A Hugging Face model folder: <c>config.json</c> plus either <c>model.safetensors</c> or a sharded
/// <c>model.safetensors.index.json</c> whose <c>weight_map</c> names shards in the same folder. Pickle checkpoints
/// (<c>pytorch_model.bin</c>, <c>*.pt</c>, <c>*.pth</c>, <c>*.ckpt</c>) are refused: unpickling can execute
/// arbitrary code.
/// </summary>
internal sealed class HfModelFolder
{
    /// <summary>The single-file weights name.</summary>
    public const string SafeTensorsFileName = "model.safetensors";

    /// <summary>The sharded weights index name.</summary>
    public const string SafeTensorsIndexFileName = "model.safetensors.index.json";

    /// <summary>The config name.</summary>
    public const string ConfigFileName = "config.json";

    private static readonly string[] _pickleExtensions = [".bin", ".pt", ".pth", ".ckpt", ".pkl"];

    private HfModelFolder(string folder, string weightsPath, IReadOnlyList<string> weightFiles, IReadOnlyDictionary<string, string>? weightMap)
    {
        FolderPath = folder;
        WeightsPath = weightsPath;
        WeightFiles = weightFiles;
        WeightMap = weightMap;
    }

    /// <summary>Gets the folder.</summary>
    public string FolderPath { get; }

    /// <summary>Gets the path of <c>config.json</c> (which may be absent until <see cref="LoadConfig"/> is called).</summary>
    public string ConfigPath => Path.Combine(FolderPath, ConfigFileName);

    /// <summary>Gets <c>model.safetensors</c>, or the index file when sharded; named in error messages.</summary>
    public string WeightsPath { get; }

    /// <summary>Gets the full paths of the safetensors files, in order.</summary>
    public IReadOnlyList<string> WeightFiles { get; }

    /// <summary>Gets the index's tensor → shard file name map, or null for a single file.</summary>
    public IReadOnlyDictionary<string, string>? WeightMap { get; }

    /// <summary>Gets a value indicating whether the weights are sharded.</summary>
    public bool IsSharded => WeightMap is not null;

    /// <summary>Opens a folder, validating the shard index, and refusing pickle-only checkpoints.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidDataException">No safetensors weights, a pickle checkpoint, or a bad index.</exception>
    public static HfModelFolder Open(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        folder = Path.GetFullPath(folder);
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Model folder '{folder}' does not exist.");
        }

        var index = Path.Combine(folder, SafeTensorsIndexFileName);
        var single = Path.Combine(folder, SafeTensorsFileName);
        if (File.Exists(index))
        {
            var map = ReadIndex(index, folder);
            var files = map.Values.Distinct(StringComparer.Ordinal).Select(f => Path.Combine(folder, f)).ToArray();
            return new HfModelFolder(folder, index, files, map);
        }

        if (File.Exists(single))
        {
            return new HfModelFolder(folder, single, [single], null);
        }

        var pickles = Directory.EnumerateFiles(folder)
            .Where(f => _pickleExtensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
            .Select(Path.GetFileName)
            .Order(StringComparer.Ordinal)
            .ToArray();
        if (pickles.Length > 0)
        {
            throw new InvalidDataException(
                $"Model folder '{folder}' holds only pickle checkpoints ({string.Join(", ", pickles)}) and no {SafeTensorsFileName}. "
                + "Pickle files can execute arbitrary code when loaded, so they are refused. Convert the model to safetensors "
                + "with Python: python -c \"from transformers import AutoModel; m=AutoModel.from_pretrained(p); "
                + "m.save_pretrained(out, safe_serialization=True)\" (for a causal LM use AutoModelForCausalLM), then load 'out'.");
        }

        throw new InvalidDataException(
            $"Model folder '{folder}' has neither {SafeTensorsFileName} nor {SafeTensorsIndexFileName}.");
    }

    /// <summary>
    /// Reads and validates <c>config.json</c>, and checks it against the checkpoint's headers: a config that implies
    /// more decoder weights than the checkpoint holds is refused here, before a model of the config's size is built
    /// (a hostile or mistaken config would otherwise allocate whatever it declares).
    /// </summary>
    /// <exception cref="InvalidDataException">The config is invalid or implies more weights than the checkpoint holds.</exception>
    public LlamaConfig LoadConfig()
    {
        var config = LlamaConfig.Load(ConfigPath);
        var implied = MinimumDecoderParameters(config);
        var stored = StoredElements();
        if (implied > stored)
        {
            throw new InvalidDataException(
                $"Model config '{ConfigPath}' implies at least {implied:N0} decoder weights (hidden_size {config.HiddenSize}, "
                + $"intermediate_size {config.IntermediateSize}, num_hidden_layers {config.NumHiddenLayers}, vocab_size {config.VocabSize}) "
                + $"but the checkpoint '{WeightsPath}' holds {stored:N0} values in all; the config does not describe these weights.");
        }

        return config;
    }

    /// <summary>
    /// A lower bound on the weights of the decoder a config describes (embedding, attention and MLP projections,
    /// norms; biases and heads not counted), exact in 128-bit arithmetic whatever the sizes.
    /// </summary>
    internal static Int128 MinimumDecoderParameters(LlamaConfig config)
    {
        Int128 hidden = config.HiddenSize;
        Int128 heads = config.NumAttentionHeads;
        Int128 headDim = config.HeadDimension;
        var attention = (2 * hidden * heads * headDim) + (2 * hidden * config.KeyValueHeadCount * headDim); // q, o; k, v
        var mlp = 3 * hidden * config.IntermediateSize;
        var layer = attention + mlp + (2 * hidden);
        return (config.VocabSize * hidden) + (config.NumHiddenLayers * layer) + hidden;
    }

    /// <summary>The number of values in the checkpoint, from the headers alone.</summary>
    private Int128 StoredElements()
    {
        Int128 total = 0;
        foreach (var file in WeightFiles)
        {
            using var reader = SafeTensorsReader.Open(file);
            foreach (var info in reader.Tensors.Values)
            {
                total += info.ElementCount;
            }
        }

        return total;
    }

    /// <summary>Gets the names of every tensor in the checkpoint (from the index, or the single file's header).</summary>
    public IReadOnlyCollection<string> TensorNames()
    {
        if (WeightMap is not null)
        {
            return WeightMap.Keys.ToArray();
        }

        using var reader = SafeTensorsReader.Open(WeightFiles[0]);
        return reader.Tensors.Keys.ToArray();
    }

    private static Dictionary<string, string> ReadIndex(string indexPath, string folder)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(indexPath));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Shard index '{indexPath}' is not valid JSON: {e.Message}", e);
        }

        using (document)
        {
            if (JsonStrings.FindInvalid(document.RootElement) is { } invalid)
            {
                throw new InvalidDataException($"Shard index '{indexPath}' has a string at '{invalid}' that is not valid Unicode (an escaped lone surrogate such as \\ud800?).");
            }

            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var weightMap)
                || weightMap.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"Shard index '{indexPath}' has no 'weight_map' object.");
            }

            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in weightMap.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new InvalidDataException($"Shard index '{indexPath}' maps '{entry.Name}' to a JSON {entry.Value.ValueKind}, not a file name.");
                }

                var file = entry.Value.GetString()!;
                if (file.Length == 0 || Path.IsPathRooted(file) || file.Contains('/') || file.Contains('\\') || file == ".." || file == "."
                    || !file.EndsWith(".safetensors", StringComparison.Ordinal))
                {
                    throw new InvalidDataException(
                        $"Shard index '{indexPath}' maps '{entry.Name}' to '{file}', which is not a .safetensors file name in the model folder.");
                }

                if (!map.TryAdd(entry.Name, file))
                {
                    throw new InvalidDataException($"Shard index '{indexPath}' lists '{entry.Name}' twice.");
                }
            }

            if (map.Count == 0)
            {
                throw new InvalidDataException($"Shard index '{indexPath}' has an empty 'weight_map'.");
            }

            foreach (var file in map.Values.Distinct(StringComparer.Ordinal))
            {
                if (!File.Exists(Path.Combine(folder, file)))
                {
                    throw new InvalidDataException($"Shard index '{indexPath}' names shard '{file}', which is not in '{folder}'.");
                }
            }

            return map;
        }
    }
}
