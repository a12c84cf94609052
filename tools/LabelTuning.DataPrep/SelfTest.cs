using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using LabelTuning.DataPrep.Austen;
using LabelTuning.DataPrep.R;

namespace LabelTuning.DataPrep;

/// <summary>
/// `selftest`: checks the R decoder on hand-built XDR bytes (so each SEXP rule is pinned) and on the real janeaustenr
/// files, plus the NER tokenizer and gazetteer on fixed sentences. Prints one line per check; returns 1 on any failure.
/// </summary>
internal static class SelfTest
{
    private static int _failures;

    public static int Run(RepoPaths paths)
    {
        _failures = 0;
        Check("synthetic list: factor, ALTREP 1:3, reals, logicals, NA, UTF-8", SyntheticList);
        Check("pairlist with tags and a reused symbol", SyntheticPairList);
        Check("lazy-load record: 4-byte length + zlib", LazyLoadRecord);
        Check("bad header is an InvalidDataException that names the source", BadHeader);
        Check("truncated stream is an InvalidDataException", Truncated);
        Check("janeaustenr: six novels, 73,422 lines, known openings", () => RealJaneAusten(paths));
        Check("NER tokenizer and silver tags on fixed sentences", NerRules);
        Check("passages: 3-5 lines, 40-120 words, never across a heading", Passages);
        Console.WriteLine(_failures == 0 ? "selftest: all checks passed" : $"selftest: {_failures} check(s) FAILED");
        return _failures == 0 ? 0 : 1;
    }

    private static void Check(string name, Action test)
    {
        try
        {
            test();
            Console.WriteLine($"  ok    {name}");
        }
        catch (Exception error) when (error is not OutOfMemoryException)
        {
            _failures++;
            Console.WriteLine($"  FAIL  {name}: {error.GetType().Name}: {error.Message}");
        }
    }

