using System.Text.RegularExpressions;
using LabelTuning.DataPrep.Pretrain;

namespace LabelTuning.DataPrep.Austen;

/// <summary>
/// Builds the 6-way "which novel" passages, the silver NER sentences and the Austen pretraining documents.
/// Each novel is cut into chunks of about <see cref="ChunkLines"/> lines at paragraph boundaries; a seeded
/// <see cref="TestChunkFraction"/> of each novel's chunks is the test region. Test passages and test NER sentences come
/// only from test chunks, training ones only from the others, and test chunks never reach the pretraining corpus.
/// </summary>
internal static partial class AustenBuilder
{
    public const int ChunkLines = 100;
    public const double TestChunkFraction = 0.12;
    public const int TrainPassages = 600;
    public const int TestPassages = 300;
    public const int MinPassageLines = 3;
    public const int MaxPassageLines = 5;
    public const int MinPassageWords = 40;
    public const int MaxPassageWords = 120;

    [GeneratedRegex(@"^(CHAPTER|Chapter|VOLUME|Volume)\b|^[^a-z]*$")]
    private static partial Regex Heading();

    /// <summary>A paragraph: consecutive non-empty lines, and whether it is a heading (chapter, volume, title).</summary>
    internal sealed record Paragraph(int FirstLine, string[] Lines, bool IsHeading)
    {
        public string Text => string.Join(' ', Lines.Select(l => l.Trim()));
    }

    internal sealed record Chunk(Novel Novel, int Index, List<Paragraph> Paragraphs, bool IsTest);

    internal sealed record Passage(string Label, int FirstLine, string Text);

    public static List<Chunk> Chunks(Novel novel, int seed)
    {
        var paragraphs = Paragraphs(novel.Lines);
        var chunks = new List<Chunk>();
        var current = new List<Paragraph>();
        int lineCount = 0;
        foreach (var paragraph in paragraphs)
        {
            current.Add(paragraph);
            lineCount += paragraph.Lines.Length;
            if (lineCount >= ChunkLines)
            {
                chunks.Add(new Chunk(novel, chunks.Count, current, false));
                current = [];
                lineCount = 0;
            }
        }

        if (current.Count > 0)
        {
            chunks.Add(new Chunk(novel, chunks.Count, current, false));
        }

        var order = Enumerable.Range(0, chunks.Count).ToList();
        SplitMix64.For(seed, "austen/regions/" + novel.Variable).Shuffle(order);
        int testCount = (int)Math.Round(chunks.Count * TestChunkFraction);
        var testChunks = order.Take(testCount).ToHashSet();
        return chunks.Select(c => c with { IsTest = testChunks.Contains(c.Index) }).ToList();
    }

    internal static List<Paragraph> Paragraphs(string[] lines)
    {
        var paragraphs = new List<Paragraph>();
        int start = -1;
        for (int i = 0; i <= lines.Length; i++)
        {
            bool empty = i == lines.Length || string.IsNullOrWhiteSpace(lines[i]);
            if (!empty && start < 0)
            {
                start = i;
            }
            else if (empty && start >= 0)
            {
                var block = lines[start..i];
                bool heading = block.Length == 1 && Heading().IsMatch(block[0].Trim());
                paragraphs.Add(new Paragraph(start, block, heading));
                start = -1;
            }
        }

        return paragraphs;
    }

    /// <summary>Non-overlapping passages of 3-5 consecutive non-empty, non-heading lines with 40-120 words.</summary>
    internal static List<Passage> Passages(Chunk chunk)
    {
        // Runs of body lines: blank lines are skipped, headings break a run.
        var runs = new List<List<(int Line, string Text)>>();
        var run = new List<(int, string)>();
        foreach (var paragraph in chunk.Paragraphs)
        {
            if (paragraph.IsHeading)
            {
                if (run.Count > 0)
                {
                    runs.Add(run);
                }

                run = [];
                continue;
            }

            for (int i = 0; i < paragraph.Lines.Length; i++)
            {
                run.Add((paragraph.FirstLine + i, paragraph.Lines[i].Trim()));
            }
        }

        if (run.Count > 0)
        {
            runs.Add(run);
        }

        var passages = new List<Passage>();
        foreach (var lines in runs)
        {
            int i = 0;
            while (i < lines.Count)
            {
                int words = 0;
                int end = i;
                while (end < lines.Count && end - i < MaxPassageLines && !(end - i >= MinPassageLines && words >= MinPassageWords))
                {
                    words += TextClean.CountWords(lines[end].Text);
                    end++;
                }

                if (end - i >= MinPassageLines && words is >= MinPassageWords and <= MaxPassageWords)
                {
                    string text = TextClean.Normalize(string.Join(' ', lines.Skip(i).Take(end - i).Select(l => l.Text)).Replace("_", ""));
                    passages.Add(new Passage(chunk.Novel.Title, lines[i].Line, text));
                    i = end;
                }
                else
                {
                    i++;
                }
            }
        }

        return passages;
    }

