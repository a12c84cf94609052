using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// The architecture of a LLaMA-family model, read from a Hugging Face <c>config.json</c>. Property names follow the
/// file's keys; keys this library does not use are kept in <see cref="ExtensionData"/> so a saved config round-trips.
/// Call <see cref="Validate"/> (done by <see cref="Load"/>) before building a model from a hand-made config.
/// </summary>
public sealed record LlamaConfig
{
    /// <summary>Gets the model type; only <c>llama</c> (or absent) is accepted.</summary>
    [JsonPropertyName("model_type")]
    public string? ModelType { get; init; } = "llama";

    /// <summary>Gets the architectures the checkpoint was saved from, e.g. <c>LlamaForCausalLM</c>.</summary>
    [JsonPropertyName("architectures")]
    public IReadOnlyList<string>? Architectures { get; init; }

    /// <summary>Gets the width of the residual stream D. Must be positive.</summary>
    [JsonPropertyName("hidden_size")]
    public int HiddenSize { get; init; }

    /// <summary>Gets the inner width of the SwiGLU MLP. Must be positive.</summary>
    [JsonPropertyName("intermediate_size")]
    public int IntermediateSize { get; init; }

    /// <summary>Gets the number of decoder layers. Must be positive.</summary>
    [JsonPropertyName("num_hidden_layers")]
    public int NumHiddenLayers { get; init; }

    /// <summary>Gets the number of query heads H. Must be positive.</summary>
    [JsonPropertyName("num_attention_heads")]
    public int NumAttentionHeads { get; init; }

    /// <summary>Gets the number of key/value heads as written in the file; null means multi-head attention (= heads).</summary>
    [JsonPropertyName("num_key_value_heads")]
    public int? NumKeyValueHeads { get; init; }

    /// <summary>Gets the vocabulary size V. Must be positive.</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; }

    /// <summary>Gets the epsilon of every RMSNorm. Must be positive. Default 1e-6.</summary>
    [JsonPropertyName("rms_norm_eps")]
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>Gets the RoPE base θ. Must be positive. Default 10000.</summary>
    [JsonPropertyName("rope_theta")]
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary>Gets the RoPE frequency scaling (<c>llama3</c> or <c>linear</c>), or null for none.</summary>
    [JsonPropertyName("rope_scaling")]
    public RopeScalingConfig? RopeScaling { get; init; }

    /// <summary>Gets the context length the model was trained for. Informational; not enforced. Default 2048.</summary>
    [JsonPropertyName("max_position_embeddings")]
    public int MaxPositionEmbeddings { get; init; } = 2048;

    /// <summary>Gets a value indicating whether the LM head reuses the token embedding matrix. Default false.</summary>
    [JsonPropertyName("tie_word_embeddings")]
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Gets a value indicating whether q/k/v/o projections have biases. Default false.</summary>
    [JsonPropertyName("attention_bias")]
    public bool AttentionBias { get; init; }

    /// <summary>Gets a value indicating whether the MLP projections have biases. Default false.</summary>
    [JsonPropertyName("mlp_bias")]
    public bool MlpBias { get; init; }

    /// <summary>Gets the per-head width as written in the file; null means <c>hidden_size / num_attention_heads</c>.</summary>
    [JsonPropertyName("head_dim")]
    public int? HeadDim { get; init; }

    /// <summary>Gets the MLP activation; only <c>silu</c> is supported. Default <c>silu</c>.</summary>
    [JsonPropertyName("hidden_act")]
    public string HiddenAct { get; init; } = "silu";

    /// <summary>Gets the standard deviation of the normal initialisation of new weights. Default 0.02.</summary>
    [JsonPropertyName("initializer_range")]
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>Gets the beginning-of-sequence token id, if any.</summary>
    [JsonPropertyName("bos_token_id")]
    public int? BosTokenId { get; init; }

    /// <summary>Gets the end-of-sequence token ids (the file may hold one id or a list).</summary>
    [JsonPropertyName("eos_token_id")]
    [JsonConverter(typeof(IntOrIntListConverter))]
    public IReadOnlyList<int>? EosTokenId { get; init; }

