using System.Text;
using Microsoft.ML.Data;

namespace Sentiment;

/// <summary>One review: the input of the pipelines.</summary>
public sealed class Review
{
    public string Label { get; set; } = string.Empty;

    public string Text { get; set; } = string.Empty;
}

/// <summary>What the prediction engine returns: the label as text and one probability per class (in key order).</summary>
public sealed class ReviewPrediction
{
    [ColumnName("PredictedText")]
    public string PredictedText { get; set; } = string.Empty;

    public float[] Score { get; set; } = [];
}

/// <summary>Reads the sample's TSV files and picks balanced subsets.</summary>
internal static class Reviews
{
    /// <summary>Reads a UTF-8 TSV with a header row <c>Label\tText</c>.</summary>
    public static List<Review> Load(string path)
    {
        var rows = new List<Review>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            lineNumber++;
            if (lineNumber == 1)
            {
                if (!line.StartsWith("Label\tText", StringComparison.Ordinal))
                {
                    throw new InvalidDataException($"'{path}' must start with the header 'Label<TAB>Text' but starts with '{line[..Math.Min(40, line.Length)]}'.");
                }

                continue;
            }

            var tab = line.IndexOf('\t');
            if (tab <= 0)
            {
                throw new InvalidDataException($"Line {lineNumber} of '{path}' has no tab between Label and Text.");
            }

            rows.Add(new Review { Label = line[..tab], Text = line[(tab + 1)..] });
        }

        return rows;
    }

    /// <summary>The first <paramref name="count"/> / labels rows of each label, in file order (all rows when count is 0).</summary>
    public static List<Review> Balanced(IReadOnlyList<Review> rows, int count)
    {
        if (count <= 0 || count >= rows.Count)
        {
            return rows.ToList();
        }

        var labels = rows.Select(r => r.Label).Distinct().ToList();
        var perLabel = count / labels.Count;
        var taken = labels.ToDictionary(l => l, _ => 0);
        var result = new List<Review>();
        foreach (var row in rows)
        {
            if (taken[row.Label] < perLabel)
            {
                taken[row.Label]++;
                result.Add(row);
            }
        }

        return result;
    }

    public static string Describe(IReadOnlyList<Review> rows)
        => string.Join(", ", rows.GroupBy(r => r.Label).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Count()} {g.Key}"));

    public static string Relative(string? root, string path) => root is null ? path : Path.GetRelativePath(root, path).Replace('\\', '/');
}

/// <summary>Finds the repository root (the folder with Microsoft.ML.LabelTuning.sln) from the working folder or the binaries.</summary>
internal static class RepoPaths
{
    public static string? FindRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.LabelTuning.sln")))
                {
                    return dir.FullName;
                }
            }
        }

        return null;
    }
}
