using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace LabelTuning.DataPrep;

/// <summary>
/// `check-tokenizer`: loads models/labeltuning-default/tokenizer.model with Microsoft.ML.Tokenizers' LlamaTokenizer
/// (the library's path) and compares its ids with SentencePiece's own, recorded by data/train_tokenizer.sh in
/// data/.cache/tokenizer/check.tsv. Returns 1 when any text encodes differently.
/// </summary>
internal static partial class TokenizerCheck
{
    [GeneratedRegex(@"^\u2581?(.)\1*$")]
    private static partial Regex OneRepeatedCharacter();

    public static int Run(RepoPaths paths)
    {
        string modelPath = Path.Combine(paths.Root, "models", "labeltuning-default", "tokenizer.model");
        string checkPath = Path.Combine(paths.Cache, "tokenizer", "check.tsv");
        foreach (var file in new[] { modelPath, checkPath })
        {
            if (!File.Exists(file))
            {
                throw new FileNotFoundException($"Missing {file}; run `bash data/train_tokenizer.sh` first.", file);
            }
        }

        LlamaTokenizer tokenizer;
        using (var stream = File.OpenRead(modelPath))
        {
            tokenizer = LlamaTokenizer.Create(stream, addBeginOfSentence: true, addEndOfSentence: false);
        }

        var pieceById = tokenizer.Vocabulary.ToDictionary(kv => kv.Value, kv => kv.Key);
        string[] Pieces(IEnumerable<int> ids) => ids.Select(id => pieceById[id]).ToArray();
        Console.WriteLine($"tokenizer: vocab {tokenizer.Vocabulary.Count}, unk {tokenizer.UnknownId}, bos {tokenizer.BeginningOfSentenceId} '{tokenizer.BeginningOfSentenceToken}', eos {tokenizer.EndOfSentenceId} '{tokenizer.EndOfSentenceToken}', byte fallback {tokenizer.ByteFallback}, dummy prefix {tokenizer.AddDummyPrefix}");
        int total = 0;
        int mismatches = 0;
        int tieBreaks = 0;
        int decodeMismatches = 0;
        long expectedTokens = 0;
        long actualTokens = 0;
        foreach (var line in File.ReadLines(checkPath).Skip(1))
        {
            int tab = line.LastIndexOf('\t');
            string text = Unescape(line[..tab]);
            var expected = line[(tab + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            var actual = tokenizer.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false);
            var withBos = tokenizer.EncodeToIds(text);
            total++;
            expectedTokens += expected.Length;
            actualTokens += actual.Count;
            bool bosOk = text.Length == 0 ? withBos.Count == 0 : withBos.Count == actual.Count + 1 && withBos[0] == tokenizer.BeginningOfSentenceId;
            if (!actual.SequenceEqual(expected) && bosOk && OnlyRunsDiffer(Pieces(expected), Pieces(actual)))
            {
                // Runs like "!!!!!" or "*****": equal-score merges are taken right-to-left by Microsoft.ML.Tokenizers and
                // left-to-right by SentencePiece, so the run is split differently ("!!!"+"!!" against "!!"+"!!!").
                tieBreaks++;
            }
            else if (!actual.SequenceEqual(expected) || !bosOk)
            {
                mismatches++;
                if (mismatches <= 5)
                {
                    int first = Enumerable.Range(0, Math.Min(actual.Count, expected.Length)).FirstOrDefault(k => actual[k] != expected[k], Math.Min(actual.Count, expected.Length));
                    Console.WriteLine($"  first difference at {first}: sp [{string.Join(' ', expected.Skip(first).Take(6).Select(id => tokenizer.Vocabulary.First(kv => kv.Value == id).Key))}] ml [{string.Join(' ', actual.Skip(first).Take(6).Select(id => tokenizer.Vocabulary.First(kv => kv.Value == id).Key))}] decodeEqual {tokenizer.Decode(actual) == tokenizer.Decode(expected)} bos {bosOk}");
                    Console.WriteLine($"  MISMATCH \"{Shorten(text)}\"\n    sentencepiece {string.Join(' ', expected.Take(24))}\n    ML.Tokenizers {string.Join(' ', actual.Take(24))}");
                }
            }

            string decoded = tokenizer.Decode(expected) ?? "";
            if (decoded != text && decoded != text.TrimStart(' ') && text.Trim().Length > 0)
            {
                decodeMismatches++;
                if (decodeMismatches <= 3)
                {
                    Console.WriteLine($"  decode differs: \"{Shorten(text)}\" -> \"{Shorten(decoded)}\"");
                }
            }
        }

        Console.WriteLine($"check-tokenizer: {total - mismatches - tieBreaks}/{total} texts give identical ids; {tieBreaks} differ only in how a run of one repeated character is split; {mismatches} differ otherwise; {decodeMismatches} decode differently");
        Console.WriteLine($"check-tokenizer: {expectedTokens} tokens from SentencePiece, {actualTokens} from Microsoft.ML.Tokenizers");
        return mismatches == 0 ? 0 : 1;
    }

    /// <summary>
    /// True when both segmentations spell the same piece string and every stretch where their token boundaries
    /// disagree is one repeated character (optionally after the word-start mark).
    /// </summary>
    private static bool OnlyRunsDiffer(string[] expected, string[] actual)
    {
        if (string.Concat(expected) != string.Concat(actual))
        {
            return false;
        }

        string text = string.Concat(expected);
        var expectedEnds = Ends(expected);
        var actualEnds = Ends(actual);
        int regionStart = 0;
        bool differs = false;
        for (int position = 1; position <= text.Length; position++)
        {
            bool inExpected = expectedEnds.Contains(position);
            bool inActual = actualEnds.Contains(position);
            if (inExpected != inActual)
            {
                differs = true;
            }
            else if (inExpected)
            {
                if (differs && !OneRepeatedCharacter().IsMatch(text[regionStart..position]))
                {
                    return false;
                }

                regionStart = position;
                differs = false;
            }
        }

        return true;
    }

    private static HashSet<int> Ends(string[] pieces)
    {
        var ends = new HashSet<int>();
        int position = 0;
        foreach (var piece in pieces)
        {
            position += piece.Length;
            ends.Add(position);
        }

        return ends;
    }

    private static string Unescape(string text)
    {
        var builder = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '\\' && i + 1 < text.Length)
            {
                i++;
                builder.Append(text[i] switch { 't' => '\t', 'n' => '\n', _ => text[i] });
            }
            else
            {
                builder.Append(text[i]);
            }
        }

        return builder.ToString();
    }

    private static string Shorten(string text) => (text.Length <= 70 ? text : text[..70] + "...").Replace("\n", "\\n");
}
