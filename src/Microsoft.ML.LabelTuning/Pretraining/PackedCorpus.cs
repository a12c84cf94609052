using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>
/// A token stream for causal-LM training: every document encoded as BOS + tokens + EOS, concatenated in file order,
/// and read as fixed windows of T + 1 tokens that overlap by one (window w covers tokens [wT, wT + T]), so every
/// token but the first is a target exactly once per pass. Documents are separated by blank lines in the files.
/// </summary>
internal sealed class PackedCorpus
{
    private const string CacheMagic = "LTTOKS01";

    public PackedCorpus(int[] tokens, int documentCount, int sequenceLength, string contentHash)
    {
        if (sequenceLength <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sequenceLength), sequenceLength, "The sequence length must be positive.");
        }

        Tokens = tokens;
        DocumentCount = documentCount;
        SequenceLength = sequenceLength;
        ContentHash = contentHash;
    }

    /// <summary>Gets the packed token ids.</summary>
    public int[] Tokens { get; }

    /// <summary>Gets the number of documents packed.</summary>
    public int DocumentCount { get; }

    /// <summary>Gets T, the tokens each window feeds the model.</summary>
    public int SequenceLength { get; }

    /// <summary>Gets a hash of the files' bytes and the tokenizer file (hex), which identifies the stream.</summary>
    public string ContentHash { get; }

    /// <summary>Gets the number of whole windows: (tokens − 1) / T.</summary>
    public long WindowCount => Math.Max(0, (Tokens.LongLength - 1) / SequenceLength);

    /// <summary>Copies window <paramref name="window"/> (T + 1 tokens) into <paramref name="destination"/>.</summary>
    public void CopyWindow(long window, Span<long> destination)
    {
        if (window < 0 || window >= WindowCount)
        {
            throw new ArgumentOutOfRangeException(nameof(window), window, $"The corpus has {WindowCount} windows.");
        }

        if (destination.Length != SequenceLength + 1)
        {
            throw new ArgumentException($"A window holds {SequenceLength + 1} tokens but the destination holds {destination.Length}.", nameof(destination));
        }

        var source = Tokens.AsSpan(checked((int)(window * SequenceLength)), SequenceLength + 1);
        for (var i = 0; i < source.Length; i++)
        {
            destination[i] = source[i];
        }
    }

    /// <summary>Splits a file into documents at blank (or whitespace-only) lines; lines of a document keep their "\n".</summary>
    public static IEnumerable<string> ReadDocuments(string path)
    {
        var current = new StringBuilder();
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            if (string.IsNullOrWhiteSpace(line))
            {
                if (current.Length > 0)
                {
                    yield return current.ToString();
                    current.Clear();
                }

                continue;
            }

            if (current.Length > 0)
            {
                current.Append('\n');
            }

            current.Append(line);
        }

        if (current.Length > 0)
        {
            yield return current.ToString();
        }
    }

    /// <summary>
    /// Tokenizes and packs <paramref name="files"/>. With a <paramref name="cacheFolder"/>, the token stream is stored
    /// there under its content hash and read back next time instead of tokenizing again.
    /// </summary>
    public static PackedCorpus Build(
        IReadOnlyList<string> files, LlamaTextTokenizer tokenizer, int sequenceLength, int threads, string? cacheFolder)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (tokenizer.BosId is not { } bos || tokenizer.EosId is not { } eos)
        {
            throw new InvalidOperationException(
                $"The tokenizer '{tokenizer.TokenizerFile}' must define both BOS and EOS tokens to pack documents; BOS is {tokenizer.BosId?.ToString() ?? "missing"} and EOS is {tokenizer.EosId?.ToString() ?? "missing"}.");
        }

        var hash = ContentHashOf(files, tokenizer.TokenizerFile);
        var cachePath = cacheFolder is null ? null : Path.Combine(cacheFolder, $"tokens-{hash[..24]}.bin");
        if (cachePath is not null && File.Exists(cachePath))
        {
            var (cached, documents) = ReadCache(cachePath);
            return new PackedCorpus(cached, documents, sequenceLength, hash);
        }

        var texts = files.SelectMany(ReadDocuments).ToArray();
        var encoded = new int[texts.Length][];
        Parallel.For(0, texts.Length, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) }, i =>
        {
            var ids = tokenizer.Encode(texts[i], addSpecialTokens: false);
            var packed = new int[ids.Count + 2];
            packed[0] = bos;
            for (var k = 0; k < ids.Count; k++)
            {
                packed[k + 1] = ids[k];
            }

            packed[^1] = eos;
            encoded[i] = packed;
        });

        var total = encoded.Sum(e => (long)e.Length);
        if (total > Array.MaxLength)
        {
            throw new InvalidOperationException($"The corpus holds {total} tokens; at most {Array.MaxLength} fit in one stream.");
        }

        var tokens = new int[total];
        long offset = 0;
        foreach (var e in encoded)
        {
            e.CopyTo(tokens, offset);
            offset += e.Length;
        }

        if (cachePath is not null)
        {
            WriteCache(cachePath, tokens, texts.Length);
        }

        return new PackedCorpus(tokens, texts.Length, sequenceLength, hash);
    }

    /// <summary>SHA-256 (hex) over the tokenizer file and each corpus file's bytes.</summary>
    public static string ContentHashOf(IReadOnlyList<string> files, string tokenizerFile)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(CacheMagic));
        var buffer = new byte[1 << 20];
        var length = new byte[8];
        foreach (var path in files.Prepend(tokenizerFile))
        {
            using var stream = File.OpenRead(path);
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                sha.AppendData(buffer, 0, read);
            }

            BinaryPrimitives.WriteInt64LittleEndian(length, stream.Length);
            sha.AppendData(length);
        }

        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    private static void WriteCache(string path, int[] tokens, int documents)
    {
        AtomicFile.Write(path, stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Encoding.ASCII.GetBytes(CacheMagic));
            writer.Write(documents);
            writer.Write(tokens.LongLength);
            var bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan());
            writer.Write(bytes);
        });
    }

    private static (int[] Tokens, int Documents) ReadCache(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        var magic = Encoding.ASCII.GetString(reader.ReadBytes(CacheMagic.Length));
        if (magic != CacheMagic)
        {
            throw new InvalidDataException($"Token cache '{path}' starts with '{magic}' but '{CacheMagic}' was expected; delete the file to rebuild it.");
        }

        var documents = reader.ReadInt32();
        var count = reader.ReadInt64();
        if (count < 0 || count > Array.MaxLength || stream.Length - stream.Position != count * sizeof(int))
        {
            throw new InvalidDataException($"Token cache '{path}' claims {count} tokens but holds {(stream.Length - stream.Position) / sizeof(int)}; delete the file to rebuild it.");
        }

        var tokens = new int[count];
        reader.BaseStream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.AsSpan()));
        return (tokens, documents);
    }
}

