using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>
/// A tuning method's identity: the name that saved models, sweep logs and the registry know it by. Each method's
/// folder declares its own value as a part of this struct (<c>Methods/&lt;Name&gt;/TuningMethod.&lt;Name&gt;.cs</c>), so
/// adding a method adds no line here.
/// </summary>
[JsonConverter(typeof(TuningMethodJsonConverter))]
public readonly partial struct TuningMethod : IEquatable<TuningMethod>
{
    private readonly string? _name;

    /// <summary>Names a tuning method.</summary>
    /// <param name="name">Letters, digits, '-' or '_'; the name saved models record.</param>
    public TuningMethod(string name)
    {
        if (string.IsNullOrEmpty(name) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            throw new ArgumentException($"A tuning method name is letters, digits, '-' or '_', but '{name}' was given.", nameof(name));
        }

        _name = name;
    }

    /// <summary>Gets the method's name.</summary>
    public string Name => _name ?? string.Empty;

    /// <summary>Compares two methods by name.</summary>
    /// <param name="left">A method.</param>
    /// <param name="right">Another method.</param>
    public static bool operator ==(TuningMethod left, TuningMethod right) => left.Equals(right);

    /// <summary>Compares two methods by name.</summary>
    /// <param name="left">A method.</param>
    /// <param name="right">Another method.</param>
    public static bool operator !=(TuningMethod left, TuningMethod right) => !left.Equals(right);

    /// <inheritdoc/>
    public bool Equals(TuningMethod other) => string.Equals(Name, other.Name, StringComparison.Ordinal);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is TuningMethod other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Name);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>Writes a <see cref="TuningMethod"/> as its name, as the enum it replaces was written.</summary>
internal sealed class TuningMethodJsonConverter : JsonConverter<TuningMethod>
{
    public override TuningMethod Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.String)
        {
            throw new JsonException($"A tuning method is written as its name (a string) but the JSON has {reader.TokenType}.");
        }

        try
        {
            return new TuningMethod(reader.GetString()!);
        }
        catch (ArgumentException e)
        {
            throw new JsonException(e.Message, e);
        }
    }

    public override void Write(Utf8JsonWriter writer, TuningMethod value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name);
}

/// <summary>Builds a method's classifier around a loaded base decoder, from the method's saved settings.</summary>
internal interface ITuningMethodFactory
{
    /// <summary>
    /// Completes the method's settings once the tokenizer and the classes are known (L-Tuning stores its label
    /// texts' token ids here, so a saved model rebuilds without re-tokenizing). Most methods need nothing.
    /// </summary>
    JsonElement Prepare(JsonElement settings, LlamaTextTokenizer tokenizer, IReadOnlyList<string> classNames) => settings;

    /// <summary>Adapts <paramref name="model"/> in place and wraps it with the method's adapter and a head.</summary>
    IClassifierModel Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel);
}
