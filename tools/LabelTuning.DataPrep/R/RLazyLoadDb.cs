using System.Buffers.Binary;
using System.IO.Compression;

namespace LabelTuning.DataPrep.R;

/// <summary>
/// An R lazy-load database: the <c>.rdx</c> index and the <c>.rdb</c> records that R packages use for their data
/// (<c>data/Rdata.rdb</c>) and code (<c>R/pkg.rdb</c>). The index is a serialized list with elements
/// <c>variables</c> (a named list of [offset, length] integer pairs into the .rdb), <c>references</c> (environments
/// stored as records) and <c>compressed</c> (TRUE for zlib; 2 or 3 when each record names its own compression).
/// Each record is a 4-byte big-endian uncompressed length followed by the compressed serialized object.
/// </summary>
internal sealed class RLazyLoadDb
{
    private readonly string _rdbPath;
    private readonly Dictionary<string, (int Offset, int Length)> _variables;
    private readonly int _compression;

    private RLazyLoadDb(string rdbPath, Dictionary<string, (int Offset, int Length)> variables, List<string> names, int compression)
    {
        _rdbPath = rdbPath;
        _variables = variables;
        Names = names;
        _compression = compression;
    }

    /// <summary>The variable names in index order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Opens a database from its base path (for example <c>.../data/Rdata</c>) or its .rdb/.rdx path.</summary>
    public static RLazyLoadDb Open(string path)
    {
        string basePath = path.EndsWith(".rdb", StringComparison.Ordinal) || path.EndsWith(".rdx", StringComparison.Ordinal)
            ? path[..^4]
            : path;
        string rdxPath = basePath + ".rdx";
        string rdbPath = basePath + ".rdb";
        foreach (var required in new[] { rdxPath, rdbPath })
        {
            if (!File.Exists(required))
            {
                throw new FileNotFoundException($"R lazy-load database file not found: {required}", required);
            }
        }

        var index = RDeserializer.Deserialize(ReadIndexBytes(rdxPath), rdxPath);
        if (index is not RList indexList)
        {
            throw new InvalidDataException($"{rdxPath}: expected a list (variables, references, compressed), found {index.TypeName}.");
        }

        if (indexList["variables"] is not RList variables)
        {
            throw new InvalidDataException($"{rdxPath}: expected a list element 'variables', found {indexList["variables"]?.TypeName ?? "none"}.");
        }

        int compression = indexList["compressed"] switch
        {
            RLogicalVector { Values.Length: 1 } logical => logical.Values[0] == 1 ? 1 : 0,
            RIntVector { Values.Length: 1 } integer => integer.Values[0],
            RRealVector { Values.Length: 1 } real => (int)real.Values[0],
            null => 1,
            var other => throw new InvalidDataException($"{rdxPath}: expected 'compressed' to be TRUE, FALSE, 2 or 3, found {other}."),
        };

        var names = variables.Names ?? throw new InvalidDataException($"{rdxPath}: the 'variables' list has no names.");
        var map = new Dictionary<string, (int, int)>(StringComparer.Ordinal);
        var order = new List<string>();
        for (int i = 0; i < variables.Items.Length; i++)
        {
            string name = names[i] ?? throw new InvalidDataException($"{rdxPath}: variable {i} has an NA name.");
            if (variables.Items[i] is not RIntVector { Values.Length: 2 } position)
            {
                throw new InvalidDataException($"{rdxPath}: expected variable '{name}' to be an [offset, length] integer pair, found {variables.Items[i]}.");
            }

            map[name] = (position.Values[0], position.Values[1]);
            order.Add(name);
        }

        return new RLazyLoadDb(rdbPath, map, order, compression);
    }

    /// <summary>Reads and deserializes the variable <paramref name="name"/>.</summary>
    public RObject Read(string name)
    {
        if (!_variables.TryGetValue(name, out var position))
        {
            throw new KeyNotFoundException($"{_rdbPath}: no variable '{name}'; the index has {string.Join(", ", Names)}.");
        }

        byte[] record = new byte[position.Length];
        using (var stream = File.OpenRead(_rdbPath))
        {
            if (position.Offset < 0 || position.Offset + (long)position.Length > stream.Length)
            {
                throw new InvalidDataException(
                    $"{_rdbPath}: variable '{name}' spans bytes [{position.Offset}, {position.Offset + (long)position.Length}), beyond the file's {stream.Length} bytes.");
            }

            stream.Position = position.Offset;
            stream.ReadExactly(record);
        }

        string source = $"{_rdbPath} variable '{name}'";
        return RDeserializer.Deserialize(Decompress(record, _compression, source), source);
    }

    /// <summary>Decompresses one record: 4-byte big-endian length, then zlib (or, for compression 2/3, a type byte and the stream).</summary>
    internal static byte[] Decompress(byte[] record, int compression, string source)
    {
        if (record.Length < 4)
        {
            throw new InvalidDataException($"{source}: expected a record of at least 4 bytes, found {record.Length}.");
        }

        int expected = BinaryPrimitives.ReadInt32BigEndian(record);
        int payload = 4;
        char method = compression == 1 ? '1' : compression == 0 ? '0' : (char)record[4];
        if (compression is 2 or 3)
        {
            payload = 5;
        }

        byte[] result = method switch
        {
            '0' => record.AsSpan(payload).ToArray(),
            '1' => Inflate(new ZLibStream(new MemoryStream(record, payload, record.Length - payload), CompressionMode.Decompress), expected),
            _ => throw new InvalidDataException(
                $"{source}: expected zlib compression ('1') or none ('0'), found method '{method}' ({(method == '2' ? "bzip2" : method == 'Z' ? "xz" : "unknown")}), which this reader does not decode."),
        };

        if (result.Length != expected)
        {
            throw new InvalidDataException($"{source}: expected {expected} bytes after decompression, found {result.Length}.");
        }

        return result;
    }

    /// <summary>The .rdx index is written by saveRDS: gzip normally, but accept a bare zlib record too.</summary>
    private static byte[] ReadIndexBytes(string rdxPath)
    {
        byte[] raw = File.ReadAllBytes(rdxPath);
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            return Inflate(new GZipStream(new MemoryStream(raw), CompressionMode.Decompress), -1);
        }

        if (raw.Length >= 2 && raw[0] == (byte)'X' && raw[1] == (byte)'\n')
        {
            return raw;
        }

        return Decompress(raw, 1, rdxPath);
    }

    private static byte[] Inflate(Stream compressed, int expected)
    {
        using (compressed)
        {
            using var output = expected >= 0 ? new MemoryStream(expected) : new MemoryStream();
            compressed.CopyTo(output);
            return output.ToArray();
        }
    }
}
