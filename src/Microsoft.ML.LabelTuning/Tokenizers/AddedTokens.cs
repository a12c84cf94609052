using System.Buffers;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// A token matched as a whole in the raw text before the model sees it (Hugging Face's "added tokens":
/// <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, chat markers, user additions).
/// </summary>
/// <param name="Id">The token id.</param>
/// <param name="Content">The exact text of the token.</param>
/// <param name="Special">Special tokens are skipped when decoding with <c>skipSpecialTokens</c> and are matched in text only on request.</param>
/// <param name="LStrip">The match also swallows the whitespace on its left.</param>
/// <param name="RStrip">The match also swallows the whitespace on its right.</param>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false);

/// <summary>
/// Splits text on added tokens, leftmost match first and the longest token at that position, as Hugging Face's
/// added vocabulary does for tokens with <c>normalized: false</c>.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;
    private readonly SearchValues<char> _firstChars;

    internal AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
        _firstChars = SearchValues.Create(_byFirstChar.Keys.ToArray());
    }

    internal bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>
    /// Calls <paramref name="onText"/> for each stretch of plain text (with whether it starts the whole text)
    /// and <paramref name="onToken"/> for each matched token, in order. Empty stretches are not reported.
    /// </summary>
    internal void Split(string text, Action<string, bool> onText, Action<AddedToken> onToken)
    {
        var segmentStart = 0;
        var searchFrom = 0;
        while (searchFrom < text.Length)
        {
            var offset = text.AsSpan(searchFrom).IndexOfAny(_firstChars);
            if (offset < 0)
            {
                break;
            }

            var position = searchFrom + offset;
            var match = LongestAt(text, position);
            if (match is null)
            {
                searchFrom = position + 1;
                continue;
            }

            var tokenStart = position;
            var tokenEnd = position + match.Content.Length;
            if (match.LStrip)
            {
                while (tokenStart > segmentStart && char.IsWhiteSpace(text[tokenStart - 1]))
                {
                    tokenStart--;
                }
            }

            if (match.RStrip)
            {
                while (tokenEnd < text.Length && char.IsWhiteSpace(text[tokenEnd]))
                {
                    tokenEnd++;
                }
            }

            if (tokenStart > segmentStart)
            {
                onText(text[segmentStart..tokenStart], segmentStart == 0);
            }

            onToken(match);
            segmentStart = searchFrom = tokenEnd;
        }

        if (segmentStart < text.Length)
        {
            onText(segmentStart == 0 ? text : text[segmentStart..], segmentStart == 0);
        }
    }

    private AddedToken? LongestAt(string text, int position)
    {
        if (!_byFirstChar.TryGetValue(text[position], out var candidates))
        {
            return null;
        }

        var rest = text.AsSpan(position);
        foreach (var candidate in candidates)
        {
            if (rest.StartsWith(candidate.Content, StringComparison.Ordinal))
            {
                return candidate;
            }
        }

        return null;
    }
}
