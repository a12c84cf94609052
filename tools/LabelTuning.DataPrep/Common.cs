using System.Text;

namespace LabelTuning.DataPrep;

/// <summary>Where things live: the repository root, data/ and data/.cache/.</summary>
internal sealed class RepoPaths
{
    private RepoPaths(string root)
    {
        Root = root;
    }

    public string Root { get; }

    public string Data => Path.Combine(Root, "data");

    public string Cache => Path.Combine(Root, "data", ".cache");

    public string Pretrain => Path.Combine(Cache, "pretrain");

    /// <summary>Finds the repository root: the nearest directory above the working directory that holds data/fetch.sh.</summary>
    public static RepoPaths Find(string? explicitRoot)
    {
        if (explicitRoot is not null)
        {
            string full = Path.GetFullPath(explicitRoot);
            if (!File.Exists(Path.Combine(full, "data", "fetch.sh")))
            {
                throw new ArgumentException($"--root {full}: expected a repository root with data/fetch.sh, found none.");
            }

            return new RepoPaths(full);
        }

        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "data", "fetch.sh")))
                {
                    return new RepoPaths(dir.FullName);
                }
            }
        }

        throw new InvalidOperationException(
            $"Could not find the repository root (a directory with data/fetch.sh) above {Directory.GetCurrentDirectory()}; pass --root.");
    }

    public string RequireCached(string relative)
    {
        string path = Path.Combine(Cache, relative);
        if (!File.Exists(path) && !Directory.Exists(path))
        {
            throw new FileNotFoundException($"Missing raw data {path}; run `bash data/fetch.sh` first.", path);
        }

        return path;
    }
}

/// <summary>
/// SplitMix64: a small, fully specified generator, so the splits do not depend on System.Random's algorithm.
/// </summary>
internal sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextULong()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform integer in [0, <paramref name="bound"/>), without modulo bias.</summary>
    public int NextInt(int bound)
    {
        if (bound <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(bound), bound, "The bound must be positive.");
        }

        ulong limit = ulong.MaxValue - (ulong.MaxValue % (ulong)bound);
        ulong value;
        do
        {
            value = NextULong();
        }
        while (value >= limit);
        return (int)(value % (ulong)bound);
    }

    /// <summary>Fisher-Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A generator for one named purpose, so adding a draw in one place does not move another.</summary>
    public static SplitMix64 For(int seed, string purpose)
    {
        ulong hash = 14695981039346656037UL; // FNV-1a over the purpose
        foreach (char c in purpose)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return new SplitMix64(hash ^ (ulong)seed);
    }
}

/// <summary>Text clean-up shared by the data sets.</summary>
internal static class TextClean
{
    // Windows-1252 characters for 0x80-0x9F, which IMDB and mail text carry as C1 control characters.
    private static readonly string Cp1252High =
        "\u20AC\u0081\u201A\u0192\u201E\u2026\u2020\u2021\u02C6\u2030\u0160\u2039\u0152\u008D\u017D\u008F" +
        "\u0090\u2018\u2019\u201C\u201D\u2022\u2013\u2014\u02DC\u2122\u0161\u203A\u0153\u009D\u017E\u0178";

    /// <summary>Maps C1 controls to their Windows-1252 characters and collapses every whitespace run to one space.</summary>
    public static string Normalize(string text)
    {
        var builder = new StringBuilder(text.Length);
        bool pendingSpace = false;
        foreach (char raw in text)
        {
            char c = raw is >= '\u0080' and <= '\u009F' ? Cp1252High[raw - 0x80] : raw;
            if (char.IsWhiteSpace(c) || char.IsControl(c) || c is '\uFEFF' or '\u200B')
            {
                pendingSpace = builder.Length > 0;
                continue;
            }

            if (pendingSpace)
            {
                builder.Append(' ');
                pendingSpace = false;
            }

            builder.Append(c);
        }

        return builder.ToString();
    }

    public static int CountWords(string text)
    {
        int count = 0;
        bool inWord = false;
        foreach (char c in text)
        {
            bool space = char.IsWhiteSpace(c);
            if (!space && !inWord)
            {
                count++;
            }

            inWord = !space;
        }

        return count;
    }

    /// <summary>Cuts at most <paramref name="maxChars"/> characters, at a word boundary when one is near.</summary>
    public static string Truncate(string text, int maxChars)
    {
        if (text.Length <= maxChars)
        {
            return text;
        }

        int cut = text.LastIndexOf(' ', maxChars);
        if (cut < maxChars * 3 / 4)
        {
            cut = maxChars;
        }

        return text[..cut].TrimEnd();
    }
}

/// <summary>Writes tab-separated files with a header; fields never contain tabs or line breaks.</summary>
internal static class Tsv
{
    private static readonly UTF8Encoding Utf8NoBom = new(false);

    public static string Field(string value)
    {
        if (value.AsSpan().IndexOfAny('\t', '\r', '\n') < 0)
        {
            return value;
        }

        return value.Replace("\r\n", " ").Replace('\t', ' ').Replace('\r', ' ').Replace('\n', ' ');
    }

    public static void Write(string path, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temporary = path + ".tmp";
        using (var writer = new StreamWriter(temporary, false, Utf8NoBom) { NewLine = "\n" })
        {
            writer.WriteLine(string.Join('\t', header));
            foreach (var row in rows)
            {
                if (row.Count != header.Count)
                {
                    throw new ArgumentException($"{path}: expected {header.Count} fields per row ({string.Join(", ", header)}), found {row.Count}.");
                }

                writer.WriteLine(string.Join('\t', row.Select(Field)));
            }
        }

        File.Move(temporary, path, overwrite: true);
    }

    public static List<string[]> Read(string path)
    {
        var rows = new List<string[]>();
        foreach (var line in File.ReadLines(path).Skip(1))
        {
            rows.Add(line.Split('\t'));
        }

        return rows;
    }
}

/// <summary>Writes a text file atomically (UTF-8, no BOM, "\n" line ends).</summary>
internal static class TextFile
{
    private static readonly UTF8Encoding Utf8NoBom = new(false);

    public static void Write(string path, Action<TextWriter> write)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temporary = path + ".tmp";
        using (var writer = new StreamWriter(temporary, false, Utf8NoBom, 1 << 16) { NewLine = "\n" })
        {
            write(writer);
        }

        File.Move(temporary, path, overwrite: true);
    }
}
