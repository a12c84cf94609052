using System.IO.Compression;
using System.Text;

namespace LabelTuning.DataPrep.R;

/// <summary>`r-dump &lt;file&gt;`: prints the structure of an .rds file or of every variable in a lazy-load database.</summary>
internal static class RDump
{
    public static void Run(string path, TextWriter output)
    {
        if (path.EndsWith(".rdb", StringComparison.Ordinal) || path.EndsWith(".rdx", StringComparison.Ordinal))
        {
            var db = RLazyLoadDb.Open(path);
            foreach (var name in db.Names)
            {
                output.WriteLine($"{name}: {Describe(db.Read(name), 0)}");
            }

            return;
        }

        byte[] raw = File.ReadAllBytes(path);
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            using var gzip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var inflated = new MemoryStream();
            gzip.CopyTo(inflated);
            raw = inflated.ToArray();
        }

        output.WriteLine(Describe(RDeserializer.Deserialize(raw, path), 0));
    }

    public static string Describe(RObject value, int depth)
    {
        var text = new StringBuilder(value.ToString());
        foreach (var attribute in value.Attributes.Where(a => a.Key != "names"))
        {
            text.Append($" @{attribute.Key}={Shorten(attribute.Value.ToString() ?? "")}");
        }

        switch (value)
        {
            case RStringVector strings when strings.Values.Length > 0:
                text.Append(" \"").Append(Shorten(strings.Values[0] ?? "NA")).Append('"');
                break;
            case RIntVector ints when ints.Values.Length > 0:
                text.Append(' ').Append(string.Join(",", ints.Values.Take(4)));
                break;
            case RList list when depth < 2:
                var names = list.Names;
                for (int i = 0; i < Math.Min(list.Items.Length, 8); i++)
                {
                    text.Append("\n").Append(' ', 2 * (depth + 1)).Append(names?[i] ?? $"[{i}]").Append(": ").Append(Describe(list.Items[i], depth + 1));
                }

                break;
        }

        return text.ToString();
    }

    private static string Shorten(string text) => text.Length <= 60 ? text : text[..60] + "...";
}
