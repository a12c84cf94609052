using System.Text.Json;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Checkpoints;

/// <summary>
/// Writes a random-weight <c>LlamaForCausalLM</c> checkpoint of any size as a Hugging Face folder, the way real ones
/// ship: bfloat16 shards of at most <c>shardBytes</c> with a <c>model.safetensors.index.json</c>, and an
/// <c>lm_head.weight</c> unless the embeddings are tied. Tensors are made and written one shard at a time, so writing
/// a 1B-parameter model needs about one shard of memory. For benchmarks and tests of real-size models, which are not
/// downloaded: matrices are N(0, 0.02), norms are ones.
/// </summary>
internal static class RandomCheckpoint
{
    /// <summary>
    /// Real model shapes by name: <c>tinyllama-1.1b</c> (TinyLlama-1.1B: 22 layers, 4 key/value heads, separate LM
    /// head) and <c>llama-3.2-1b</c> (Llama-3.2-1B: 16 layers, vocabulary 128,256, tied embeddings, llama3 RoPE scaling).
    /// </summary>
    public static IReadOnlyDictionary<string, LlamaConfig> Shapes { get; } = new Dictionary<string, LlamaConfig>
    {
        ["tinyllama-1.1b"] = new()
        {
            HiddenSize = 2048,
            IntermediateSize = 5632,
            NumHiddenLayers = 22,
            NumAttentionHeads = 32,
            NumKeyValueHeads = 4,
            VocabSize = 32000,
            MaxPositionEmbeddings = 2048,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            BosTokenId = 1,
            EosTokenId = [2],
            TieWordEmbeddings = false,
        },
        ["llama-3.2-1b"] = new()
        {
            HiddenSize = 2048,
            IntermediateSize = 8192,
            NumHiddenLayers = 16,
            NumAttentionHeads = 32,
            NumKeyValueHeads = 8,
            VocabSize = 128256,
            MaxPositionEmbeddings = 131072,
            RmsNormEps = 1e-5,
            RopeTheta = 500000,
            RopeScaling = new RopeScalingConfig { RopeType = "llama3", Factor = 32, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 },
            BosTokenId = 128000,
            EosTokenId = [128001],
            TieWordEmbeddings = true,
        },
    };

    /// <summary>The Hugging Face tensor names and shapes of a causal LM of <paramref name="config"/>, in checkpoint order.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> Tensors(LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        long d = config.HiddenSize;
        long q = (long)config.NumAttentionHeads * config.HeadDimension;
        long kv = (long)config.KeyValueHeadCount * config.HeadDimension;
        long m = config.IntermediateSize;
        var tensors = new List<(string, long[])> { ("model.embed_tokens.weight", [config.VocabSize, d]) };
        for (var i = 0; i < config.NumHiddenLayers; i++)
        {
            var layer = $"model.layers.{i}.";
            tensors.Add((layer + "input_layernorm.weight", [d]));
            tensors.Add((layer + "self_attn.q_proj.weight", [q, d]));
            tensors.Add((layer + "self_attn.k_proj.weight", [kv, d]));
            tensors.Add((layer + "self_attn.v_proj.weight", [kv, d]));
            tensors.Add((layer + "self_attn.o_proj.weight", [d, q]));
            tensors.Add((layer + "post_attention_layernorm.weight", [d]));
            tensors.Add((layer + "mlp.gate_proj.weight", [m, d]));
            tensors.Add((layer + "mlp.up_proj.weight", [m, d]));
            tensors.Add((layer + "mlp.down_proj.weight", [d, m]));
        }

        tensors.Add(("model.norm.weight", [d]));
        if (!config.TieWordEmbeddings)
        {
            tensors.Add(("lm_head.weight", [config.VocabSize, d]));
        }

        return tensors;
    }

    /// <summary>Writes <c>config.json</c>, the bf16 shards and their index into <paramref name="folder"/> (created if needed).</summary>
    /// <returns>The number of parameters written.</returns>
    public static long Write(LlamaConfig config, string folder, int seed, long shardBytes = 1L << 30)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        config.Validate();
        Directory.CreateDirectory(folder);
        var shards = new List<List<(string Name, long[] Shape)>> { new() };
        long current = 0;
        foreach (var tensor in Tensors(config))
        {
            var bytes = tensor.Shape.Aggregate(2L, (a, b) => a * b);
            if (current > 0 && current + bytes > shardBytes)
            {
                shards.Add([]);
                current = 0;
            }

            shards[^1].Add(tensor);
            current += bytes;
        }

        var generator = new TorchSharp.torch.Generator((ulong)seed);
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long parameters = 0;
        for (var s = 0; s < shards.Count; s++)
        {
            var file = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            var made = new List<KeyValuePair<string, Tensor>>();
            try
            {
                foreach (var (name, shape) in shards[s])
                {
                    using var values = shape.Length == 1 ? ones(shape) : randn(shape, generator: generator).mul_(0.02);
                    made.Add(new(name, values.to(ScalarType.BFloat16)));
                    weightMap[name] = file;
                    parameters += shape.Aggregate(1L, (a, b) => a * b);
                }

                SafeTensorsWriter.Write(Path.Combine(folder, file), made, new Dictionary<string, string> { ["format"] = "pt" });
            }
            finally
            {
                foreach (var (_, tensor) in made)
                {
                    tensor.Dispose();
                }
            }
        }

        var index = new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = parameters * 2 },
            ["weight_map"] = weightMap,
        };
        AtomicFile.WriteText(Path.Combine(folder, HfModelFolder.SafeTensorsIndexFileName), JsonSerializer.Serialize(index));
        var written = config with { TorchDtype = "bfloat16", Architectures = config.Architectures ?? ["LlamaForCausalLM"] };
        AtomicFile.WriteText(Path.Combine(folder, HfModelFolder.ConfigFileName), written.ToJson());
        return parameters;
    }
}
