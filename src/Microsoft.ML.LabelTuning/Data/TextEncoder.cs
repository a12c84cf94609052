using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Training;

namespace Microsoft.ML.LabelTuning.Data;

/// <summary>
/// Turns texts into token ids for classification: BOS + text (+ EOS + second text) + EOS (each special token
/// where the tokenizer defines it), cut to the maximum
/// length by the truncation rule. Null and empty texts encode to the special tokens alone and are still scored.
/// </summary>
internal sealed class TextEncoder
{
    private readonly LlamaTextTokenizer _tokenizer;
    private readonly int _maxLength;
    private readonly Truncation _truncation;

    public TextEncoder(LlamaTextTokenizer tokenizer, int maxLength, Truncation truncation)
    {
        _tokenizer = tokenizer;
        _maxLength = maxLength;
        _truncation = truncation;
    }

    /// <summary>Gets the tokenizer.</summary>
    public LlamaTextTokenizer Tokenizer => _tokenizer;

    /// <summary>Gets the id used for padding.</summary>
    public int PadId => _tokenizer.PaddingId;

    /// <summary>Encodes one input; <paramref name="truncated"/> tells whether tokens were dropped.</summary>
    public int[] Encode(TextInput input, out bool truncated)
    {
        var first = _tokenizer.Encode(input.Text ?? string.Empty, addSpecialTokens: false);
        var second = input.SecondText is null ? null : _tokenizer.Encode(input.SecondText, addSpecialTokens: false);
        var bos = _tokenizer.BosId;
        var eos = _tokenizer.EosId;
        var specials = (bos is null ? 0 : 1) + (eos is null ? 0 : second is null ? 1 : 2);
        var budget = Math.Max(0, _maxLength - specials);
        truncated = first.Count + (second?.Count ?? 0) > budget;

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

        var ids = new List<int>(a.Count + b.Count + specials);
        if (bos is { } b0)
        {
            ids.Add(b0);
        }

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