/// <summary>
/// The order in which windows are visited: one pass (epoch) after another, each a Fisher–Yates permutation drawn
/// from SplitMix64 seeded by the run seed and the epoch. Window number <c>g</c> of the run (step × batch + row) is a
/// pure function of <c>g</c>, so the data position resumes exactly.
/// </summary>
internal sealed class WindowOrder
{
    private readonly long _windowCount;
    private readonly int _seed;
    private int _cachedEpoch = -1;
    private int[] _permutation = [];

    public WindowOrder(long windowCount, int seed)
    {
        if (windowCount <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(windowCount), windowCount, "The corpus must hold at least one whole window.");
        }

        if (windowCount > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(windowCount), windowCount, $"At most {Array.MaxLength} windows are supported.");
        }

        _windowCount = windowCount;
        _seed = seed;
    }

    /// <summary>Gets the epoch and the index inside it of the run's window number <paramref name="globalWindow"/>.</summary>
    public (int Epoch, long IndexInEpoch) Locate(long globalWindow)
        => (checked((int)(globalWindow / _windowCount)), globalWindow % _windowCount);

    /// <summary>Gets the corpus window that the run's window number <paramref name="globalWindow"/> reads.</summary>
    public long WindowAt(long globalWindow)
    {
        var (epoch, index) = Locate(globalWindow);
        if (epoch != _cachedEpoch)
        {
            _permutation = Permutation(_windowCount, _seed, epoch);
            _cachedEpoch = epoch;
        }

        return _permutation[index];
    }

    /// <summary>The permutation of one epoch.</summary>
    public static int[] Permutation(long windowCount, int seed, int epoch)
    {
        var order = new int[windowCount];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var random = new SplitMix64(unchecked(((ulong)(uint)seed * 0x9E3779B97F4A7C15UL) ^ ((ulong)(uint)epoch * 0xD1B54A32D192ED03UL) ^ 0x5DEECE66DUL));
        for (var i = order.Length - 1; i > 0; i--)
        {
            var j = random.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }
}

/// <summary>SplitMix64 (Steele, Lea and Flood), a small fully specified generator: shuffles never depend on System.Random.</summary>
internal sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextULong()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform integer in [0, <paramref name="bound"/>), without modulo bias.</summary>
    public int NextInt(int bound)
    {
        var limit = ulong.MaxValue - (ulong.MaxValue % (ulong)bound);
        ulong value;
        do
        {
            value = NextULong();
        }
        while (value >= limit);
        return (int)(value % (ulong)bound);
    }
}
