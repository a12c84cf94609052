using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Reporting;
using Microsoft.ML.LabelTuning.Sweep;
using SkiaSharp;

namespace Microsoft.ML.LabelTuning.Tests.Reporting;

/// <summary>
/// The charts render through ScottPlot; these tests decode the PNG with SkiaSharp and look at the pixels: the series
/// colours, ink in the title band, and that text in other scripts is drawn with glyphs, not left blank.
/// </summary>
[TestClass]
public sealed class ChartTests
{
    private const int Width = 640;
    private const int Height = 400;

    /// <summary>The rows the title takes (ScottPlot draws it at the top, above the data area).</summary>
    private const int TitleBand = 40;

    [TestMethod]
    public void TheTrainingCurveDrawsEachSeriesInItsColourUnderItsTitle()
    {
        var x = Enumerable.Range(0, 50).Select(i => (double)i).ToArray();
        var chart = new LineChart { Title = "LS-LLaMA on IMDB: training loss", XLabel = "optimizer step", YLabel = "cross-entropy", Width = Width, Height = Height, YMin = 0 }
            .AddSeries("loss per step", x, x.Select(v => 0.7 - (v / 100) + (0.05 * Math.Sin(v))).ToArray())
            .AddSeries("mean of 5 steps", x, x.Select(v => 0.7 - (v / 100)).ToArray());
        var image = Decode(chart.ToPng());
        Assert.AreEqual((Width, Height), (image.Width, image.Height));
        Assert.IsTrue(Count(image, Chart.Palette[0]) > 200, $"the first series is drawn in the first palette colour ({Count(image, Chart.Palette[0])} pixels)");
        Assert.IsTrue(Count(image, Chart.Palette[1]) > 200, $"the second series is drawn in the second palette colour ({Count(image, Chart.Palette[1])} pixels)");
        AssertTitleInk(chart, "LS-LLaMA on IMDB: training loss");
    }

    [TestMethod]
    public void ThePretrainingLearningCurveTakesLargeTokenCountsAndMarkers()
    {
        var tokens = Enumerable.Range(1, 200).Select(i => i * 250_000.0).ToArray();
        var chart = new LineChart { Title = "labeltuning-default pretraining", XLabel = "training tokens", YLabel = "loss (nats per token)", Width = Width, Height = Height }
            .AddSeries("train loss", tokens, tokens.Select(t => 3 + (7 / Math.Log10(t))).ToArray())
            .AddSeries("validation loss", tokens.Where((_, i) => i % 20 == 0).ToArray(), tokens.Where((_, i) => i % 20 == 0).Select(t => 3.1 + (7 / Math.Log10(t))).ToArray(), markers: true);
        var image = Decode(chart.ToPng());
        Assert.IsTrue(Count(image, Chart.Palette[1]) > 100, "the validation markers are drawn");
        AssertTitleInk(chart, "labeltuning-default pretraining");
        Assert.AreEqual("48M", Chart.FormatTick(48_000_000));
        Assert.AreEqual("2.5M", Chart.FormatTick(2_500_000));
        Assert.AreEqual("20k", Chart.FormatTick(20_000));
        Assert.AreEqual("0.25", Chart.FormatTick(0.25));
        Assert.AreEqual("0", Chart.FormatTick(0));
    }

    [TestMethod]
    public void ALogAxisSpreadsTheSmallValues()
    {
        // On a log axis the last step (200 -> 90) is a third of a decade, a visible drop; on a linear axis up to 3000 it
        // is a few pixels. So the series' last segment spans several times more rows on the log chart.
        var log = new LineChart { LogY = true, YLabel = "perplexity", Width = Width, Height = Height }.AddSeries(string.Empty, [1, 2, 3, 4], [3000, 800, 200, 90]);
        var linear = new LineChart { YLabel = "perplexity", Width = Width, Height = Height }.AddSeries(string.Empty, [1, 2, 3, 4], [3000, 800, 200, 90]);
        var logRows = LastSegmentRows(Decode(log.ToPng()), Chart.Palette[0]);
        var linearRows = LastSegmentRows(Decode(linear.ToPng()), Chart.Palette[0]);
        Assert.IsTrue(logRows > 3 * linearRows, $"the last segment spans {logRows} rows on the log axis and {linearRows} on the linear one");
    }

    [TestMethod]
    public void ALogXAxisPutsTheLearningCurvesSizesAtEqualSteps()
    {
        // y = x over x in [32, 1024]: on a log x axis the curve is convex, so at the middle column of the series (x = 181)
        // it is only 15% of its way up; on a linear x axis it is half way up.
        double[] sizes = [32, 64, 128, 256, 512, 1024];
        var log = new LineChart { LogX = true, Width = Width, Height = Height }.AddSeries(string.Empty, sizes, sizes);
        var linear = new LineChart { Width = Width, Height = Height }.AddSeries(string.Empty, sizes, sizes);
        var logHeight = MidColumnHeight(Decode(log.ToPng()), Chart.Palette[0]);
        var linearHeight = MidColumnHeight(Decode(linear.ToPng()), Chart.Palette[0]);
        Assert.IsTrue(logHeight < 0.3, $"on the log x axis the series is {logHeight:P0} of its way up at its middle column");
        Assert.IsTrue(linearHeight > 0.4, $"on the linear x axis the series is {linearHeight:P0} of its way up at its middle column");
    }

