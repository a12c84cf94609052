using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Microsoft.ML.LabelTuning.Reporting;

namespace Microsoft.ML.LabelTuning.Tests.Reporting;

[TestClass]
public sealed class ChartTests
{
    [TestMethod]
    public void Crc32MatchesTheStandardCheckValue()
    {
        Assert.AreEqual(0xCBF43926u, PngEncoder.Crc32(Encoding.ASCII.GetBytes("123456789")));
        Assert.AreEqual(0xCBF43926u, PngEncoder.Crc32(Encoding.ASCII.GetBytes("6789"), PngEncoder.Crc32(Encoding.ASCII.GetBytes("12345"))), "CRCs chain.");
    }

    [TestMethod]
    public void ThePngHoldsValidChunksAndTheExactPixels()
    {
        var rgb = new byte[3 * 2 * 3];
        for (var i = 0; i < rgb.Length; i++)
        {
            rgb[i] = (byte)(i * 13);
        }

        var png = PngEncoder.Encode(3, 2, rgb);
        var (width, height, pixels) = Decode(png);
        Assert.AreEqual(3, width);
        Assert.AreEqual(2, height);
        CollectionAssert.AreEqual(rgb, pixels);
        Assert.ThrowsExactly<ArgumentException>(() => PngEncoder.Encode(3, 2, new byte[5]));
    }

    [TestMethod]
    public void ALineChartDrawsEachSeriesInItsColour()
    {
        var x = Enumerable.Range(0, 50).Select(i => (double)i * 1000).ToArray();
        var chart = new LineChart { Title = "Loss (nats)", XLabel = "tokens", YLabel = "loss", Width = 640, Height = 400 }
            .AddSeries("train", x, x.Select(v => 9 - (v / 10000)).ToArray())
            .AddSeries("valid", [0, 25000, 49000], [8.5, 6.0, 4.5], markers: true);

        var (width, height, pixels) = Decode(chart.ToPng());

        Assert.AreEqual(640, width);
        Assert.AreEqual(400, height);
        Assert.IsTrue(Count(pixels, Chart.Palette[0]) > 200, "The first series is drawn in the first palette colour.");
        Assert.IsTrue(Count(pixels, Chart.Palette[1]) > 100, "The second series is drawn in the second palette colour.");
        Assert.IsTrue(Count(pixels, new ChartColor(34, 34, 34)) > 500, "Axes and labels are drawn in ink.");
    }

    [TestMethod]
    public void ALogChartAndABarChartRender()
    {
        // On a log axis the last step (200 -> 90) is a third of a decade, a visible drop; on a linear axis up to 3000 it
        // is a few pixels. So the series' last segment spans several times more rows on the log chart.
        // (No legend, so the series colour is only on the line.)
        var log = new LineChart { LogY = true, YLabel = "perplexity" }.AddSeries(string.Empty, [1, 2, 3, 4], [3000, 800, 200, 90]);
        var linear = new LineChart { YLabel = "perplexity" }.AddSeries(string.Empty, [1, 2, 3, 4], [3000, 800, 200, 90]);
        var logRows = LastSegmentRows(Decode(log.ToPng()), Chart.Palette[0]);
        var linearRows = LastSegmentRows(Decode(linear.ToPng()), Chart.Palette[0]);
        Assert.IsTrue(logRows > 3 * linearRows, $"the last segment spans {logRows} rows on the log axis and {linearRows} on the linear one");

        var bars = new BarChart(["LS-LLaMA (LoRA)", "ML.NET SDCA"]) { Title = "IMDB accuracy", ValueFormat = "P1", ReferenceValue = 0.5, ReferenceLabel = "chance" }
            .AddSeries("accuracy", [0.7, 0.82]);
        var (_, _, pixels) = Decode(bars.ToPng());
        Assert.IsTrue(Count(pixels, Chart.Palette[0]) > 1000 && Count(pixels, Chart.Palette[1]) > 1000, "Each single-series bar takes its own colour.");

        // NaN leaves a gap: the second series draws one bar instead of two, and the first series is untouched.
        var grouped = Decode(new BarChart(["imdb", "spam"]).AddSeries("a", [0.7, 0.9]).AddSeries("b", [0.8, double.NaN]).ToPng()).Pixels;
        var full = Decode(new BarChart(["imdb", "spam"]).AddSeries("a", [0.7, 0.9]).AddSeries("b", [0.8, 0.8]).ToPng()).Pixels;
        Assert.IsTrue(Count(grouped, Chart.Palette[1]) > 100, "the series' finite value is drawn");
        Assert.IsTrue(Count(grouped, Chart.Palette[1]) * 3 < Count(full, Chart.Palette[1]) * 2, "the NaN value draws no bar");
        Assert.AreEqual(Count(full, Chart.Palette[0]), Count(grouped, Chart.Palette[0]), "the other series is drawn the same");
        Assert.ThrowsExactly<ArgumentException>(() => new BarChart(["one"]).AddSeries("x", [1, 2]));
        Assert.ThrowsExactly<InvalidOperationException>(() => new LineChart().AddSeries("empty", [], []).ToPng());
    }

