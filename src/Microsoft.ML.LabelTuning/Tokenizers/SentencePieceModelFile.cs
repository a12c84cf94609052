using System.Text;

namespace Microsoft.ML.LabelTuning.Tokenizers;

/// <summary>
/// Reads a SentencePiece BPE <c>tokenizer.model</c> (LLaMA, LLaMA-2, Mistral, TinyLlama) into a <see cref="TokenModel"/>,
/// the way transformers' LlamaConverter turns it into a tokenizer.json: pieces become the vocabulary, every split of a
/// piece into two pieces becomes a merge ranked by the piece's score, and the normalizer spec becomes
/// <c>Prepend "▁"</c> + <c>Replace " " → "▁"</c>.
/// </summary>
/// <remarks>
/// Merges rank by score, with equal scores sharing a rank so that position breaks ties, leftmost first: exactly
/// SentencePiece's agenda order. Microsoft.ML.Tokenizers' LlamaTokenizer (2.0.1 and 3.0.0) is not used because it breaks score
/// ties rightmost first (its SymbolPair.CompareTo inverts the position order), so a run of 18 spaces encodes as
/// [▁, ▁×16, ...] where SentencePiece gives [▁×16, ▁, ...].
/// </remarks>
internal static class SentencePieceModelFile
{
    private enum PieceType
    {
        Normal = 1,
        Unknown = 2,
        Control = 3,
        UserDefined = 4,
        Unused = 5,
        Byte = 6,
    }

    private const int BpeModelType = 2;
    private const string MetaSpace = "\u2581";

    private sealed record Piece(string Text, float Score, PieceType Type);

    /// <summary>The fields of TrainerSpec and NormalizerSpec that decide how text is encoded, with proto defaults.</summary>
    private sealed class Spec
    {
        internal int ModelType = 1; // UNIGRAM
        internal bool TreatWhitespaceAsSuffix;
        internal bool ByteFallback;
        internal int UnkId;
        internal int BosId = 1;
        internal int EosId = 2;
        internal string NormalizerName = "";
        internal int CharsMapLength;
        internal bool AddDummyPrefix = true;
        internal bool RemoveExtraWhitespaces = true;
        internal bool EscapeWhitespaces = true;
    }

    /// <summary>Reads a SentencePiece model file.</summary>
    /// <exception cref="InvalidDataException">The file is not a SentencePiece BPE model or uses a feature this reader does not support.</exception>
    internal static TokenModel Load(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0)
        {
            throw new InvalidDataException($"'{path}' is empty; expected a SentencePiece BPE model (protobuf ModelProto).");
        }

        var pieces = new List<Piece>();
        var spec = new Spec();
        var reader = new ProtoReader(bytes, path);
        while (reader.TryReadTag(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited):
                    pieces.Add(ReadPiece(new ProtoReader(reader.ReadBytes(), path), path, pieces.Count));
                    break;
                case (2, ProtoReader.LengthDelimited):
                    ReadTrainerSpec(new ProtoReader(reader.ReadBytes(), path), spec);
                    break;
                case (3, ProtoReader.LengthDelimited):
                    ReadNormalizerSpec(new ProtoReader(reader.ReadBytes(), path), spec);
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }

        Validate(path, pieces, spec);
        return Convert(path, pieces, spec);
    }

    private static Piece ReadPiece(ProtoReader reader, string path, int index)
    {
        string? text = null;
        var score = 0f;
        var type = PieceType.Normal;
        while (reader.TryReadTag(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited):
                    text = reader.ReadString();
                    break;
                case (2, ProtoReader.Fixed32):
                    score = reader.ReadFloat();
                    break;
                case (3, ProtoReader.Varint):
                    type = (PieceType)(int)reader.ReadVarint();
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }

        if (string.IsNullOrEmpty(text))
        {
            throw new InvalidDataException($"'{path}': SentencePiece piece {index} is empty; pieces must not be.");
        }

        if (!Enum.IsDefined(type))
        {
            throw new InvalidDataException($"'{path}': SentencePiece piece {index} (\"{text}\") has type {(int)type}; expected 1 to 6.");
        }

        return new Piece(text, score, type);
    }

    private static void ReadTrainerSpec(ProtoReader reader, Spec spec)
    {
        while (reader.TryReadTag(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (3, ProtoReader.Varint):
                    spec.ModelType = (int)reader.ReadVarint();
                    break;
                case (24, ProtoReader.Varint):
                    spec.TreatWhitespaceAsSuffix = reader.ReadVarint() != 0;
                    break;
                case (35, ProtoReader.Varint):
                    spec.ByteFallback = reader.ReadVarint() != 0;
                    break;
                case (40, ProtoReader.Varint):
                    spec.UnkId = (int)reader.ReadVarint(); // int32: negative values are ten-byte varints; the cast restores them
                    break;
                case (41, ProtoReader.Varint):
                    spec.BosId = (int)reader.ReadVarint();
                    break;
                case (42, ProtoReader.Varint):
                    spec.EosId = (int)reader.ReadVarint();
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
    }

    private static void ReadNormalizerSpec(ProtoReader reader, Spec spec)
    {
        while (reader.TryReadTag(out var field, out var wireType))
        {
            switch (field, wireType)
            {
                case (1, ProtoReader.LengthDelimited):
                    spec.NormalizerName = reader.ReadString();
                    break;
                case (2, ProtoReader.LengthDelimited):
                    spec.CharsMapLength = reader.ReadBytes().Length;
                    break;
                case (3, ProtoReader.Varint):
                    spec.AddDummyPrefix = reader.ReadVarint() != 0;
                    break;
                case (4, ProtoReader.Varint):
                    spec.RemoveExtraWhitespaces = reader.ReadVarint() != 0;
                    break;
                case (5, ProtoReader.Varint):
                    spec.EscapeWhitespaces = reader.ReadVarint() != 0;
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
    }

    private static void Validate(string path, List<Piece> pieces, Spec spec)
    {
        if (pieces.Count == 0)
        {
            throw new InvalidDataException($"'{path}' holds no SentencePiece pieces; it is not a SentencePiece model.");
        }

        if (spec.ModelType != BpeModelType)
        {
            var name = spec.ModelType switch { 1 => "UNIGRAM", 3 => "WORD", 4 => "CHAR", _ => "unknown" };
            throw new InvalidDataException(
                $"'{path}' is a SentencePiece {name} model (model_type {spec.ModelType}); only BPE (model_type 2), as in LLaMA and Mistral, is supported.");
        }

        if (spec.TreatWhitespaceAsSuffix)
        {
            throw new InvalidDataException($"'{path}' sets treat_whitespace_as_suffix; only prefix whitespace, as in LLaMA, is supported.");
        }

        if (spec.NormalizerName is not ("" or "identity") || spec.CharsMapLength > 0)
        {
            throw new InvalidDataException(
                $"'{path}' uses the '{spec.NormalizerName}' normalization rule; only 'identity' (no Unicode normalization), as in LLaMA, is supported.");
        }

        if ((uint)spec.UnkId >= (uint)pieces.Count || pieces[spec.UnkId].Type != PieceType.Unknown)
        {
            throw new InvalidDataException($"'{path}': unk_id {spec.UnkId} does not name an UNKNOWN piece among the {pieces.Count} SentencePiece pieces.");
        }
    }

    private static TokenModel Convert(string path, List<Piece> pieces, Spec spec)
    {
        var vocabulary = new Dictionary<string, int>(pieces.Count, StringComparer.Ordinal);
        var encodable = new Dictionary<string, int>(pieces.Count, StringComparer.Ordinal); // what BPE may spell text with
        var addedTokens = new List<AddedToken>();
        for (var id = 0; id < pieces.Count; id++)
        {
            var piece = pieces[id];
            if (!vocabulary.TryAdd(piece.Text, id))
            {
                throw new InvalidDataException($"'{path}': SentencePiece piece \"{piece.Text}\" appears twice (ids {vocabulary[piece.Text]} and {id}).");
            }

            switch (piece.Type)
            {
                case PieceType.Control or PieceType.Unknown:
                    addedTokens.Add(new AddedToken(id, piece.Text, Special: true));
                    break;
                case PieceType.UserDefined:
                    // SentencePiece always cuts user-defined symbols out of the text whole.
                    addedTokens.Add(new AddedToken(id, piece.Text, Special: false));
                    encodable[piece.Text] = id;
                    break;
                default:
                    encodable[piece.Text] = id;
                    break;
            }
        }

        var encoder = new BytePairEncoder(
            encodable,
            BuildMerges(pieces, encodable),
            spec.ByteFallback,
            spec.UnkId,
            fuseUnk: true, // SentencePiece merges runs of unknown pieces
            ignoreMerges: false);

        var steps = new List<Normalizer>();
        if (spec.RemoveExtraWhitespaces)
        {
            steps.Add(new Normalizer.CollapseSpaces());
        }

        if (spec.AddDummyPrefix)
        {
            steps.Add(new Normalizer.Prepend(MetaSpace));
        }

        if (spec.EscapeWhitespaces)
        {
            steps.Add(new Normalizer.Replace(" ", MetaSpace));
        }

        var decoders = new List<TokenDecoder>();
        if (spec.EscapeWhitespaces)
        {
            decoders.Add(new TokenDecoder.Replace(MetaSpace, " "));
        }

        decoders.Add(new TokenDecoder.ByteFallback());
        decoders.Add(new TokenDecoder.Fuse());
        if (spec.AddDummyPrefix)
        {
            decoders.Add(new TokenDecoder.Strip(' ', 1, 0));
        }

        var defaults = new TokenModelDefaults(
            BosToken: PieceAt(spec.BosId),
            EosToken: PieceAt(spec.EosId),
            UnkToken: pieces[spec.UnkId].Text,
            AddBos: null,
            AddEos: null);

        return new TokenModel(path, vocabulary, encoder, new Normalizer.Sequence(steps), preTokenizer: null,
            new TokenDecoder.Sequence(decoders), addedTokens, defaults);

        string? PieceAt(int id) => (uint)id < (uint)pieces.Count ? pieces[id].Text : null;
    }

    /// <summary>
    /// Every way of writing an encodable piece as two encodable pieces is a merge; its rank is the rank of the piece's
    /// score, highest first, with equal scores sharing a rank.
    /// </summary>
    private static Dictionary<ulong, BytePairEncoder.Merge> BuildMerges(List<Piece> pieces, Dictionary<string, int> encodable)
    {
        var rankOfScore = pieces
            .Where(p => p.Type is PieceType.Normal or PieceType.Unused)
            .Select(p => p.Score)
            .Distinct()
            .OrderDescending()
            .Select((score, rank) => (score, rank))
            .ToDictionary(x => x.score, x => x.rank);

        var merges = new Dictionary<ulong, BytePairEncoder.Merge>();
        var lookup = encodable.GetAlternateLookup<ReadOnlySpan<char>>();
        for (var id = 0; id < pieces.Count; id++)
        {
            var piece = pieces[id];
            if (piece.Type is not (PieceType.Normal or PieceType.Unused) || piece.Text.Length < 2)
            {
                continue;
            }

            var text = piece.Text.AsSpan();
            for (var split = 1; split < text.Length; split++)
            {
                if (char.IsLowSurrogate(text[split]))
                {
                    continue; // never cut a surrogate pair
                }

                if (lookup.TryGetValue(text[..split], out var left) && lookup.TryGetValue(text[split..], out var right))
                {
                    merges[BytePairEncoder.PairKey(left, right)] = new BytePairEncoder.Merge(rankOfScore[piece.Score], id);
                }
            }
        }

        return merges;
    }

    /// <summary>Just enough of the protobuf wire format to read a ModelProto, with bounds checked on every read.</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data, string path)
    {
        internal const int Varint = 0;
        internal const int Fixed64 = 1;
        internal const int LengthDelimited = 2;
        internal const int Fixed32 = 5;

        private readonly ReadOnlySpan<byte> _data = data;
        private readonly string _path = path;
        private int _position;

        internal bool TryReadTag(out int field, out int wireType)
        {
            field = wireType = 0;
            if (_position >= _data.Length)
            {
                return false;
            }

            var tag = ReadVarint();
            field = (int)(tag >> 3);
            wireType = (int)(tag & 7);
            if (field <= 0)
            {
                throw Corrupt($"a field number of {field}");
            }

            return true;
        }

        internal ulong ReadVarint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_position >= _data.Length)
                {
                    throw Corrupt("a varint cut off by the end of the data");
                }

                var b = _data[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    return value;
                }
            }

            throw Corrupt("a varint longer than ten bytes");
        }

        internal ReadOnlySpan<byte> ReadBytes()
        {
            var length = ReadVarint();
            if (length > (ulong)(_data.Length - _position))
            {
                throw Corrupt($"a length of {length} with {_data.Length - _position} bytes left");
            }

            var bytes = _data.Slice(_position, (int)length);
            _position += (int)length;
            return bytes;
        }

        internal string ReadString()
        {
            var bytes = ReadBytes();
            try
            {
                return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw Corrupt("a string that is not UTF-8");
            }
        }

        internal float ReadFloat()
        {
            if (_data.Length - _position < 4)
            {
                throw Corrupt("a float cut off by the end of the data");
            }

            var value = System.Buffers.Binary.BinaryPrimitives.ReadSingleLittleEndian(_data.Slice(_position, 4));
            _position += 4;
            return value;
        }

        internal void Skip(int wireType)
        {
            switch (wireType)
            {
                case Varint:
                    ReadVarint();
                    break;
                case Fixed64 or Fixed32:
                    var size = wireType == Fixed64 ? 8 : 4;
                    if (_data.Length - _position < size)
                    {
                        throw Corrupt("a fixed-size field cut off by the end of the data");
                    }

                    _position += size;
                    break;
                case LengthDelimited:
                    ReadBytes();
                    break;
                default:
                    throw Corrupt($"wire type {wireType}");
            }
        }

        private readonly InvalidDataException Corrupt(string found)
            => new($"'{_path}' is not a valid SentencePiece model (protobuf ModelProto): found {found} at byte {_position}.");
    }
}