    /// <summary>Writes data/austen and data/austen-ner; returns the pretraining documents (one per training-region chunk).</summary>
    public static IReadOnlyList<PretrainDocument> Build(RepoPaths paths, int seed)
    {
        var novels = AustenNovels.Load(paths);
        var gazetteer = AustenGazetteer.Create();
        var trainPassages = new List<Passage>();
        var testPassages = new List<Passage>();
        var trainSentences = new List<NerSentence>();
        var testSentences = new List<NerSentence>();
        var documents = new List<PretrainDocument>();

        for (int n = 0; n < novels.Count; n++)
        {
            var novel = novels[n];
            var chunks = Chunks(novel, seed);
            var random = SplitMix64.For(seed, "austen/sample/" + novel.Variable);
            var (trainQuota, testQuota) = (Share(TrainPassages, novels.Count, n), Share(TestPassages, novels.Count, n));
            trainPassages.AddRange(Sample(chunks.Where(c => !c.IsTest).SelectMany(Passages).ToList(), trainQuota, random, novel, "training passages"));
            testPassages.AddRange(Sample(chunks.Where(c => c.IsTest).SelectMany(Passages).ToList(), testQuota, random, novel, "test passages"));

            var nerRandom = SplitMix64.For(seed, "austen-ner/sample/" + novel.Variable);
            trainSentences.AddRange(AustenNer.Sample(chunks.Where(c => !c.IsTest), gazetteer, Share(AustenNer.TrainSentences, novels.Count, n), nerRandom));
            testSentences.AddRange(AustenNer.Sample(chunks.Where(c => c.IsTest), gazetteer, Share(AustenNer.TestSentences, novels.Count, n), nerRandom));

            foreach (var chunk in chunks.Where(c => !c.IsTest))
            {
                string text = string.Join("\n", chunk.Paragraphs.Select(p => TextClean.Normalize(p.Text.Replace("_", ""))));
                documents.Add(new PretrainDocument("austen", $"austen/{novel.Variable}/{chunk.Index}", text));
            }

            int testLines = chunks.Where(c => c.IsTest).Sum(c => c.Paragraphs.Sum(p => p.Lines.Length));
            Console.WriteLine($"austen: {novel.Title}: {novel.Lines.Length} lines, {chunks.Count} chunks, {chunks.Count(c => c.IsTest)} held out ({testLines} non-empty lines)");
        }

        var shuffle = SplitMix64.For(seed, "austen/order");
        shuffle.Shuffle(trainPassages);
        shuffle.Shuffle(testPassages);
        Tsv.Write(Path.Combine(paths.Data, "austen", "train.tsv"), ["Label", "Text"], trainPassages.Select(p => (IReadOnlyList<string>)[p.Label, p.Text]));
        Tsv.Write(Path.Combine(paths.Data, "austen", "test.tsv"), ["Label", "Text"], testPassages.Select(p => (IReadOnlyList<string>)[p.Label, p.Text]));

        shuffle.Shuffle(trainSentences);
        shuffle.Shuffle(testSentences);
        AustenNer.Write(Path.Combine(paths.Data, "austen-ner", "train.tsv"), trainSentences);
        AustenNer.Write(Path.Combine(paths.Data, "austen-ner", "test.tsv"), testSentences);

        Console.WriteLine($"austen: data/austen/train.tsv {trainPassages.Count}, test.tsv {testPassages.Count} passages (mean {trainPassages.Concat(testPassages).Average(p => TextClean.CountWords(p.Text)):F1} words)");
        Console.WriteLine($"austen-ner (silver): train.tsv {trainSentences.Count}, test.tsv {testSentences.Count} sentences; {AustenNer.Describe(trainSentences.Concat(testSentences))}");
        Console.WriteLine($"austen: pretraining {documents.Count} chunks, {documents.Sum(d => (long)d.Text.Length):N0} chars");
        return documents;
    }

    /// <summary>The share of <paramref name="total"/> that item <paramref name="index"/> of <paramref name="count"/> gets (remainder to the first).</summary>
    internal static int Share(int total, int count, int index) => (total / count) + (index < total % count ? 1 : 0);

    private static IEnumerable<Passage> Sample(List<Passage> candidates, int count, SplitMix64 random, Novel novel, string what)
    {
        if (candidates.Count < count)
        {
            throw new InvalidDataException($"austen: {novel.Title} has {candidates.Count} {what}; expected at least {count}. Raise TestChunkFraction or lower the quota.");
        }

        random.Shuffle(candidates);
        return candidates.Take(count);
    }
}
