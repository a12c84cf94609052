using System.Text.RegularExpressions;

namespace LabelTuning.DataPrep.Austen;

/// <summary>One silver-labelled sentence: tokens and their BIO tags (O, B-PER, I-PER, B-LOC, I-LOC).</summary>
internal sealed record NerSentence(string Novel, string[] Tokens, string[] Tags);

/// <summary>Sentence splitting, tokenization and sampling for the silver NER data set.</summary>
internal static partial class AustenNer
{
    public const int TrainSentences = 1000;
    public const int TestSentences = 300;
    public const int MinTokens = 6;
    public const int MaxTokens = 60;
    public const double EntityShare = 0.75;

    [GeneratedRegex(@"(?:Mr|Mrs|Dr|St|Messrs)\.(?![A-Za-z])|\d+(?:[,.]\d+)*|[A-Za-z\u00C0-\u024F]+(?:['\-][A-Za-z\u00C0-\u024F]+)*|-{2,}|\S")]
    private static partial Regex TokenPattern();

    internal readonly record struct Token(string Text, bool SpaceBefore);

    /// <summary>Words, abbreviations with their period, dashes and single punctuation marks; a possessive 's is split off.</summary>
    internal static List<Token> Tokenize(string text)
    {
        text = text.Replace("_", ""); // italics markers
        var tokens = new List<Token>();
        int previousEnd = 0;
        foreach (Match match in TokenPattern().Matches(text))
        {
            bool space = match.Index > previousEnd || match.Index == 0;
            previousEnd = match.Index + match.Length;
            string value = match.Value;
            if (value.Length > 2 && value.EndsWith("'s", StringComparison.Ordinal) && char.IsLetter(value[^3]))
            {
                tokens.Add(new Token(value[..^2], space));
                tokens.Add(new Token("'s", false));
            }
            else
            {
                tokens.Add(new Token(value, space));
            }
        }

        return tokens;
    }

    /// <summary>Splits a paragraph's tokens into sentences at . ! ? (with closing quotes) before a capital or an opening quote.</summary>
    internal static List<string[]> Sentences(string paragraph)
    {
        var tokens = Tokenize(paragraph);
        var sentences = new List<string[]>();
        int start = 0;
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Text is not ("." or "!" or "?"))
            {
                continue;
            }

            int end = i + 1;
            while (end < tokens.Count && IsQuote(tokens[end].Text) && !tokens[end].SpaceBefore)
            {
                end++; // closing quotes and brackets stay with their sentence
            }

            while (end < tokens.Count && tokens[end].Text is "." or "!" or "?")
            {
                end++;
            }

            bool boundary = end >= tokens.Count
                || StartsUpper(tokens[end].Text)
                || (IsQuote(tokens[end].Text) && end + 1 < tokens.Count && StartsUpper(tokens[end + 1].Text));
            if (boundary)
            {
                sentences.Add(tokens.Skip(start).Take(end - start).Select(t => t.Text).ToArray());
                start = end;
                i = end - 1;
            }
        }

        if (start < tokens.Count)
        {
            sentences.Add(tokens.Skip(start).Select(t => t.Text).ToArray());
        }

        return sentences;
    }

    private static bool IsQuote(string token) => token is "\"" or "'" or ")" or "]" or "(";

    private static bool StartsUpper(string token) => token.Length > 0 && char.IsUpper(token[0]);

    public static IEnumerable<NerSentence> Sample(IEnumerable<AustenBuilder.Chunk> chunks, AustenGazetteer gazetteer, int count, SplitMix64 random)
    {
        var withEntities = new List<NerSentence>();
        var without = new List<NerSentence>();
        string novel = "";
        foreach (var chunk in chunks)
        {
            novel = chunk.Novel.Title;
            foreach (var paragraph in chunk.Paragraphs.Where(p => !p.IsHeading))
            {
                foreach (var tokens in Sentences(paragraph.Text))
                {
                    if (tokens.Length < MinTokens || tokens.Length > MaxTokens || !tokens.Any(t => t.Any(char.IsLower)))
                    {
                        continue;
                    }

                    var tags = gazetteer.Tag(tokens);
                    var sentence = new NerSentence(novel, tokens, tags);
                    (tags.Any(t => t != "O") ? withEntities : without).Add(sentence);
                }
            }
        }

        int entityCount = (int)Math.Round(count * EntityShare);
        if (withEntities.Count < entityCount || without.Count < count - entityCount)
        {
            throw new InvalidDataException(
                $"austen-ner: {novel} has {withEntities.Count} sentences with entities and {without.Count} without; expected at least {entityCount} and {count - entityCount}.");
        }

        random.Shuffle(withEntities);
        random.Shuffle(without);
        return withEntities.Take(entityCount).Concat(without.Take(count - entityCount)).ToList();
    }

    public static void Write(string path, IEnumerable<NerSentence> sentences)
        => Tsv.Write(path, ["Tokens", "Tags"], sentences.Select(s => (IReadOnlyList<string>)[string.Join(' ', s.Tokens), string.Join(' ', s.Tags)]));

    public static string Describe(IEnumerable<NerSentence> sentences)
    {
        var list = sentences.ToList();
        int per = list.Sum(s => s.Tags.Count(t => t == "B-PER"));
        int loc = list.Sum(s => s.Tags.Count(t => t == "B-LOC"));
        int tokens = list.Sum(s => s.Tokens.Length);
        return $"{tokens} tokens, {per} PER and {loc} LOC entities, {list.Count(s => s.Tags.Any(t => t != "O"))} of {list.Count} sentences with an entity";
    }
}
