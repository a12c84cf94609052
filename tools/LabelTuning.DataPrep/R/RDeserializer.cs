using System.Buffers.Binary;
using System.Text;

namespace LabelTuning.DataPrep.R;

/// <summary>
/// Reads R's XDR serialization format (what serialize(), saveRDS() and lazy-load databases write), versions 2 and 3.
/// Layout of an item: a 32-bit big-endian flags word (type in bits 0-7, "is object" bit 8, "has attributes" bit 9,
/// "has tag" bit 10, the gp levels in bits 12-27), then a body that depends on the type; vectors carry their
/// attributes, as a pairlist, after their elements.
/// </summary>
internal sealed class RDeserializer
{
    // SEXP types (Rinternals.h) and the pseudo-types serialize.c writes.
    private const int NilSxp = 0;
    private const int SymSxp = 1;
    private const int ListSxp = 2;
    private const int CloSxp = 3;
    private const int EnvSxp = 4;
    private const int PromSxp = 5;
    private const int LangSxp = 6;
    private const int SpecialSxp = 7;
    private const int BuiltinSxp = 8;
    private const int CharSxp = 9;
    private const int LglSxp = 10;
    private const int IntSxp = 13;
    private const int RealSxp = 14;
    private const int CplxSxp = 15;
    private const int StrSxp = 16;
    private const int DotSxp = 17;
    private const int VecSxp = 19;
    private const int ExprSxp = 20;
    private const int BcodeSxp = 21;
    private const int ExtptrSxp = 22;
    private const int WeakrefSxp = 23;
    private const int RawSxp = 24;
    private const int S4Sxp = 25;
    private const int AltrepSxp = 238;
    private const int AttrListSxp = 239;
    private const int AttrLangSxp = 240;
    private const int BaseEnvSxp = 241;
    private const int EmptyEnvSxp = 242;
    private const int BcRepRef = 243;
    private const int BcRepDef = 244;
    private const int GenericRefSxp = 245;
    private const int ClassRefSxp = 246;
    private const int PersistSxp = 247;
    private const int PackageSxp = 248;
    private const int NamespaceSxp = 249;
    private const int BaseNamespaceSxp = 250;
    private const int MissingArgSxp = 251;
    private const int UnboundValueSxp = 252;
    private const int GlobalEnvSxp = 253;
    private const int NilValueSxp = 254;
    private const int RefSxp = 255;

    // CHARSXP encoding bits in the gp levels.
    private const int BytesMask = 1 << 1;
    private const int Latin1Mask = 1 << 2;
    private const int Utf8Mask = 1 << 3;
    private const int AsciiMask = 1 << 6;