    /// <summary>Gets the padding token id, if any.</summary>
    [JsonPropertyName("pad_token_id")]
    public int? PadTokenId { get; init; }

    /// <summary>Gets the dtype the weights were saved in (<c>float32</c>, <c>float16</c>, <c>bfloat16</c>), if recorded.</summary>
    [JsonPropertyName("torch_dtype")]
    public string? TorchDtype { get; init; }

    /// <summary>Gets the keys of the file this library does not interpret; kept so that a saved config round-trips.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? ExtensionData { get; init; }

    /// <summary>Gets the file this config was read from, if any; used in error messages.</summary>
    [JsonIgnore]
    public string? SourcePath { get; init; }

    /// <summary>Gets the number of key/value heads after defaults (<see cref="NumKeyValueHeads"/> or the head count).</summary>
    [JsonIgnore]
    public int KeyValueHeadCount => NumKeyValueHeads ?? NumAttentionHeads;

    /// <summary>Gets the per-head width after defaults (<see cref="HeadDim"/> or hidden / heads).</summary>
    [JsonIgnore]
    public int HeadDimension => HeadDim ?? (NumAttentionHeads > 0 ? HiddenSize / NumAttentionHeads : 0);

    private static readonly JsonSerializerOptions _readOptions = new()
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private static readonly JsonSerializerOptions _writeOptions = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Reads and validates a Hugging Face <c>config.json</c>.</summary>
    /// <param name="configJsonPath">The path of the file.</param>
    /// <returns>The validated config, with <see cref="SourcePath"/> set.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The file is not valid JSON or describes an unsupported model.</exception>
    public static LlamaConfig Load(string configJsonPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(configJsonPath);
        if (!File.Exists(configJsonPath))
        {
            throw new FileNotFoundException($"Model config '{configJsonPath}' does not exist.", configJsonPath);
        }

        var config = Parse(File.ReadAllText(configJsonPath), configJsonPath);
        config.Validate();
        return config;
    }

    /// <summary>Parses config JSON text without validating it.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourcePath">The file name used in error messages.</param>
    /// <returns>The parsed config.</returns>
    /// <exception cref="InvalidDataException">The text is not a JSON object of the expected shape.</exception>
    public static LlamaConfig Parse(string json, string sourcePath = "config.json")
    {
        LlamaConfig? config;
        try
        {
            config = JsonSerializer.Deserialize<LlamaConfig>(json, _readOptions);
        }
        catch (JsonException e)
        {
            var key = string.IsNullOrEmpty(e.Path) ? string.Empty : $" at '{e.Path}'";
            throw new InvalidDataException($"Model config '{sourcePath}' is not a valid LLaMA config{key}: {e.Message}", e);
        }

        if (config is null)
        {
            throw new InvalidDataException($"Model config '{sourcePath}' holds null instead of a JSON object.");
        }

        // transformers 5 writes "dtype" where 4.x wrote "torch_dtype".
        var dtype = config.TorchDtype;
        if (dtype is null && config.ExtensionData is not null
            && config.ExtensionData.TryGetValue("dtype", out var d) && d.ValueKind == JsonValueKind.String)
        {
            dtype = d.GetString();
        }

        // transformers 5 moves rope_theta and the scaling into "rope_parameters".
        var theta = config.RopeTheta;
        var scaling = config.RopeScaling;
        if (config.ExtensionData is not null
            && config.ExtensionData.TryGetValue("rope_parameters", out var rp) && rp.ValueKind == JsonValueKind.Object)
        {
            try
            {
                var parameters = rp.Deserialize<RopeScalingConfig>(_readOptions);
                if (rp.TryGetProperty("rope_theta", out var t) && t.ValueKind == JsonValueKind.Number)
                {
                    theta = t.GetDouble();
                }

                if (scaling is null && parameters is not null && parameters.Kind is not null and not "default")
                {
                    scaling = parameters;
                }
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"Model config '{sourcePath}': 'rope_parameters' is not a valid object: {e.Message}", e);
            }
        }

