using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Data;

/// <summary>
/// Turns texts into token ids for classification: BOS + prefix + text (+ EOS + second text) + EOS (each special token
/// where the tokenizer defines it; the prefix only when one is set), cut to the maximum
/// length by the truncation rule. The prefix is kept whole and the texts share what is left of the budget. Null and empty texts encode to the special tokens alone and are still scored.
/// </summary>
internal sealed class TextEncoder
{
    private readonly LlamaTextTokenizer _tokenizer;
    private readonly int _maxLength;
    private readonly Truncation _truncation;
    private readonly IReadOnlyList<int> _prefix;

    public TextEncoder(LlamaTextTokenizer tokenizer, int maxLength, Truncation truncation, string? prefix = null)
    {
        _tokenizer = tokenizer;
        _maxLength = maxLength;
        _truncation = truncation;
        Prefix = string.IsNullOrEmpty(prefix) ? null : prefix;
        _prefix = Prefix is null ? [] : tokenizer.Encode(Prefix, addSpecialTokens: false);
    }

    /// <summary>Gets the text put before every input, or null.</summary>
    public string? Prefix { get; }

    /// <summary>Gets the tokenizer.</summary>
    public LlamaTextTokenizer Tokenizer => _tokenizer;

    /// <summary>Gets the id used for padding.</summary>
    public int PadId => _tokenizer.PaddingId;

    /// <summary>Encodes one input; <paramref name="truncated"/> tells whether tokens were dropped.</summary>
    public int[] Encode(TextInput input, out bool truncated)
    {
        var first = _tokenizer.Encode(Bound(input.Text ?? string.Empty), addSpecialTokens: false);
        var second = input.SecondText is null ? null : _tokenizer.Encode(Bound(input.SecondText), addSpecialTokens: false);
        var bos = _tokenizer.BosId;
        var eos = _tokenizer.EosId;
        var specials = (bos is null ? 0 : 1) + (eos is null ? 0 : second is null ? 1 : 2);
        // The prefix keeps its tokens (cut only when it alone overflows the budget); the texts share the rest.
        var prefix = _prefix.Count <= Math.Max(0, _maxLength - specials) ? _prefix : _prefix.Take(Math.Max(0, _maxLength - specials)).ToArray();
        var budget = Math.Max(0, _maxLength - specials - prefix.Count);
        truncated = first.Count + (second?.Count ?? 0) > budget || prefix.Count < _prefix.Count;

        IReadOnlyList<int> a = first;
        IReadOnlyList<int> b = second ?? [];
        if (truncated)
        {
            // Pairs share the budget, the longer side gives up tokens first (Hugging Face's "longest_first").
            var keepA = a.Count;
            var keepB = b.Count;
            while (keepA + keepB > budget)
            {
                if (keepA >= keepB)
                {
                    keepA--;
                }
                else
                {
                    keepB--;
                }
            }

            a = Cut(a, keepA);
            b = Cut(b, keepB);
        }

        var ids = new List<int>(prefix.Count + a.Count + b.Count + specials);
        if (bos is { } b0)
        {
            ids.Add(b0);
        }

        ids.AddRange(prefix);
        ids.AddRange(a);
        if (second is not null)
        {
            if (eos is { } separator)
            {
                ids.Add(separator);
            }

            ids.AddRange(b);
        }

        if (eos is { } end)
        {
            ids.Add(end);
        }

        return ids.ToArray();
    }

    /// <summary>
    /// Cuts a text to at most 64 characters per token of budget before tokenizing (kept from both ends for HeadTail),
    /// so a huge text costs no more than the tokens that can be kept. No real token spans 64 characters.
    /// </summary>
    private string Bound(string text)
    {
        var limit = _maxLength * 64;
        if (text.Length <= limit)
        {
            return text;
        }

        return _truncation == Truncation.HeadTail
            ? string.Concat(text.AsSpan(0, limit / 2), " ", text.AsSpan(text.Length - (limit / 2)))
            : text[..limit];
    }

    private IReadOnlyList<int> Cut(IReadOnlyList<int> ids, int keep)
    {
        if (ids.Count <= keep)
        {
            return ids;
        }

        if (_truncation == Truncation.HeadTail && keep >= 4)
        {
            var head = keep / 4;
            var tail = keep - head;
            return ids.Take(head).Concat(ids.Skip(ids.Count - tail)).ToArray();
        }

        return ids.Take(keep).ToArray();
    }
}
