using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Identifies a base model folder by a SHA-256 over its config and weight files, so a saved adapter refuses to load
/// onto a base model that has changed.
/// </summary>
internal static class BaseModelReference
{
    private static readonly ConcurrentDictionary<string, string> _cache = new(StringComparer.Ordinal);

    /// <summary>The files that define the base model's function, in a stable order.</summary>
    public static IReadOnlyList<string> DefiningFiles(string folder)
    {
        var files = new List<string> { Path.Combine(folder, "config.json") };
        files.AddRange(Directory.GetFiles(folder, "*.safetensors").OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal));
        var index = Path.Combine(folder, "model.safetensors.index.json");
        if (File.Exists(index))
        {
            files.Add(index);
        }

        return files;
    }

    /// <summary>The files a self-contained model embeds: the defining files and the tokenizer files.</summary>
    public static IReadOnlyList<string> EmbeddableFiles(string folder)
    {
        var files = DefiningFiles(folder).ToList();
        foreach (var name in new[] { "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json" })
        {
            var path = Path.Combine(folder, name);
            if (File.Exists(path))
            {
                files.Add(path);
            }
        }

        return files;
    }

    /// <summary>
    /// SHA-256 (hex) over each defining file's name, length and bytes. Hashing a multi-GB base takes seconds, so the
    /// result is cached in memory for the life of the process, keyed by each defining file's full path, size and
    /// last-write time: a file rewritten in place with the same size and timestamp would not be noticed.
    /// </summary>
    public static string Fingerprint(string folder)
    {
        var files = DefiningFiles(folder);
        var key = string.Join("\n", files.Select(f =>
        {
            var info = new FileInfo(f);
            return info.Exists ? $"{info.FullName}|{info.Length}|{info.LastWriteTimeUtc.Ticks}" : $"{info.FullName}|missing";
        }));
        if (_cache.TryGetValue(key, out var cached))
        {
            return cached;
        }

        var sha = Compute(files);
        _cache[key] = sha;
        return sha;
    }

    private static string Compute(IReadOnlyList<string> files)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        foreach (var file in files)
        {
            if (!File.Exists(file))
            {
                throw new FileNotFoundException($"Base model file '{file}' was not found.", file);
            }

            sha.AppendData(System.Text.Encoding.UTF8.GetBytes($"{Path.GetFileName(file)}\n{new FileInfo(file).Length}\n"));
            using var stream = File.OpenRead(file);
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                sha.AppendData(buffer, 0, read);
            }
        }

        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }
}