        return config with { SourcePath = sourcePath, TorchDtype = dtype, RopeTheta = theta, RopeScaling = scaling };
    }

    /// <summary>Serialises the config as Hugging Face <c>config.json</c> text.</summary>
    /// <returns>Indented JSON.</returns>
    public string ToJson() => JsonSerializer.Serialize(this, _writeOptions);

    /// <summary>
    /// Checks that the config describes a LLaMA model this library can build: positive sizes, heads divisible by
    /// key/value heads, an even head width, a supported activation and RoPE scaling.
    /// </summary>
    /// <exception cref="InvalidDataException">A key has an unusable value; the message names the file and the key.</exception>
    public void Validate()
    {
        var file = SourcePath ?? "config";
        void Fail(string key, string problem)
            => throw new InvalidDataException($"Model config '{file}': '{key}' {problem}");

        if (ModelType is not null && !string.Equals(ModelType, "llama", StringComparison.Ordinal))
        {
            Fail("model_type", $"is '{ModelType}' but only 'llama' models are supported.");
        }

        RequirePositive("hidden_size", HiddenSize);
        RequirePositive("intermediate_size", IntermediateSize);
        RequirePositive("num_hidden_layers", NumHiddenLayers);
        RequirePositive("num_attention_heads", NumAttentionHeads);
        RequirePositive("vocab_size", VocabSize);
        RequirePositive("max_position_embeddings", MaxPositionEmbeddings);
        if (NumKeyValueHeads is { } kv)
        {
            RequirePositive("num_key_value_heads", kv);
            if (NumAttentionHeads % kv != 0)
            {
                Fail("num_key_value_heads", $"is {kv} but must divide num_attention_heads ({NumAttentionHeads}).");
            }
        }

        if (HeadDim is { } hd)
        {
            RequirePositive("head_dim", hd);
        }
        else if (HiddenSize % NumAttentionHeads != 0)
        {
            Fail("hidden_size", $"is {HiddenSize} but must be divisible by num_attention_heads ({NumAttentionHeads}) when head_dim is absent.");
        }

        if (HeadDimension % 2 != 0)
        {
            Fail("head_dim", $"is {HeadDimension} but rotary embeddings need an even head width.");
        }

        if (!(RmsNormEps > 0) || double.IsInfinity(RmsNormEps))
        {
            Fail("rms_norm_eps", $"is {Format(RmsNormEps)} but must be a positive finite number.");
        }

        if (!(RopeTheta > 0) || double.IsInfinity(RopeTheta))
        {
            Fail("rope_theta", $"is {Format(RopeTheta)} but must be a positive finite number.");
        }

        if (!(InitializerRange >= 0) || double.IsInfinity(InitializerRange))
        {
            Fail("initializer_range", $"is {Format(InitializerRange)} but must be a non-negative finite number.");
        }

        if (!string.Equals(HiddenAct, "silu", StringComparison.Ordinal))
        {
            Fail("hidden_act", $"is '{HiddenAct}' but only 'silu' (SwiGLU) is supported.");
        }

        RopeScaling?.Validate(file);

        void RequirePositive(string key, int value)
        {
            if (value <= 0)
            {
                Fail(key, $"is {value} but must be a positive integer.");
            }
        }
    }

    private static string Format(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Reads <c>eos_token_id</c>, which Hugging Face writes as one integer or a list of integers.</summary>
    private sealed class IntOrIntListConverter : JsonConverter<IReadOnlyList<int>?>
    {
        public override IReadOnlyList<int>? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.Null:
                    return null;
                case JsonTokenType.Number:
                    return [reader.GetInt32()];
                case JsonTokenType.StartArray:
                    var list = new List<int>();
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                    {
                        if (reader.TokenType != JsonTokenType.Number)
                        {
                            throw new JsonException($"expected an integer token id but found {reader.TokenType}.");
                        }

                        list.Add(reader.GetInt32());
                    }

                    return list;
                default:
                    throw new JsonException($"expected an integer or a list of integers but found {reader.TokenType}.");
            }
        }

        public override void Write(Utf8JsonWriter writer, IReadOnlyList<int>? value, JsonSerializerOptions options)
        {
            if (value is null)
            {
                writer.WriteNullValue();
            }
            else if (value.Count == 1)
            {
                writer.WriteNumberValue(value[0]);
            }
            else
            {
                writer.WriteStartArray();
                foreach (var id in value)
                {
                    writer.WriteNumberValue(id);
                }

                writer.WriteEndArray();
            }
        }
    }
}

