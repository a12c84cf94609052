using System.Text.Json;

namespace LabelTuning.DataPrep.Pretrain;

/// <summary>
/// Writes the pretraining corpus to data/.cache/pretrain/: corpus.txt (training) and valid.txt (a seeded 1% of each
/// source's documents, for validation perplexity), both as documents separated by one blank line, in a seeded
/// shuffled order; imdb.txt (the IMDB pool, one review per line); and manifest.json (counts per source).
/// </summary>
internal static class PretrainCorpus
{
    public const double ValidationFraction = 0.01;

    public static void Write(RepoPaths paths, int seed, IReadOnlyList<PretrainDocument> imdb, IReadOnlyList<PretrainDocument> austen, IReadOnlyList<PretrainDocument> spam)
    {
        var train = new List<PretrainDocument>();
        var valid = new List<PretrainDocument>();
        var sources = new[] { ("imdb", imdb), ("austen", austen), ("spam", spam) };
        foreach (var (name, documents) in sources)
        {
            foreach (var document in documents)
            {
                if (document.Text.Contains("\n\n", StringComparison.Ordinal) || document.Text.Length == 0 || document.Text.Contains('\r'))
                {
                    throw new InvalidDataException($"pretrain: document {document.Id} is empty or holds a blank line or CR; documents are separated by blank lines.");
                }
            }

            var order = documents.ToList();
            SplitMix64.For(seed, "pretrain/valid/" + name).Shuffle(order);
            int validCount = Math.Max(1, (int)Math.Round(order.Count * ValidationFraction));
            valid.AddRange(order.Take(validCount));
            train.AddRange(order.Skip(validCount));
        }

        SplitMix64.For(seed, "pretrain/order").Shuffle(train);
        SplitMix64.For(seed, "pretrain/order-valid").Shuffle(valid);

        WriteDocuments(Path.Combine(paths.Pretrain, "corpus.txt"), train);
        WriteDocuments(Path.Combine(paths.Pretrain, "valid.txt"), valid);
        TextFile.Write(Path.Combine(paths.Pretrain, "imdb.txt"), writer =>
        {
            foreach (var document in imdb)
            {
                writer.WriteLine(document.Text);
            }
        });

        var manifest = new Dictionary<string, object>
        {
            ["seed"] = seed,
            ["format"] = "UTF-8; documents separated by one blank line; a document never contains a blank line",
            ["validation_fraction"] = ValidationFraction,
            ["corpus"] = Summary(train),
            ["valid"] = Summary(valid),
        };
        File.WriteAllText(Path.Combine(paths.Pretrain, "manifest.json"), JsonSerializer.Serialize(manifest, new JsonSerializerOptions { WriteIndented = true }) + "\n");

        Console.WriteLine($"pretrain: corpus.txt {train.Count} documents, {train.Sum(d => (long)d.Text.Length):N0} chars; valid.txt {valid.Count} documents, {valid.Sum(d => (long)d.Text.Length):N0} chars");
        foreach (var (name, _) in sources)
        {
            Console.WriteLine($"pretrain:   {name}: {train.Count(d => d.Source == name)} documents, {train.Where(d => d.Source == name).Sum(d => (long)d.Text.Length):N0} chars");
        }
    }

    private static Dictionary<string, object> Summary(List<PretrainDocument> documents)
        => documents.GroupBy(d => d.Source).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(
            g => g.Key,
            g => (object)new Dictionary<string, long> { ["documents"] = g.Count(), ["chars"] = g.Sum(d => (long)d.Text.Length) });

    private static void WriteDocuments(string path, List<PretrainDocument> documents)
        => TextFile.Write(path, writer =>
        {
            for (int i = 0; i < documents.Count; i++)
            {
                if (i > 0)
                {
                    writer.WriteLine();
                }

                writer.WriteLine(documents[i].Text);
            }
        });
}
