namespace Microsoft.ML.LabelTuning.Methods.Gpta;

/// <summary>
/// Knows every 20-character window of the training and validation texts (case-folded, as 64-bit rolling hashes)
/// and tells whether a string shares one with them: any common substring of 20 or more characters contains such a
/// window. GPTA checks each candidate prefix and each outgoing message with it, so no data reaches the chat model.
/// A hash collision can only reject a harmless string, never let data through.
/// </summary>
internal sealed class DataGuard
{
    /// <summary>The shortest shared substring that counts as leaking data.</summary>
    public const int Window = 20;

    private const ulong Base = 0x100000001B3UL;
    private static readonly ulong _top = Power(Base, Window - 1);
    private readonly HashSet<ulong> _windows = [];

    /// <summary>Adds the windows of <paramref name="texts"/>.</summary>
    public void AddRange(IEnumerable<string?> texts)
    {
        foreach (var text in texts)
        {
            if (text is { Length: >= Window })
            {
                foreach (var hash in Hashes(text))
                {
                    _windows.Add(hash);
                }
            }
        }
    }

    /// <summary>Gets the number of distinct windows known.</summary>
    public int Count => _windows.Count;

    /// <summary>Whether <paramref name="text"/> shares a substring of <see cref="Window"/> or more characters with the data.</summary>
    public bool Leaks(string? text)
    {
        if (text is null || text.Length < Window || _windows.Count == 0)
        {
            return false;
        }

        foreach (var hash in Hashes(text))
        {
            if (_windows.Contains(hash))
            {
                return true;
            }
        }

        return false;
    }

    private static IEnumerable<ulong> Hashes(string text)
    {
        var hash = 0UL;
        for (var i = 0; i < text.Length; i++)
        {
            if (i >= Window)
            {
                hash -= Fold(text[i - Window]) * _top;
            }

            hash = (hash * Base) + Fold(text[i]);
            if (i >= Window - 1)
            {
                yield return hash;
            }
        }
    }

    private static ulong Fold(char c) => (ulong)char.ToLowerInvariant(c) + 1;

    private static ulong Power(ulong b, int e)
    {
        var result = 1UL;
        for (var i = 0; i < e; i++)
        {
            result *= b;
        }

        return result;
    }
}