    private static void Expect(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvalidOperationException(message);
        }
    }

    private static void Equal<T>(T expected, T actual, string what)
        => Expect(EqualityComparer<T>.Default.Equals(expected, actual), $"{what}: expected {expected}, found {actual}");

    /// <summary>Writes R's XDR serialization by hand.</summary>
    private sealed class Xdr
    {
        private readonly MemoryStream _stream = new();

        public Xdr Header(int version = 3)
        {
            _stream.Write("X\n"u8);
            Int(version).Int(0x040201).Int(0x030500);
            if (version == 3)
            {
                Int(5);
                _stream.Write("UTF-8"u8);
            }

            return this;
        }

        public Xdr Int(int value)
        {
            Span<byte> buffer = stackalloc byte[4];
            BinaryPrimitives.WriteInt32BigEndian(buffer, value);
            _stream.Write(buffer);
            return this;
        }

        public Xdr Double(double value)
        {
            Span<byte> buffer = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleBigEndian(buffer, value);
            _stream.Write(buffer);
            return this;
        }

        public Xdr Flags(int type, bool attributes = false, bool tag = false, bool obj = false, int levels = 0)
            => Int(type | (obj ? 1 << 8 : 0) | (attributes ? 1 << 9 : 0) | (tag ? 1 << 10 : 0) | (levels << 12));

        public Xdr Chars(string? value, int levels = 64)
        {
            Flags(9, levels: levels);
            if (value is null)
            {
                return Int(-1);
            }

            var bytes = levels == 4 ? Encoding.Latin1.GetBytes(value) : Encoding.UTF8.GetBytes(value);
            Int(bytes.Length);
            _stream.Write(bytes);
            return this;
        }

        public Xdr Symbol(string name) => Flags(1).Chars(name);

        public Xdr Ref(int index) => Int((index << 8) | 255);

        public Xdr Nil() => Int(254);

        public byte[] ToArray() => _stream.ToArray();
    }

    private static void SyntheticList()
    {
        // list(f = factor(c("x", "y", "x")), i = 1:3 as compact_intseq, r = c(1.5, NA), l = c(TRUE, NA, FALSE), s = c("é", NA))
        var xdr = new Xdr().Header();
        xdr.Flags(19, attributes: true).Int(5);
        // factor: INTSXP with attributes levels, class
        xdr.Flags(13, attributes: true, obj: true).Int(3).Int(1).Int(2).Int(1);
        xdr.Flags(2, attributes: false, tag: true).Symbol("levels").Flags(16).Int(2).Chars("x").Chars("y");
        xdr.Flags(2, tag: true).Symbol("class").Flags(16).Int(1).Chars("factor").Nil();
        // ALTREP compact_intseq 1:3: info pairlist(class sym, package sym, type), state c(n, start, step), attr NULL
        xdr.Int(238);
        xdr.Flags(2).Symbol("compact_intseq").Flags(2).Symbol("base").Flags(2).Flags(13).Int(1).Int(13).Nil();
        xdr.Flags(14).Int(3).Double(3).Double(1).Double(1);
        xdr.Nil();
        xdr.Flags(14).Int(2).Double(1.5).Double(double.NaN);
        xdr.Flags(10).Int(3).Int(1).Int(int.MinValue).Int(0);
        xdr.Flags(16).Int(2).Chars("é", levels: 8).Chars(null);
        xdr.Flags(2, tag: true).Symbol("names").Flags(16).Int(5).Chars("f").Chars("i").Chars("r").Chars("l").Chars("s").Nil();

        var value = RDeserializer.Deserialize(xdr.ToArray(), "synthetic");
        Expect(value is RList, $"expected a list, found {value}");
        var list = (RList)value;
        Equal("f,i,r,l,s", string.Join(",", list.Names!), "names");
        var factor = (RIntVector)list["f"]!;
        Expect(factor.IsFactor, "f should be a factor");
        Equal("x,y,x", string.Join(",", factor.FactorLabels()), "factor labels");
        Equal("1,2,3", string.Join(",", ((RIntVector)list["i"]!).Values), "compact_intseq");
        var reals = ((RRealVector)list["r"]!).Values;
        Expect(reals[0] == 1.5 && double.IsNaN(reals[1]), "reals");
        Equal("1,-2147483648,0", string.Join(",", ((RLogicalVector)list["l"]!).Values), "logicals");
        var strings = ((RStringVector)list["s"]!).Values;
        Expect(strings[0] == "é" && strings[1] is null, $"strings: found {strings[0]}, {strings[1]}");
    }

    private static void SyntheticPairList()
    {
        // pairlist(a = 1L, b = "z", a = 2L): the third tag is a REFSXP to the first symbol
        var xdr = new Xdr().Header(version: 2);
        xdr.Flags(2, tag: true).Symbol("a").Flags(13).Int(1).Int(1);
        xdr.Flags(2, tag: true).Symbol("b").Flags(16).Int(1).Chars("z", levels: 4);
        xdr.Flags(2, tag: true).Ref(1).Flags(13).Int(1).Int(2);
        xdr.Nil();
        var value = (RPairList)RDeserializer.Deserialize(xdr.ToArray(), "pairlist");
        Equal("a,b,a", string.Join(",", value.Nodes.Select(n => n.Tag)), "tags");
        Equal(2, ((RIntVector)value.Nodes[2].Value).Values[0], "third value");
        Equal("z", ((RStringVector)value.Nodes[1].Value).Values[0], "latin-1 string");
    }

    private static void LazyLoadRecord()
    {
        var payload = new Xdr().Header().Flags(16).Int(1).Chars("hello").ToArray();
        using var compressed = new MemoryStream();
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(length, payload.Length);
        compressed.Write(length);
        using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            zlib.Write(payload);
        }

        var bytes = RLazyLoadDb.Decompress(compressed.ToArray(), 1, "record");
        Equal("hello", ((RStringVector)RDeserializer.Deserialize(bytes, "record")).Values[0], "record value");

        var wrongLength = compressed.ToArray();
        wrongLength[3]++;
        ExpectThrows<InvalidDataException>(() => RLazyLoadDb.Decompress(wrongLength, 1, "record"), "record");
    }

    private static void BadHeader()
        => ExpectThrows<InvalidDataException>(() => RDeserializer.Deserialize("A\n1\n"u8.ToArray(), "ascii.rds"), "ascii.rds");

    private static void Truncated()
    {
        var bytes = new Xdr().Header().Flags(13).Int(3).Int(1).ToArray();
        ExpectThrows<InvalidDataException>(() => RDeserializer.Deserialize(bytes, "short"), "short");
    }

    private static void ExpectThrows<T>(Action action, string mustMention)
        where T : Exception
    {
        try
        {
            action();
        }
        catch (T error)
        {
            Expect(error.Message.Contains(mustMention, StringComparison.Ordinal), $"the error should name '{mustMention}': {error.Message}");
            return;
        }

        throw new InvalidOperationException($"expected {typeof(T).Name}, but nothing was thrown");
    }

    private static void RealJaneAusten(RepoPaths paths)
    {
        var novels = AustenNovels.Load(paths);
        Equal(6, novels.Count, "novels");
        Equal(73422, novels.Sum(n => n.Lines.Length), "lines in austen_books()");
        string[] openings = ["SENSE AND SENSIBILITY", "PRIDE AND PREJUDICE", "MANSFIELD PARK", "EMMA", "NORTHANGER ABBEY", "Persuasion"];
        for (int i = 0; i < novels.Count; i++)
        {
            Equal(openings[i], novels[i].Lines.First(l => l.Trim().Length > 0).Trim(), novels[i].Variable + " opening");
        }

        var pride = novels.Single(n => n.Variable == "prideprejudice").Lines;
        Expect(pride.Contains("It is a truth universally acknowledged, that a single man in possession"), "Pride & Prejudice's first sentence is missing");
        var db = RLazyLoadDb.Open(paths.RequireCached(Path.Combine("janeaustenr", "Rdata.rdx")));
        Equal("emma,mansfieldpark,northangerabbey,persuasion,prideprejudice,sensesensibility", string.Join(",", db.Names), "index order");
    }

    private static void NerRules()
    {
        var gazetteer = AustenGazetteer.Create();
        var cases = new (string Sentence, string Tags)[]
        {
            ("\"My dear Mr. Bennet,\" said his lady, \"Netherfield Park is let at last.\"", "O O O O B-PER O O O O O O O B-LOC I-LOC O O O O O O"),
            ("Lady Catherine de Bourgh came from Rosings to London.", "O B-PER I-PER I-PER O O B-LOC O B-LOC O"),
            ("Emma Woodhouse's friend Harriet walked to Harley Street with Mrs Long.", "B-PER I-PER O O B-PER O O B-LOC I-LOC O O B-PER O"),
            ("Long before the Bateses came, the Hill was quiet.", "O O O B-PER O O O O O O O"),
        };
        foreach (var (sentence, expected) in cases)
        {
            var tokens = AustenNer.Sentences(sentence).Single();
            string tags = string.Join(' ', gazetteer.Tag(tokens));
            Expect(tags == expected, $"\"{sentence}\"\n      tokens   {string.Join(' ', tokens)}\n      expected {expected}\n      found    {tags}");
        }

        var split = AustenNer.Sentences("\"Oh!\" said she. \"It is.\" He went to St. James's. Mr. Darcy came.");
        Equal(4, split.Count, "sentences in a paragraph with quotes and abbreviations");
    }

    private static void Passages()
    {
        var lines = new List<string> { "CHAPTER I", "" };
        for (int i = 0; i < 12; i++)
        {
            lines.Add(string.Join(' ', Enumerable.Repeat("word", 11)) + ".");
        }

        lines.AddRange(["", "CHAPTER II", ""]);
        lines.AddRange(Enumerable.Repeat("short line here.", 2));
        var novel = new Novel("test", "Test", lines.ToArray());
        var chunk = new AustenBuilder.Chunk(novel, 0, AustenBuilder.Paragraphs(novel.Lines), false);
        var passages = AustenBuilder.Passages(chunk);
        Equal(3, passages.Count, "passages from 12 lines of 11 words");
        Expect(passages.All(p => TextClean.CountWords(p.Text) is >= 40 and <= 120), "passage word counts");
        Expect(passages.All(p => !p.Text.Contains("CHAPTER", StringComparison.Ordinal)), "a passage contains a heading");
    }
}
