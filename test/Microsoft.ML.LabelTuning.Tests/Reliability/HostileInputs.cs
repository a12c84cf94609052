using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;

namespace Microsoft.ML.LabelTuning.Tests.Reliability;

/// <summary>
/// Generators of hostile file content: byte-level edits of a valid seed (bit flips, truncation, insertion of
/// invalid UTF-8 and JSON punctuation, 8-byte and 4-byte overwrites with extreme integers) and JSON-level edits
/// (a value replaced by an extreme number, a wrong type, a long or invalid string, deep nesting; a key removed,
/// renamed or duplicated).
/// </summary>
internal static class HostileInputs
{
    /// <summary>Integers at the edges of every width a reader might use.</summary>
    public static readonly long[] Integers =
    [
        0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 100, 127, 128, 255, 256, 400, 1000, 4096, 65535, 65536,
        -1, -2, -8, -128, -129, -32768, -65536,
        int.MaxValue, (long)int.MaxValue + 1, int.MinValue, (long)int.MinValue - 1, uint.MaxValue, (long)uint.MaxValue + 1,
        100_000_000, 100_000_001, 1L << 40, 1L << 53, 1L << 62, long.MaxValue, long.MinValue, long.MaxValue - 7,
    ];

    /// <summary>Byte runs that break text and JSON parsers.</summary>
    private static readonly byte[][] _chunks =
    [
        [0xFF], [0xFE, 0xFF], [0xC0, 0xAF], [0xC3, 0x28], [0xE2, 0x82], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
        [0xF0, 0x9F, 0x98], [0x80], [0x00], [0xEF, 0xBB, 0xBF],
        "\""u8.ToArray(), "\\"u8.ToArray(), "\\u"u8.ToArray(), "\\ud800"u8.ToArray(), "{"u8.ToArray(), "}"u8.ToArray(),
        "["u8.ToArray(), "]"u8.ToArray(), ","u8.ToArray(), ":"u8.ToArray(), "-"u8.ToArray(), "9"u8.ToArray(),
        "1e999"u8.ToArray(), "null"u8.ToArray(), "/*"u8.ToArray(), "//"u8.ToArray(),
        "99999999999999999999999"u8.ToArray(), "-9223372036854775809"u8.ToArray(),
        Encoding.ASCII.GetBytes(new string('[', 70)), Encoding.ASCII.GetBytes(new string('{', 12)),
        Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("{\"a\":", 70))),
        [0x08, 0x96, 0x01], [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], [0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        [0x0A, 0x00], [0x15, 0x00, 0x00, 0xC0, 0x7F], [0x18, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ];

    /// <summary>Raw JSON values that test a reader's types and ranges.</summary>
    private static readonly string[] _values =
    [
        "0", "-1", "1", "2", "3", "7", "8", "64", "400", "65536", "2147483647", "2147483648", "-2147483648", "-2147483649",
        "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e308", "1e309", "-1e309",
        "1.5", "-0.0", "0.1", "1e-400", "123456789012345678901234567890", "1E2", "NaN", "\"NaN\"", "\"Infinity\"", "\"-Infinity\"",
        "\"\"", "\"a\"", "\"\\u0000\"", "\"\\ud800\"", "\"\\udfff\"", "\"\\ud83d\\ude00\"", "\"😀\"", "\"\\u202e\"", "\"\\u200b\"", "\"▁\"", "\" \"",
        "\"F32\"", "\"F16\"", "\"BF16\"", "\"I64\"", "\"U8\"", "\"BOOL\"", "\"Q4\"", "\"f32\"", "\"F8_E4M3\"", "\"U64\"",
        "\"llama\"", "\"mistral\"", "\"silu\"", "\"gelu\"", "\"linear\"", "\"llama3\"", "\"default\"", "\"dynamic\"",
        "\"BPE\"", "\"Unigram\"", "\"WordPiece\"", "\"Metaspace\"", "\"ByteLevel\"", "\"Sequence\"", "\"Replace\"", "\"Prepend\"",
        "\"NFC\"", "\"NFKC\"", "\"Lowercase\"", "\"ByteFallback\"", "\"Fuse\"", "\"Strip\"", "\"TemplateProcessing\"",
        "\"always\"", "\"first\"", "\"never\"", "\"<s>\"", "\"</s>\"", "\"<unk>\"", "\"<0x41>\"", "\"a b\"", "\"a  b\"",
        "\"model.safetensors\"", "\"../model.safetensors\"", "\"/etc/passwd\"", "\"..\"", "\".\"", "\"x.bin\"", "\"pytorch_model.bin\"",
        "\"sub/model.safetensors\"", "\"C:\\\\model.safetensors\"", "\"model-00001-of-00002.safetensors\"", "\"model-00002-of-00002.safetensors\"",
        "\"shard\\u0000.safetensors\"", "\".safetensors\"", "\"model.safetensors.index.json\"",
        "null", "true", "false", "[]", "{}", "[1]", "[[]]", "[0, 8]", "[8, 0]", "[-1, 8]", "[0, 9223372036854775807]", "[0, 1, 2]",
        "[2, 3]", "[0]", "[-1]", "[4611686018427387904, 4]", "[0, 4611686018427387904, 4611686018427387904]",
        "[\"a\", \"b\"]", "[\"a\"]", "{\"a\": 1}", "{\"content\": \"<s>\"}", "{\"content\": \"\"}", "{\"String\": \" \"}", "{\"String\": \"\"}",
        "{\"Regex\": \" \"}", "{\"type\": \"Fuse\"}", "{\"type\": \"Strip\", \"content\": \" \", \"start\": 2147483647, \"stop\": -1}",
        "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\"}, \"content\": \"x\"}",
        "{\"type\": \"Sequence\", \"normalizers\": [null]}", "{\"type\": \"Sequence\", \"decoders\": [{}]}",
        "{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 1, \"original_max_position_embeddings\": 0}",
        "{\"rope_type\": \"linear\", \"factor\": 1e308}",
    ];

    /// <summary>Keys that test a reader's handling of names.</summary>
    private static readonly string[] _keys =
    [
        "", "a", "__metadata__", "weight_map", "model", "vocab", "merges", "type", "dtype", "shape", "data_offsets",
        "\\u0000", "\\ud800", "😀", "2147483647", "-1", "0", "1", "2", "model.embed_tokens.weight", "w", "bos_token", "hidden_size",
    ];

    /// <summary>One byte-level edit; positions and choices are taken modulo what they index.</summary>
    public readonly record struct Edit(int Kind, int Position, int Length, int Choice);

    private static readonly Gen<Edit> _edit = Gen.Select(Gen.Int[0, 10], Gen.Int[0, int.MaxValue], Gen.Int[0, 64], Gen.Int[0, int.MaxValue], (k, p, l, c) => new Edit(k, p, l, c));

    /// <summary>A raw JSON value: an extreme number, a wrong type, a long or invalid string, or deep nesting.</summary>
    public static readonly Gen<string> JsonValue = Gen.Frequency(
        (12, Gen.OneOf(_values)),
        (2, Gen.Long.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture))),
        (1, Gen.Double.Select(v => double.IsFinite(v) ? v.ToString("R", System.Globalization.CultureInfo.InvariantCulture) : "1e999")),
        (1, Gen.Int[1, 20_000].Select(n => "\"" + new string('x', n) + "\"")),
        (2, Gen.Select(Gen.OneOf(1, 7, 8, 9, 62, 63, 64, 65, 200, 5000, 20_000), Gen.Bool, (depth, array) => Deep(depth, array))));

    /// <summary>Up to <paramref name="maxEdits"/> byte-level edits of <paramref name="seed"/>.</summary>
    public static Gen<byte[]> EditedBytes(byte[] seed, int maxEdits = 6)
        => _edit.Array[1, maxEdits].Select(edits => Apply(seed, edits));

    /// <summary>One to three JSON-level edits of <paramref name="seedJson"/>, then sometimes a few byte-level edits.</summary>
    public static Gen<byte[]> EditedJson(string seedJson)
    {
        var seed = JsonNode.Parse(seedJson)!;
        var jsonEdit = Gen.Select(Gen.Int[0, 5], Gen.Int[0, int.MaxValue], JsonValue, Gen.OneOf(_keys), (kind, at, value, key) => (kind, at, value, key));
        return Gen.Select(jsonEdit.Array[1, 3], _edit.Array[0, 2], Gen.Int[0, 3], (jsonEdits, byteEdits, useBytes) =>
        {
            var text = EditJson(seed, jsonEdits);
            var bytes = Encoding.UTF8.GetBytes(text);
            return useBytes == 0 ? Apply(bytes, byteEdits) : bytes;
        });
    }

    /// <summary>A JSON array or object nested <paramref name="depth"/> levels deep.</summary>
    public static string Deep(int depth, bool array)
        => array
            ? new string('[', depth) + new string(']', depth)
            : string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "0" + new string('}', depth);

    public static byte[] Apply(byte[] seed, Edit[] edits)
    {
        var data = new List<byte>(seed);
        foreach (var edit in edits)
        {
            var n = data.Count;
            var at = n == 0 ? 0 : edit.Position % n;
            var chunk = _chunks[edit.Choice % _chunks.Length];
            var integer = Integers[edit.Choice % Integers.Length];
            switch (edit.Kind)
            {
                case 0 when n > 0:
                    data[at] ^= (byte)(1 << (edit.Choice & 7));
                    break;
                case 1 when n > 0:
                    data[at] = chunk[0];
                    break;
                case 2:
                    data.RemoveRange(edit.Position % (n + 1), n - (edit.Position % (n + 1)));
                    break;
                case 3:
                    data.InsertRange(edit.Position % (n + 1), chunk);
                    break;
                case 4 when n > 0:
                    data.RemoveRange(at, Math.Min(edit.Length, n - at));
                    break;
                case 5 when n > 0:
                    var copy = data.GetRange(at, Math.Min(edit.Length, n - at));
                    data.InsertRange(edit.Choice % (n + 1), copy);
                    break;
                case 6 when n >= 8:
                    Overwrite(data, edit.Position % (n - 7), BitConverter.GetBytes(integer));
                    break;
                case 7 when n >= 4:
                    Overwrite(data, edit.Position % (n - 3), BitConverter.GetBytes((int)integer));
                    break;
                case 8 when n >= 8:
                    Overwrite(data, 0, BitConverter.GetBytes(integer)); // a length prefix, for formats that start with one
                    break;
                case 9 when n > 0:
                    data[at] = (byte)edit.Choice;
                    break;
                default:
                    data.InsertRange(edit.Position % (n + 1), Encoding.UTF8.GetBytes(_values[edit.Choice % _values.Length]));
                    break;
            }
        }

        return [.. data];
    }

    /// <summary>Writes a protobuf varint.</summary>
    public static void Varint(List<byte> output, ulong value)
    {
        while (value >= 0x80)
        {
            output.Add((byte)(value | 0x80));
            value >>= 7;
        }

        output.Add((byte)value);
    }

    /// <summary>Writes a protobuf tag.</summary>
    public static void Tag(List<byte> output, int field, int wireType) => Varint(output, ((ulong)(uint)field << 3) | (uint)wireType);

    /// <summary>Writes a length-delimited protobuf field.</summary>
    public static void Bytes(List<byte> output, int field, ReadOnlySpan<byte> payload)
    {
        Tag(output, field, 2);
        Varint(output, (ulong)payload.Length);
        output.AddRange(payload);
    }

    /// <summary>Writes a fixed32 float protobuf field.</summary>
    public static void Float(List<byte> output, int field, float value)
    {
        Tag(output, field, 5);
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteSingleLittleEndian(bytes, value);
        output.AddRange(bytes);
    }

    private static void Overwrite(List<byte> data, int at, byte[] bytes)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            data[at + i] = bytes[i];
        }
    }

    private const string Placeholder = "@@HOSTILE@@";

    private static string EditJson(JsonNode seed, (int Kind, int At, string Value, string Key)[] edits)
    {
        var root = seed.DeepClone();
        var raw = new List<(string Value, string? Key)>();
        foreach (var (kind, at, value, key) in edits)
        {
            var nodes = new List<JsonNode>();
            Collect(root, nodes);
            if (nodes.Count == 0)
            {
                break;
            }

            var node = nodes[at % nodes.Count];
            var parent = node.Parent!;
            var marker = JsonValue_(Placeholder + raw.Count);
            switch (kind)
            {
                case 0: // replace the value
                    Replace(parent, node, marker);
                    raw.Add((value, null));
                    break;
                case 1: // remove it
                    Remove(parent, node);
                    break;
                case 2 when parent is JsonObject: // the same key twice, the second with a hostile value
                    var original = node.ToJsonString();
                    var duplicated = node.GetPropertyName();
                    Replace(parent, node, marker);
                    raw.Add(($"{original}, {JsonString(duplicated)}: {value}", null));
                    break;
                case 3 when parent is JsonObject obj: // a hostile key
                    var content = node.ToJsonString();
                    obj.Remove(node.GetPropertyName());
                    obj[Placeholder + "K" + raw.Count] = marker;
                    raw.Add((content, key));
                    break;
                case 4: // nest it deeply
                    var inner = node.ToJsonString();
                    var depth = new[] { 1, 8, 9, 63, 64, 65, 300 }[at % 7];
                    Replace(parent, node, marker);
                    raw.Add((new string('[', depth) + inner + new string(']', depth), null));
                    break;
                default: // put a copy of another part of the file here
                    var other = nodes[(at / 7) % nodes.Count];
                    if (!ReferenceEquals(other, node) && !IsAncestor(node, other))
                    {
                        Replace(parent, node, other.DeepClone());
                    }

                    break;
            }
        }

        var text = root.ToJsonString();
        for (var i = raw.Count - 1; i >= 0; i--)
        {
            if (raw[i].Key is { } hostileKey)
            {
                text = text.Replace($"\"{Placeholder}K{i}\"", JsonKey(hostileKey), StringComparison.Ordinal);
            }

            text = text.Replace($"\"{Placeholder}{i}\"", raw[i].Value, StringComparison.Ordinal);
        }

        return text;
    }

    private static JsonNode JsonValue_(string text) => System.Text.Json.Nodes.JsonValue.Create(text);

    private static string JsonString(string text) => System.Text.Json.JsonSerializer.Serialize(text);

    private static string JsonKey(string key) => key.StartsWith('\\') ? $"\"{key}\"" : JsonString(key);

    private static void Collect(JsonNode node, List<JsonNode> nodes)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (_, child) in obj)
                {
                    if (child is not null)
                    {
                        nodes.Add(child);
                        Collect(child, nodes);
                    }
                }

                break;
            case JsonArray array:
                foreach (var child in array)
                {
                    if (child is not null)
                    {
                        nodes.Add(child);
                        Collect(child, nodes);
                    }
                }

                break;
        }
    }

    private static bool IsAncestor(JsonNode node, JsonNode of)
    {
        for (var p = of.Parent; p is not null; p = p.Parent)
        {
            if (ReferenceEquals(p, node))
            {
                return true;
            }
        }

        return false;
    }

    private static void Replace(JsonNode parent, JsonNode node, JsonNode with)
    {
        if (parent is JsonObject obj)
        {
            obj[node.GetPropertyName()] = with;
        }
        else if (parent is JsonArray array)
        {
            array[node.GetElementIndex()] = with;
        }
    }

    private static void Remove(JsonNode parent, JsonNode node)
    {
        if (parent is JsonObject obj)
        {
            obj.Remove(node.GetPropertyName());
        }
        else if (parent is JsonArray array)
        {
            array.RemoveAt(node.GetElementIndex());
        }
    }
}
