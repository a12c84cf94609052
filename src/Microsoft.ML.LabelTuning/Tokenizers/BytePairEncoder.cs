using System.Text;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// Hugging Face's BPE model over characters, as SentencePiece-style tokenizers use it: every character starts as its
/// own symbol (or, when the vocabulary lacks it, as its UTF-8 bytes <c>&lt;0xNN&gt;</c> with byte fallback, else
/// the unknown token, fused when <c>fuse_unk</c>), then the adjacent pair with the lowest merge rank is merged,
/// leftmost first, until no listed pair remains.
/// </summary>
internal sealed class BytePairEncoder
{
    private readonly Dictionary<string, int> _vocabulary;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly Dictionary<ulong, Merge> _merges;
    private readonly int[]? _byteIds;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;

    private const int MaxKeptScratch = 1 << 16;

    [ThreadStatic]
    private static Scratch? t_scratch;

    /// <param name="vocabulary">Token to id.</param>
    /// <param name="merges">Pairs of token ids to their rank (lower merges first) and the id of the merged token.</param>
    /// <param name="byteFallback">Spell characters missing from the vocabulary as <c>&lt;0xNN&gt;</c> byte tokens.</param>
    /// <param name="unkId">Id of the unknown token, for characters that cannot be spelled otherwise.</param>
    /// <param name="fuseUnk">Runs of unknown characters become one unknown token.</param>
    /// <param name="ignoreMerges">A word that is itself in the vocabulary is taken whole.</param>
    internal BytePairEncoder(Dictionary<string, int> vocabulary, Dictionary<ulong, Merge> merges, bool byteFallback, int? unkId, bool fuseUnk, bool ignoreMerges)
    {
        _vocabulary = vocabulary;
        _lookup = vocabulary.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = merges;
        _unkId = unkId;
        _fuseUnk = fuseUnk;
        _ignoreMerges = ignoreMerges;
        if (byteFallback)
        {
            _byteIds = new int[256];
            for (var b = 0; b < 256; b++)
            {
                _byteIds[b] = vocabulary.TryGetValue($"<0x{b:X2}>", out var id) ? id : -1;
            }
        }
    }

    /// <summary>Rank and result of merging one pair of tokens.</summary>
    internal readonly record struct Merge(int Rank, int NewId);

    internal static ulong PairKey(int left, int right) => ((ulong)(uint)left << 32) | (uint)right;

    /// <summary>Appends the ids of <paramref name="word"/> to <paramref name="ids"/>.</summary>
    internal void Encode(string word, List<int> ids)
    {
        if (word.Length == 0)
        {
            return;
        }

        if (_ignoreMerges && _vocabulary.TryGetValue(word, out var whole))
        {
            ids.Add(whole);
            return;
        }

        var scratch = t_scratch ??= new Scratch();
        var count = Spell(word, scratch);
        MergeAll(scratch, count);
        for (var i = 0; i != -1 && count > 0; i = scratch.Next[i])
        {
            ids.Add(scratch.Ids[i]);
        }

        if (scratch.Ids.Length > MaxKeptScratch)
        {
            t_scratch = null; // one long text should not pin large buffers to the thread
        }
    }

    /// <summary>Turns the characters of <paramref name="word"/> into the initial symbols; returns their count.</summary>
    private int Spell(string word, Scratch scratch)
    {
        scratch.Reset(word.Length * 4); // a character spells as at most 4 byte tokens
        var count = 0;
        var pendingUnk = false;
        Span<byte> utf8 = stackalloc byte[4];
        var text = word.AsSpan();
        for (var i = 0; i < text.Length;)
        {
            Rune.DecodeFromUtf16(text[i..], out var rune, out var consumed);
            var piece = text.Slice(i, consumed);
            i += consumed;

            if (_lookup.TryGetValue(piece, out var id))
            {
                FlushUnk();
                Add(id);
                continue;
            }

            if (_byteIds is not null)
            {
                var length = rune.EncodeToUtf8(utf8);
                var spelled = true;
                for (var b = 0; b < length; b++)
                {
                    spelled &= _byteIds[utf8[b]] >= 0;
                }

                if (spelled)
                {
                    FlushUnk();
                    for (var b = 0; b < length; b++)
                    {
                        Add(_byteIds[utf8[b]]);
                    }

                    continue;
                }
            }

            if (_unkId is int unk)
            {
                if (pendingUnk && !_fuseUnk)
                {
                    Add(unk);
                }

                pendingUnk = true;
            }

            // Without an unknown token the character is dropped, as Hugging Face does.
        }

        FlushUnk();
        return count;

        void FlushUnk()
        {
            if (pendingUnk)
            {
                Add(_unkId!.Value);
                pendingUnk = false;
            }
        }

        void Add(int tokenId)
        {
            scratch.Ids[count] = tokenId;
            scratch.Prev[count] = count - 1;
            scratch.Next[count] = -1;
            scratch.Removed[count] = false;
            if (count > 0)
            {
                scratch.Next[count - 1] = count;
            }

            count++;
        }
    }

    /// <summary>Merges the lowest-ranked adjacent pair (leftmost on ties) until none is left, in place.</summary>
    private void MergeAll(Scratch s, int count)
    {
        var queue = s.Queue;
        for (var i = 0; i + 1 < count; i++)
        {
            Push(i, s.Ids[i], s.Ids[i + 1]);
        }

        while (queue.TryDequeue(out var candidate, out _))
        {
            var pos = candidate.Position;
            if (s.Removed[pos] || s.Next[pos] == -1)
            {
                continue;
            }

            var right = s.Next[pos];
            // A stale entry: the pair at this position has changed since it was queued.
            if (!_merges.TryGetValue(PairKey(s.Ids[pos], s.Ids[right]), out var merge) || merge.NewId != candidate.NewId)
            {
                continue;
            }

            s.Ids[pos] = merge.NewId;
            s.Removed[right] = true;
            s.Next[pos] = s.Next[right];
            if (s.Next[pos] != -1)
            {
                s.Prev[s.Next[pos]] = pos;
            }

            if (s.Prev[pos] != -1)
            {
                Push(s.Prev[pos], s.Ids[s.Prev[pos]], s.Ids[pos]);
            }

            if (s.Next[pos] != -1)
            {
                Push(pos, s.Ids[pos], s.Ids[s.Next[pos]]);
            }
        }

        void Push(int position, int left, int rightId)
        {
            if (_merges.TryGetValue(PairKey(left, rightId), out var merge))
            {
                queue.Enqueue(new Candidate(position, merge.NewId), ((long)merge.Rank << 32) | (uint)position);
            }
        }
    }

    private readonly record struct Candidate(int Position, int NewId);

    /// <summary>Per-thread buffers, so that encoding allocates nothing per symbol and instances stay thread-safe.</summary>
    private sealed class Scratch
    {
        internal int[] Ids = [];
        internal int[] Prev = [];
        internal int[] Next = [];
        internal bool[] Removed = [];
        internal readonly PriorityQueue<Candidate, long> Queue = new();

        internal void Reset(int capacity)
        {
            if (Ids.Length < capacity)
            {
                var size = Math.Max(capacity, 2 * Ids.Length);
                Ids = new int[size];
                Prev = new int[size];
                Next = new int[size];
                Removed = new bool[size];
            }

            Queue.Clear();
        }
    }
}