    [TestMethod]
    public void TicksAreRoundAndLabelsAreShort()
    {
        var (start, step, count) = Chart.NiceTicks(0.3, 9.2);
        Assert.AreEqual(0, start);
        Assert.AreEqual(2, step);
        Assert.AreEqual(6, count);
        Assert.AreEqual("48M", Chart.FormatTick(48_000_000, 10_000_000));
        Assert.AreEqual("2.5M", Chart.FormatTick(2_500_000, 500_000));
        Assert.AreEqual("20k", Chart.FormatTick(20_000, 5_000));
        Assert.AreEqual("0.25", Chart.FormatTick(0.25, 0.05));
        Assert.AreEqual("0.0", Chart.FormatTick(-1e-17, 0.1));
        Assert.AreEqual("0", Chart.FormatTick(0, 10_000));
    }

    [TestMethod]
    public void EveryPrintableAsciiCharacterHasAGlyph()
    {
        for (var c = ' '; c <= '~'; c++)
        {
            var glyph = BitmapFont.Glyph(c);
            Assert.AreEqual(8, glyph.GetLength(0));
            Assert.AreEqual(5, glyph.GetLength(1));
            if (c != ' ' && c != '?')
            {
                Assert.AreNotSame(BitmapFont.Glyph('?'), glyph, $"'{c}' falls back to '?'.");
            }
        }
    }

    /// <summary>The rows that hold <paramref name="color"/> in the last third of the columns where it appears.</summary>
    private static int LastSegmentRows((int Width, int Height, byte[] Pixels) image, ChartColor color)
    {
        bool Is(int x, int y)
        {
            var i = 3 * ((y * image.Width) + x);
            return image.Pixels[i] == color.R && image.Pixels[i + 1] == color.G && image.Pixels[i + 2] == color.B;
        }

        var columns = Enumerable.Range(0, image.Width).Where(x => Enumerable.Range(0, image.Height).Any(y => Is(x, y))).ToList();
        Assert.IsTrue(columns.Count > 0, "the series is drawn");
        var from = columns[^1] - ((columns[^1] - columns[0]) / 3);
        var rows = Enumerable.Range(0, image.Height).Where(y => Enumerable.Range(from, columns[^1] - from + 1).Any(x => Is(x, y))).ToList();
        return rows[^1] - rows[0] + 1;
    }

    private static int Count(byte[] rgb, ChartColor color)
    {
        var n = 0;
        for (var i = 0; i < rgb.Length; i += 3)
        {
            if (rgb[i] == color.R && rgb[i + 1] == color.G && rgb[i + 2] == color.B)
            {
                n++;
            }
        }

        return n;
    }

    /// <summary>A strict reader for what PngEncoder writes: checks the signature, every CRC, and unfilters rows.</summary>
    private static (int Width, int Height, byte[] Pixels) Decode(byte[] png)
    {
        CollectionAssert.AreEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, png.Take(8).ToArray(), "PNG signature");
        var offset = 8;
        int width = 0, height = 0;
        using var idat = new MemoryStream();
        var types = new List<string>();
        while (offset < png.Length)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset));
            var type = Encoding.ASCII.GetString(png, offset + 4, 4);
            var data = png.AsSpan(offset + 8, length);
            var crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset + 8 + length));
            Assert.AreEqual(PngEncoder.Crc32(png.AsSpan(offset + 4, 4 + length)), crc, $"CRC of chunk {type}");
            types.Add(type);
            if (type == "IHDR")
            {
                width = (int)BinaryPrimitives.ReadUInt32BigEndian(data);
                height = (int)BinaryPrimitives.ReadUInt32BigEndian(data[4..]);
                Assert.AreEqual(8, data[8], "bit depth");
                Assert.AreEqual(2, data[9], "colour type RGB");
            }
            else if (type == "IDAT")
            {
                idat.Write(data);
            }

            offset += 12 + length;
        }

        CollectionAssert.AreEqual(new[] { "IHDR", "IDAT", "IEND" }, types);
        idat.Position = 0;
        using var zlib = new ZLibStream(idat, CompressionMode.Decompress);
        using var raw = new MemoryStream();
        zlib.CopyTo(raw);
        var bytes = raw.ToArray();
        var stride = width * 3;
        Assert.AreEqual(height * (stride + 1), bytes.Length);
        var pixels = new byte[height * stride];
        for (var y = 0; y < height; y++)
        {
            Assert.AreEqual(0, bytes[y * (stride + 1)], "filter type");
            Array.Copy(bytes, (y * (stride + 1)) + 1, pixels, y * stride, stride);
        }

        return (width, height, pixels);
    }
}