    [TestMethod]
    public void TheResultsChartDrawsOneBarPerValueAndLeavesAGapForNaN()
    {
        var bars = new BarChart(["LS-LLaMA (LoRA)", "ML.NET SDCA"]) { Title = "IMDB accuracy", ValueFormat = "P1", ReferenceValue = 0.5, ReferenceLabel = "chance", YMin = 0, YMax = 1, Width = Width, Height = Height }
            .AddSeries("accuracy", [0.7, 0.82]);
        var image = Decode(bars.ToPng());
        Assert.IsTrue(Count(image, Chart.Palette[0]) > 5000 && Count(image, Chart.Palette[1]) > 5000, "each single-series bar takes its own colour");
        Assert.IsTrue(Count(image, Chart.Palette[1]) > Count(image, Chart.Palette[0]), "the taller bar (0.82) covers more pixels than the shorter (0.7)");
        AssertTitleInk(bars, "IMDB accuracy");

        // NaN leaves a gap: the second series draws one bar instead of two.
        var grouped = Decode(new BarChart(["imdb", "spam"]) { YMin = 0, YMax = 1 }.AddSeries("a", [0.7, 0.9]).AddSeries("b", [0.8, double.NaN]).ToPng());
        var full = Decode(new BarChart(["imdb", "spam"]) { YMin = 0, YMax = 1 }.AddSeries("a", [0.7, 0.9]).AddSeries("b", [0.8, 0.8]).ToPng());
        Assert.IsTrue(Count(grouped, Chart.Palette[1]) > 1000, "the series' finite value is drawn");
        Assert.IsTrue(Count(grouped, Chart.Palette[1]) * 3 < Count(full, Chart.Palette[1]) * 2, "the NaN value draws no bar");
        Assert.ThrowsExactly<ArgumentException>(() => new BarChart(["one"]).AddSeries("x", [1, 2]));
        Assert.ThrowsExactly<InvalidOperationException>(() => new BarChart(["one"]).ToPng());
        Assert.ThrowsExactly<InvalidOperationException>(() => new LineChart().AddSeries("empty", [], []).ToPng());
        Assert.ThrowsExactly<InvalidOperationException>(() => new LineChart { Width = 8 }.AddSeries("a", [1], [1]).ToPng());
    }

    [TestMethod]
    public void TheSweepLeaderboardPlotsOneSeriesPerMethod()
    {
        TrialResult Trial(int id, TuningMethod method, string name, double metric, double seconds) => new()
        {
            Id = id, ConfigurationId = id, Method = method, MethodName = name, Status = TrialStatus.Completed, Metric = metric,
            TrainingTime = TimeSpan.FromSeconds(seconds),
        };

        var leaderboard = new SweepLeaderboard(
            [Trial(1, TuningMethod.LabelSupervised, "LS-LLaMA", 0.8, 10), Trial(2, TuningMethod.LabelSupervised, "LS-LLaMA", 0.9, 30), Trial(3, TuningMethod.PromptTuning, "Prompt tuning", 0.6, 20)],
            LabelTuningMetric.MacroAccuracy);
        var chart = leaderboard.ToChart();
        chart.Width = Width;
        chart.Height = Height;
        var image = Decode(chart.ToPng());
        Assert.IsTrue(Count(image, Chart.Palette[0]) > 50, "the first method (LS-LLaMA) is drawn");
        Assert.IsTrue(Count(image, Chart.Palette[1]) > 20, "the second method (Prompt tuning) is drawn");
        AssertTitleInk(chart, chart.Title);
    }

    [TestMethod]
    public void LabelsInOtherScriptsAreDrawnWithGlyphs()
    {
        foreach (var text in new[] { "Émile — naïve", "東京" })
        {
            var name = ChartFonts.Choose([text]);
            Assert.IsNotNull(name, "a font file is found (./build.sh installs fonts-dejavu-core and fonts-wqy-microhei)");
            var font = ChartFonts.Available.Single(f => f.Name == name);
            var missing = text.EnumerateRunes().Where(r => !System.Text.Rune.IsWhiteSpace(r) && !font.Has(r)).ToList();
            Assert.IsEmpty(missing, $"'{font.Path}' has glyphs for every character of '{text}' (missing: {string.Join(" ", missing)}); install fonts-wqy-microhei");
        }

        // Drawn glyphs depend on the characters; boxes for missing glyphs (or blank text) would not.
        static byte[] Render(string title) => new BarChart(["東京", "Émile"]) { Title = title, Width = Width, Height = Height }.AddSeries("a", [1, 2]).ToPng();
        var tokyo = Decode(Render("東京"));
        var kyoto = Decode(Render("京東"));
        Assert.IsTrue(TitleInk(tokyo) > 50, "the CJK title leaves ink");
        Assert.IsTrue(Differ(tokyo, kyoto, 0, TitleBand) > 50, "two CJK titles with the same characters in another order render differently");
        var accented = Decode(Render("Émile — naïve"));
        var plain = Decode(Render("Emile - naive"));
        Assert.IsTrue(Differ(accented, plain, 0, TitleBand) > 20, "accents and the dash are drawn");
    }

