using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// SHA-256 of the data files and the base model folder that trials read, so a silo with another copy refuses to train.
/// Hashes are cached per path, size and modification time (a model of many gigabytes is read once per process).
/// </summary>
public static class ContentHash
{
    private static readonly ConcurrentDictionary<string, (string Stamp, string Hash)> _cache = new(StringComparer.Ordinal);

    /// <summary>SHA-256 (hex) of a file's bytes.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The hash in lower-case hex.</returns>
    public static string OfFile(string path)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new FileNotFoundException($"'{path}' was not found.", path);
        }

        return Cached(path, $"{info.Length}:{info.LastWriteTimeUtc.Ticks}", () =>
        {
            using var stream = File.OpenRead(path);
            return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
        });
    }

    /// <summary>SHA-256 (hex) over the name, length and bytes of the model folder's config, weight and tokenizer files, in a stable order.</summary>
    /// <param name="folder">A Hugging Face model folder.</param>
    /// <returns>The hash in lower-case hex.</returns>
    public static string OfModelFolder(string folder)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"The base model folder '{folder}' was not found.");
        }

        var files = BaseModelReference.EmbeddableFiles(folder);
        var stamp = string.Join(';', files.Select(f => new FileInfo(f)).Select(f => $"{f.Name}:{(f.Exists ? f.Length : -1)}:{(f.Exists ? f.LastWriteTimeUtc.Ticks : 0)}"));
        return Cached(Path.GetFullPath(folder) + "/", stamp, () =>
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[1 << 20];
            foreach (var file in files)
            {
                if (!File.Exists(file))
                {
                    throw new FileNotFoundException($"Base model file '{file}' was not found.", file);
                }

                sha.AppendData(Encoding.UTF8.GetBytes($"{Path.GetFileName(file)}\n{new FileInfo(file).Length}\n"));
                using var stream = File.OpenRead(file);
                int read;
                while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
                {
                    sha.AppendData(buffer, 0, read);
                }
            }

            return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
        });
    }

    private static string Cached(string key, string stamp, Func<string> compute)
    {
        if (_cache.TryGetValue(key, out var entry) && entry.Stamp == stamp)
        {
            return entry.Hash;
        }

        var hash = compute();
        _cache[key] = (stamp, hash);
        return hash;
    }
}