/// <summary>
/// The <c>rope_scaling</c> object of a LLaMA config: <c>llama3</c> (Llama 3.1+) frequency-dependent scaling or
/// <c>linear</c> position interpolation.
/// </summary>
public sealed record RopeScalingConfig
{
    /// <summary>Gets the scaling type as written by newer transformers (<c>rope_type</c>).</summary>
    [JsonPropertyName("rope_type")]
    public string? RopeType { get; init; }

    /// <summary>Gets the scaling type as written by older transformers (<c>type</c>).</summary>
    [JsonPropertyName("type")]
    public string? Type { get; init; }

    /// <summary>Gets the scaling factor (8 for Llama 3.1). Must be at least 1.</summary>
    [JsonPropertyName("factor")]
    public double? Factor { get; init; }

    /// <summary>Gets the llama3 low-frequency factor (1 for Llama 3.1).</summary>
    [JsonPropertyName("low_freq_factor")]
    public double? LowFreqFactor { get; init; }

    /// <summary>Gets the llama3 high-frequency factor (4 for Llama 3.1).</summary>
    [JsonPropertyName("high_freq_factor")]
    public double? HighFreqFactor { get; init; }

    /// <summary>Gets the llama3 original context length (8192 for Llama 3.1).</summary>
    [JsonPropertyName("original_max_position_embeddings")]
    public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>Gets other keys of the object; kept so that a saved config round-trips.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? ExtensionData { get; init; }

    /// <summary>Gets the effective type: <see cref="RopeType"/>, else <see cref="Type"/>.</summary>
    [JsonIgnore]
    public string? Kind => RopeType ?? Type;

    /// <summary>Checks the fields the scaling type needs.</summary>
    /// <param name="file">The config file named in error messages.</param>
    /// <exception cref="InvalidDataException">A field is missing or out of range, or the type is unsupported.</exception>
    public void Validate(string file)
    {
        void Fail(string key, string problem)
            => throw new InvalidDataException($"Model config '{file}': 'rope_scaling.{key}' {problem}");

        switch (Kind)
        {
            case "default":
                return;
            case "linear":
                RequireFactor();
                return;
            case "llama3":
                RequireFactor();
                if (LowFreqFactor is not { } low || !(low > 0))
                {
                    Fail("low_freq_factor", $"is {LowFreqFactor?.ToString(CultureInfo.InvariantCulture) ?? "missing"} but must be positive for llama3 scaling.");
                }

                if (HighFreqFactor is not { } high || !(high > LowFreqFactor))
                {
                    Fail("high_freq_factor", $"is {HighFreqFactor?.ToString(CultureInfo.InvariantCulture) ?? "missing"} but must be greater than low_freq_factor ({LowFreqFactor?.ToString(CultureInfo.InvariantCulture)}) for llama3 scaling.");
                }

                if (OriginalMaxPositionEmbeddings is not > 0)
                {
                    Fail("original_max_position_embeddings", $"is {OriginalMaxPositionEmbeddings?.ToString(CultureInfo.InvariantCulture) ?? "missing"} but must be a positive integer for llama3 scaling.");
                }

                return;
            case null:
                Fail("rope_type", "is missing; expected 'llama3' or 'linear'.");
                return;
            default:
                Fail("rope_type", $"is '{Kind}' but only 'llama3' and 'linear' RoPE scaling are supported.");
                return;
        }

        void RequireFactor()
        {
            if (Factor is not { } f || !(f >= 1) || double.IsInfinity(f))
            {
                Fail("factor", $"is {Factor?.ToString(CultureInfo.InvariantCulture) ?? "missing"} but must be a finite number >= 1.");
            }
        }
    }
}