    private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, true);

    private readonly byte[] _data;
    private readonly string _source;
    private readonly List<RObject> _references = [];
    private int _position;
    private Encoding _nativeEncoding = StrictUtf8;

    private RDeserializer(byte[] data, string source)
    {
        _data = data;
        _source = source;
    }

    /// <summary>The serialization format version of the last stream read (2 or 3).</summary>
    public int Version { get; private set; }

    /// <summary>Reads one serialized object; <paramref name="source"/> names the data in error messages.</summary>
    public static RObject Deserialize(byte[] data, string source)
    {
        var reader = new RDeserializer(data, source);
        reader.ReadHeader();
        var result = reader.ReadItem();
        if (reader._position != data.Length)
        {
            throw new InvalidDataException(
                $"{source}: expected the serialized object to end at byte {data.Length}, but it ended at byte {reader._position}.");
        }

        return result;
    }

    private void ReadHeader()
    {
        if (_data.Length < 2)
        {
            throw Error("a 2-byte format header", $"{_data.Length} bytes");
        }

        if (_data[0] != (byte)'X' || _data[1] != (byte)'\n')
        {
            string found = _data[0] is (byte)'A' or (byte)'B' ? $"format '{(char)_data[0]}'" : $"bytes 0x{_data[0]:x2} 0x{_data[1]:x2}";
            throw Error("XDR format header \"X\\n\"", found);
        }

        _position = 2;
        Version = ReadInt();
        _ = ReadInt(); // R version that wrote it
        _ = ReadInt(); // minimal R version that can read it
        if (Version == 3)
        {
            int length = ReadInt();
            string encoding = Encoding.ASCII.GetString(ReadBytes(length));
            _nativeEncoding = encoding.Equals("UTF-8", StringComparison.OrdinalIgnoreCase) ? StrictUtf8 : Encoding.Latin1;
        }
        else if (Version != 2)
        {
            throw Error("serialization version 2 or 3", $"version {Version}");
        }
    }

    private RObject ReadItem() => ReadItem(ReadInt());

    private RObject ReadItem(int flags)
    {
        int type = flags & 0xFF;
        int levels = flags >>> 12;
        bool hasAttributes = (flags & (1 << 9)) != 0;

        switch (type)
        {
            case NilValueSxp:
                return RNull.Instance;
            case EmptyEnvSxp:
                return new RSpecial("emptyenv");
            case BaseEnvSxp:
                return new RSpecial("baseenv");
            case GlobalEnvSxp:
                return new RSpecial("globalenv");
            case UnboundValueSxp:
                return new RSpecial("unbound");
            case MissingArgSxp:
                return new RSpecial("missingarg");
            case BaseNamespaceSxp:
                return new RSpecial("basenamespace");
            case RefSxp:
                {
                    int index = flags >>> 8;
                    if (index == 0)
                    {
                        index = ReadInt();
                    }

                    if (index < 1 || index > _references.Count)
                    {
                        throw Error($"a reference to one of {_references.Count} earlier objects", $"reference {index}");
                    }

                    return _references[index - 1];
                }

            case PersistSxp:
            case PackageSxp:
            case NamespaceSxp:
                {
                    var named = new RNamedReference(type switch
                    {
                        PersistSxp => "persistent",
                        PackageSxp => "package",
                        _ => "namespace",
                    }, ReadStringVectorBody());
                    _references.Add(named);
                    return named;
                }

            case SymSxp:
                {
                    if (ReadItem() is not RChars printName)
                    {
                        throw Error("a CHARSXP print name after SYMSXP", "another type");
                    }

                    var symbol = new RSymbol(printName.Value ?? "NA");
                    _references.Add(symbol);
                    return symbol;
                }

            case EnvSxp:
                {
                    var environment = new REnvironment();
                    _references.Add(environment); // before its contents, which may refer to it
                    environment.Locked = ReadInt() != 0;
                    environment.Enclosure = ReadItem();
                    environment.Frame = ReadItem();
                    environment.HashTable = ReadItem();
                    environment.Attributes = ToAttributes(ReadItem());
                    return environment;
                }

            case ListSxp:
            case LangSxp:
            case CloSxp:
            case PromSxp:
            case DotSxp:
            case AttrLangSxp:
            case AttrListSxp:
                return ReadPairList(flags);

            case AltrepSxp:
                return ReadAltrep();

            case BcodeSxp:
            case BcRepDef:
            case BcRepRef:
            case ClassRefSxp:
            case GenericRefSxp:
                throw Error("data (vectors, lists, pairlists, environments)", $"SEXP type {type} (byte code or class reference), which this reader does not decode");
        }

        RObject result;
        switch (type)
        {
            case NilSxp:
                result = RNull.Instance;
                break;
            case ExtptrSxp:
                {
                    var pointer = new ROpaque("externalptr");
                    _references.Add(pointer);
                    _ = ReadItem(); // protected value
                    _ = ReadItem(); // tag
                    result = pointer;
                    break;
                }

            case WeakrefSxp:
                {
                    var weak = new ROpaque("weakref");
                    _references.Add(weak);
                    result = weak;
                    break;
                }

            case SpecialSxp:
            case BuiltinSxp:
                {
                    int length = ReadInt();
                    result = new ROpaque("builtin " + Encoding.ASCII.GetString(ReadBytes(length)));
                    break;
                }

            case CharSxp:
                result = ReadCharsBody(levels);
                break;
            case LglSxp:
                result = new RLogicalVector(ReadInts(ReadLength()));
                break;
            case IntSxp:
                result = new RIntVector(ReadInts(ReadLength()));
                break;
            case RealSxp:
                result = new RRealVector(ReadDoubles(ReadLength()));
                break;
            case CplxSxp:
                result = new RComplexVector(ReadDoubles(checked(2 * ReadLength())));
                break;
            case StrSxp:
                result = new RStringVector(ReadStrings(ReadLength()));
                break;
            case VecSxp:
            case ExprSxp:
                {
                    int length = ReadLength();
                    var items = new RObject[length];
                    for (int i = 0; i < length; i++)
                    {
                        items[i] = ReadItem();
                    }

                    result = new RList(items, type == ExprSxp);
                    break;
                }

            case RawSxp:
                result = new RRawVector(ReadBytes(ReadLength()));
                break;
            case S4Sxp:
                result = new ROpaque("S4");
                break;
            default:
                throw Error("a known SEXP type", $"type {type} (flags 0x{flags:x8})");
        }

        if (hasAttributes)
        {
            var attributes = ToAttributes(ReadItem());
            if (result is not RChars and not RNull)
            {
                result.Attributes = attributes;
            }
        }

        return result;
    }

    /// <summary>Reads a pairlist iteratively (a long list would otherwise recurse once per cell).</summary>
    private RObject ReadPairList(int flags)
    {
        int type = flags & 0xFF;
        string kind = type switch
        {
            ListSxp or AttrListSxp => "pairlist",
            LangSxp or AttrLangSxp => "language",
            CloSxp => "closure",
            PromSxp => "promise",
            _ => "...",
        };

        var nodes = new List<RPairListNode>();
        IReadOnlyList<KeyValuePair<string, RObject>>? firstAttributes = null;
        RObject tail;
        while (true)
        {
            bool hasAttributes = (flags & (1 << 9)) != 0 || (flags & 0xFF) is AttrLangSxp or AttrListSxp;
            bool hasTag = (flags & (1 << 10)) != 0;
            var attributes = hasAttributes ? ToAttributes(ReadItem()) : null;
            firstAttributes ??= attributes;
            string? tag = hasTag ? TagName(ReadItem()) : null;
            nodes.Add(new RPairListNode(tag, ReadItem()));

            int next = ReadInt();
            if ((next & 0xFF) != type)
            {
                tail = ReadItem(next);
                break;
            }

            flags = next;
        }

        return new RPairList(kind, nodes, tail) { Attributes = firstAttributes ?? [] };
    }

    private RObject ReadAltrep()
    {
        var info = ReadItem();
        var state = ReadItem();
        var attributes = ReadItem();
        string className = info is RPairList { Nodes.Count: > 0 } list && list.Nodes[0].Value is RSymbol symbol ? symbol.Name : "?";

        RObject result;
        if (className == "compact_intseq" && state is RRealVector { Values.Length: 3 } intSeq)
        {
            int length = checked((int)intSeq.Values[0]);
            int start = (int)intSeq.Values[1];
            int step = (int)intSeq.Values[2];
            var values = new int[length];
            for (int i = 0; i < length; i++)
            {
                values[i] = start + (i * step);
            }

            result = new RIntVector(values);
        }
        else if (className == "compact_realseq" && state is RRealVector { Values.Length: 3 } realSeq)
        {
            int length = checked((int)realSeq.Values[0]);
            var values = new double[length];
            for (int i = 0; i < length; i++)
            {
                values[i] = realSeq.Values[1] + (i * realSeq.Values[2]);
            }

            result = new RRealVector(values);
        }
        else if (className.StartsWith("wrap_", StringComparison.Ordinal) && state is RList { Items.Length: >= 1 } wrapped)
        {
            result = wrapped.Items[0];
        }
        else
        {
            throw Error("an ALTREP class this reader expands (compact_intseq, compact_realseq, wrap_*)", $"ALTREP class '{className}'");
        }

        var attributeList = ToAttributes(attributes);
        if (attributeList.Count > 0)
        {
            result.Attributes = attributeList;
        }

        return result;
    }

    private IReadOnlyList<KeyValuePair<string, RObject>> ToAttributes(RObject item)
    {
        if (item is RNull)
        {
            return [];
        }

        if (item is not RPairList { Kind: "pairlist" } list)
        {
            throw Error("attributes as a pairlist", item.TypeName);
        }

        var attributes = new List<KeyValuePair<string, RObject>>(list.Nodes.Count);
        foreach (var node in list.Nodes)
        {
            attributes.Add(new(node.Tag ?? "", node.Value));
        }

        return attributes;
    }

    private static string? TagName(RObject tag) => tag switch
    {
        RSymbol symbol => symbol.Name,
        RChars chars => chars.Value,
        RNull => null,
        _ => tag.ToString(),
    };

    private string?[] ReadStringVectorBody()
    {
        if (ReadInt() != 0)
        {
            throw Error("0 before a persistent-name string vector", "another value");
        }

        return ReadStrings(ReadInt());
    }

    private string?[] ReadStrings(int length)
    {
        var values = new string?[length];
        for (int i = 0; i < length; i++)
        {
            int flags = ReadInt();
            if ((flags & 0xFF) != CharSxp)
            {
                throw Error($"CHARSXP for element {i} of a character vector", $"type {flags & 0xFF}");
            }

            values[i] = ReadCharsBody(flags >>> 12).Value;
        }

        return values;
    }

    private RChars ReadCharsBody(int levels)
    {
        int length = ReadInt();
        if (length == -1)
        {
            return new RChars(null);
        }

        var bytes = ReadBytes(length);
        Encoding encoding = (levels & (Utf8Mask | AsciiMask)) != 0 ? StrictUtf8
            : (levels & (Latin1Mask | BytesMask)) != 0 ? Encoding.Latin1
            : _nativeEncoding;
        try
        {
            return new RChars(encoding.GetString(bytes));
        }
        catch (DecoderFallbackException)
        {
            return new RChars(Encoding.Latin1.GetString(bytes)); // "native" strings that were not UTF-8 after all
        }
    }

    private int ReadLength()
    {
        int length = ReadInt();
        if (length >= 0)
        {
            return length;
        }

        if (length != -1)
        {
            throw Error("a vector length >= -1", length.ToString());
        }

        long upper = (uint)ReadInt();
        long lower = (uint)ReadInt();
        long longLength = (upper << 32) + lower;
        throw Error("a vector shorter than 2^31 elements", $"a long vector of {longLength} elements");
    }

    private int ReadInt()
    {
        Need(4);
        int value = BinaryPrimitives.ReadInt32BigEndian(_data.AsSpan(_position, 4));
        _position += 4;
        return value;
    }

    private int[] ReadInts(int count)
    {
        Need(checked(4L * count));
        var values = new int[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = BinaryPrimitives.ReadInt32BigEndian(_data.AsSpan(_position + (4 * i), 4));
        }

        _position += 4 * count;
        return values;
    }

    private double[] ReadDoubles(int count)
    {
        Need(checked(8L * count));
        var values = new double[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = BinaryPrimitives.ReadDoubleBigEndian(_data.AsSpan(_position + (8 * i), 8));
        }

        _position += 8 * count;
        return values;
    }

    private byte[] ReadBytes(int count)
    {
        Need(count);
        var bytes = _data.AsSpan(_position, count).ToArray();
        _position += count;
        return bytes;
    }

    private void Need(long count)
    {
        if (count < 0 || _position + count > _data.Length)
        {
            throw Error($"{count} more bytes at offset {_position}", $"{_data.Length - _position} bytes left");
        }
    }

    private InvalidDataException Error(string expected, string found)
        => new($"{_source}: expected {expected}, found {found} (at byte {_position}).");
}
