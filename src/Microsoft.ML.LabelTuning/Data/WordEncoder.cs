using Microsoft.ML.LabelTuning.Tokenizers;


namespace Microsoft.ML.LabelTuning.Data;

/// <summary>
/// Encodes a sentence of space-separated words for token classification: BOS + each word's sub-tokens + EOS, and
/// the index of each word's first sub-token, which alone carries the word's label. Words past the maximum length
/// are dropped and their index is -1.
/// </summary>
internal sealed class WordEncoder
{
    private readonly LlamaTextTokenizer _tokenizer;
    private readonly int _maxLength;

    public WordEncoder(LlamaTextTokenizer tokenizer, int maxLength)
    {
        _tokenizer = tokenizer;
        _maxLength = maxLength;
    }

    public int PadId => _tokenizer.PaddingId;

    public static string[] SplitWords(string? text)
        => (text ?? string.Empty).Split([' ', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);

    /// <summary>Encodes the words; <paramref name="firstTokens"/>[i] is word i's first sub-token position, or -1 if truncated.</summary>
    public int[] Encode(IReadOnlyList<string> words, out int[] firstTokens, out bool truncated)
    {
        var ids = new List<int>(words.Count * 2 + 2);
        if (_tokenizer.BosId is { } bos)
        {
            ids.Add(bos);
        }

        var budget = _maxLength - (_tokenizer.EosId is null ? 0 : 1);
        firstTokens = new int[words.Count];
        truncated = false;
        for (var i = 0; i < words.Count; i++)
        {
            // Each word alone encodes as it does mid-sentence (SentencePiece's dummy prefix gives the leading "▁").
            var pieces = truncated ? [] : _tokenizer.Encode(words[i], addSpecialTokens: false);
            if (pieces.Count == 0 || ids.Count + pieces.Count > budget)
            {
                firstTokens[i] = -1;
                truncated |= pieces.Count > 0;
                continue;
            }

            firstTokens[i] = ids.Count;
            ids.AddRange(pieces);
        }

        if (_tokenizer.EosId is { } eos)
        {
            ids.Add(eos);
        }

        return ids.ToArray();
    }
}