    /// <summary>The title leaves dark pixels above the plot's frame, where an empty title leaves none.</summary>
    private static void AssertTitleInk(Chart chart, string title)
    {
        chart.Title = title;
        var with = TitleInk(Decode(chart.ToPng()));
        chart.Title = string.Empty;
        var without = TitleInk(Decode(chart.ToPng()));
        chart.Title = title;
        Assert.IsTrue(with > 100 && without < 20, $"the title '{title}' draws ink above the plot ({with} dark pixels; {without} without a title)");
    }

    /// <summary>Dark pixels in the middle half of the columns, above the top line of the plot's frame.</summary>
    private static int TitleInk(SKBitmap image)
    {
        var frame = Enumerable.Range(0, image.Height).First(y => Ink(image, y, y + 1) > image.Width * 0.4);
        var n = 0;
        for (var y = 0; y < frame - 3; y++)
        {
            for (var x = image.Width / 4; x < image.Width * 3 / 4; x++)
            {
                var p = image.GetPixel(x, y);
                if (p.Red + p.Green + p.Blue < 3 * 128)
                {
                    n++;
                }
            }
        }

        return n;
    }

    private static SKBitmap Decode(byte[] png)
    {
        CollectionAssert.AreEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, png.Take(8).ToArray(), "PNG signature");
        var bitmap = SKBitmap.Decode(png);
        Assert.IsNotNull(bitmap, "the PNG decodes");
        return bitmap;
    }

    private static int Count(SKBitmap image, ChartColor color)
    {
        var n = 0;
        foreach (var pixel in image.Pixels)
        {
            if (Math.Abs(pixel.Red - color.R) + Math.Abs(pixel.Green - color.G) + Math.Abs(pixel.Blue - color.B) <= 12)
            {
                n++;
            }
        }

        return n;
    }

    /// <summary>Pixels darker than mid-grey in rows [<paramref name="top"/>, <paramref name="bottom"/>).</summary>
    private static int Ink(SKBitmap image, int top, int bottom)
    {
        var n = 0;
        for (var y = top; y < bottom; y++)
        {
            for (var x = 0; x < image.Width; x++)
            {
                var p = image.GetPixel(x, y);
                if (p.Red + p.Green + p.Blue < 3 * 128)
                {
                    n++;
                }
            }
        }

        return n;
    }

    private static int Differ(SKBitmap a, SKBitmap b, int top, int bottom)
    {
        var n = 0;
        for (var y = top; y < bottom; y++)
        {
            for (var x = 0; x < a.Width; x++)
            {
                if (a.GetPixel(x, y) != b.GetPixel(x, y))
                {
                    n++;
                }
            }
        }

        return n;
    }

    /// <summary>How far up its own row range (0 bottom, 1 top) the series in <paramref name="color"/> is at its middle column.</summary>
    private static double MidColumnHeight(SKBitmap image, ChartColor color)
    {
        bool Is(int x, int y)
        {
            var p = image.GetPixel(x, y);
            return Math.Abs(p.Red - color.R) + Math.Abs(p.Green - color.G) + Math.Abs(p.Blue - color.B) <= 12;
        }

        var pixels = Enumerable.Range(0, image.Width).SelectMany(x => Enumerable.Range(0, image.Height).Where(y => Is(x, y)).Select(y => (x, y))).ToList();
        Assert.IsNotEmpty(pixels, "the series is drawn");
        var (left, right) = (pixels.Min(p => p.x), pixels.Max(p => p.x));
        var (top, bottom) = (pixels.Min(p => p.y), pixels.Max(p => p.y));
        var middle = pixels.Where(p => p.x == (left + right) / 2).Average(p => p.y);
        return (bottom - middle) / (bottom - top);
    }

    /// <summary>The rows that hold <paramref name="color"/> in the last third of the columns where it appears.</summary>
    private static int LastSegmentRows(SKBitmap image, ChartColor color)
    {
        bool Is(int x, int y)
        {
            var p = image.GetPixel(x, y);
            return Math.Abs(p.Red - color.R) + Math.Abs(p.Green - color.G) + Math.Abs(p.Blue - color.B) <= 12;
        }

        var columns = Enumerable.Range(0, image.Width).Where(x => Enumerable.Range(0, image.Height).Any(y => Is(x, y))).ToList();
        Assert.IsNotEmpty(columns, "the series is drawn");
        var from = columns[^1] - ((columns[^1] - columns[0]) / 3);
        var rows = Enumerable.Range(0, image.Height).Where(y => Enumerable.Range(from, columns[^1] - from + 1).Any(x => Is(x, y))).ToList();
        return rows[^1] - rows[0] + 1;
    }
}
