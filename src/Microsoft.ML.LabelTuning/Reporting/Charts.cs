using System.Globalization;
using Microsoft.ML.LabelTuning.IO;

namespace Microsoft.ML.LabelTuning.Reporting;

/// <summary>What every chart shares: size, title, axis labels, the y range, and PNG output.</summary>
public abstract class Chart
{
    private protected const int Scale = 2;
    private protected static readonly ChartColor Ink = new(34, 34, 34);
    private protected static readonly ChartColor Grid = new(225, 225, 225);
    private protected static readonly ChartColor Muted = new(110, 110, 110);

    /// <summary>Gets the palette series take in order (Tableau 10).</summary>
    public static IReadOnlyList<ChartColor> Palette { get; } =
        new[] { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" }
            .Select(ChartColor.Parse).ToArray();

    /// <summary>Gets or sets the title drawn above the plot. Default empty.</summary>
    public string Title { get; set; } = string.Empty;

    /// <summary>Gets or sets the label of the vertical axis. Default empty.</summary>
    public string YLabel { get; set; } = string.Empty;

    /// <summary>Gets or sets the image width in pixels. 16 to 8192. Default 960.</summary>
    public int Width { get; set; } = 960;

    /// <summary>Gets or sets the image height in pixels. 16 to 8192. Default 560.</summary>
    public int Height { get; set; } = 560;

    /// <summary>Gets or sets the bottom of the y axis; null fits the data. Default null.</summary>
    public double? YMin { get; set; }

    /// <summary>Gets or sets the top of the y axis; null fits the data. Default null.</summary>
    public double? YMax { get; set; }

    /// <summary>Renders the chart as PNG bytes.</summary>
    /// <returns>The PNG file's bytes.</returns>
    public byte[] ToPng()
    {
        var canvas = Render();
        return PngEncoder.Encode(canvas.Width, canvas.Height, canvas.Pixels);
    }

    /// <summary>Writes the chart to a PNG file atomically (the folder is created).</summary>
    /// <param name="path">The target file.</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var png = ToPng();
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    internal abstract Canvas Render();

    /// <summary>About <paramref name="target"/> round ticks (1, 2 or 5 × 10^k apart) covering [min, max].</summary>
    internal static (double Start, double Step, int Count) NiceTicks(double min, double max, int target = 6)
    {
        if (!(max > min))
        {
            var pad = Math.Abs(min) > 0 ? Math.Abs(min) * 0.1 : 1;
            (min, max) = (min - pad, max + pad);
        }

        var raw = (max - min) / Math.Max(1, target);
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * magnitude).First(s => s >= raw * 0.999);
        var start = Math.Floor(min / step) * step;
        var end = Math.Ceiling(max / step) * step;
        return (start, step, (int)Math.Round((end - start) / step) + 1);
    }

    /// <summary>A tick label: k/M/B suffixes for large values, and as many decimals as the step needs.</summary>
    internal static string FormatTick(double value, double step)
    {
        var magnitude = Math.Max(Math.Abs(value), Math.Abs(step));
        var (divisor, suffix) = magnitude >= 1e9 ? (1e9, "B") : magnitude >= 1e6 ? (1e6, "M") : magnitude >= 1e4 ? (1e3, "k") : (1.0, string.Empty);
        var scaledStep = step / divisor;
        var decimals = scaledStep >= 1 ? 0 : Math.Min(6, (int)Math.Ceiling(-Math.Log10(scaledStep) - 1e-9));
        var scaled = value / divisor;
        if (Math.Abs(scaled) < scaledStep * 1e-6)
        {
            return 0.0.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        }

        return scaled.ToString("F" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) + suffix;
    }

    /// <summary>Draws the title, the y-axis label, horizontal grid lines with tick labels, and returns the plot area.</summary>
    private protected (int Left, int Top, int Right, int Bottom) DrawFrame(
        Canvas canvas, IReadOnlyList<(double Value, string Label)> yTicks, int bottomSpace)
    {
        var textHeight = Canvas.TextHeight(Scale);
        var tickWidth = yTicks.Count == 0 ? 0 : yTicks.Max(t => Canvas.TextWidth(t.Label, Scale));
        var left = 16 + (string.IsNullOrEmpty(YLabel) ? 0 : textHeight + 14) + tickWidth + 10;
        var top = string.IsNullOrEmpty(Title) ? 20 : 20 + textHeight + 20;
        var right = canvas.Width - 24;
        var bottom = canvas.Height - bottomSpace;
        if (right - left < 32 || bottom - top < 32)
        {
            throw new InvalidOperationException($"A {canvas.Width} × {canvas.Height} chart leaves no room for the plot; make it larger.");
        }

        if (!string.IsNullOrEmpty(Title))
        {
            canvas.Text(Math.Max(4, (canvas.Width - Canvas.TextWidth(Title, Scale)) / 2), 16, Title, Ink, Scale);
        }

        if (!string.IsNullOrEmpty(YLabel))
        {
            var labelWidth = Canvas.TextWidth(YLabel, Scale);
            canvas.TextVertical(16, ((top + bottom) / 2) + (labelWidth / 2), YLabel, Ink, Scale);
        }

        return (left, top, right, bottom);
    }

    private protected static void DrawLegend(Canvas canvas, IReadOnlyList<(string Name, ChartColor Color)> entries, int right, int top)
    {
        if (entries.Count == 0 || entries.All(e => string.IsNullOrEmpty(e.Name)))
        {
            return;
        }

        var textHeight = Canvas.TextHeight(Scale);
        var width = entries.Max(e => Canvas.TextWidth(e.Name, Scale)) + 40;
        var height = (entries.Count * (textHeight + 8)) + 8;
        var x = right - width - 8;
        var y = top + 8;
        canvas.FillRect(x, y, width, height, new ChartColor(255, 255, 255));
        canvas.Line(x, y, x + width, y, Grid);
        canvas.Line(x, y + height, x + width, y + height, Grid);
        canvas.Line(x, y, x, y + height, Grid);
        canvas.Line(x + width, y, x + width, y + height, Grid);
        for (var i = 0; i < entries.Count; i++)
        {
            var rowY = y + 8 + (i * (textHeight + 8));
            canvas.FillRect(x + 8, rowY + 2, 18, textHeight - 4, entries[i].Color);
            canvas.Text(x + 32, rowY, entries[i].Name, Ink, Scale);
        }
    }

    private protected static ChartColor ColorAt(int index) => Palette[index % Palette.Count];
}

/// <summary>
/// A line chart of one or more (x, y) series, optionally with a logarithmic y axis; written as a dependency-free PNG.
/// </summary>
/// <example>
/// <code>
/// new LineChart { Title = "Training loss", XLabel = "tokens", YLabel = "loss" }
///     .AddSeries("train", tokens, losses)
///     .Save("loss.png");
/// </code>
/// </example>
public sealed class LineChart : Chart
{
    private readonly List<(string Name, double[] X, double[] Y, bool Markers)> _series = [];

    /// <summary>Gets or sets the label of the horizontal axis. Default empty.</summary>
    public string XLabel { get; set; } = string.Empty;

    /// <summary>Gets or sets a value indicating whether the y axis is logarithmic (every y must be positive). Default false.</summary>
    public bool LogY { get; set; }

    /// <summary>Adds a series; points with a non-finite coordinate are skipped.</summary>
    /// <param name="name">The legend entry (empty for none).</param>
    /// <param name="x">The x values.</param>
    /// <param name="y">The y values, as many as <paramref name="x"/>.</param>
    /// <param name="markers">Draw a dot at every point (for sparse series such as validation scores).</param>
    /// <returns>This chart.</returns>
    public LineChart AddSeries(string name, IReadOnlyList<double> x, IReadOnlyList<double> y, bool markers = false)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.Count != y.Count)
        {
            throw new ArgumentException($"Series '{name}' has {x.Count} x values but {y.Count} y values.", nameof(y));
        }

        _series.Add((name ?? string.Empty, x.ToArray(), y.ToArray(), markers));
        return this;
    }

    internal override Canvas Render()
    {
        var canvas = new Canvas(Width, Height);
        var points = _series.SelectMany(s => s.X.Zip(s.Y)).Where(p => double.IsFinite(p.First) && double.IsFinite(p.Second) && (!LogY || p.Second > 0)).ToList();
        if (points.Count == 0)
        {
            throw new InvalidOperationException("The line chart has no finite points to draw.");
        }

        double Ty(double v) => LogY ? Math.Log10(v) : v;
        var xMin = points.Min(p => p.First);
        var xMax = points.Max(p => p.First);
        var yMin = Ty(YMin ?? points.Min(p => p.Second));
        var yMax = Ty(YMax ?? points.Max(p => p.Second));
        var xTicks = NiceTicks(xMin, xMax, 6);
        var yTickList = LogY ? LogTicks(yMin, yMax) : LinearTicks(yMin, yMax);
        if (!LogY && YMin is null && YMax is null)
        {
            (yMin, yMax) = (yTickList[0].Value, yTickList[^1].Value);
        }
        else if (yMax <= yMin)
        {
            (yMin, yMax) = (yMin - 0.5, yMax + 0.5);
        }

        (xMin, xMax) = (xTicks.Start, xTicks.Start + ((xTicks.Count - 1) * xTicks.Step));
        var textHeight = Canvas.TextHeight(Scale);
        var (left, top, right, bottom) = DrawFrame(canvas, yTickList, 20 + textHeight + 12 + (string.IsNullOrEmpty(XLabel) ? 0 : textHeight + 12));
        int Px(double x) => left + (int)Math.Round((x - xMin) / (xMax - xMin) * (right - left));
        int Py(double y) => bottom - (int)Math.Round((Ty(y) - yMin) / (yMax - yMin) * (bottom - top));

        foreach (var (value, label) in yTickList)
        {
            var y = bottom - (int)Math.Round((value - yMin) / (yMax - yMin) * (bottom - top));
            if (y < top - 1 || y > bottom + 1)
            {
                continue;
            }

            canvas.Line(left, y, right, y, Grid);
            canvas.Text(left - 10 - Canvas.TextWidth(label, Scale), y - (textHeight / 2), label, Ink, Scale);
        }

        for (var i = 0; i < xTicks.Count; i++)
        {
            var value = xTicks.Start + (i * xTicks.Step);
            var x = Px(value);
            canvas.Line(x, bottom, x, bottom + 6, Ink);
            var label = FormatTick(value, xTicks.Step);
            canvas.Text(x - (Canvas.TextWidth(label, Scale) / 2), bottom + 12, label, Ink, Scale);
        }

        if (!string.IsNullOrEmpty(XLabel))
        {
            canvas.Text(((left + right) / 2) - (Canvas.TextWidth(XLabel, Scale) / 2), bottom + 12 + textHeight + 12, XLabel, Ink, Scale);
        }

        canvas.Line(left, top, left, bottom, Ink, 2);
        canvas.Line(left, bottom, right, bottom, Ink, 2);

        for (var s = 0; s < _series.Count; s++)
        {
            var color = ColorAt(s);
            var (_, xs, ys, markers) = _series[s];
            (int X, int Y)? previous = null;
            for (var i = 0; i < xs.Length; i++)
            {
                if (!double.IsFinite(xs[i]) || !double.IsFinite(ys[i]) || (LogY && ys[i] <= 0))
                {
                    continue;
                }

                var point = (X: Px(xs[i]), Y: Math.Clamp(Py(ys[i]), top, bottom));
                if (previous is { } p)
                {
                    canvas.Line(p.X, p.Y, point.X, point.Y, color, 3);
                }

                if (markers)
                {
                    canvas.FillRect(point.X - 4, point.Y - 4, 9, 9, color);
                }

                previous = point;
            }
        }

        DrawLegend(canvas, _series.Select((s, i) => (s.Name, ColorAt(i))).ToList(), right, top);
        return canvas;
    }

    private static List<(double Value, string Label)> LinearTicks(double min, double max)
    {
        var (start, step, count) = NiceTicks(min, max, 6);
        return Enumerable.Range(0, count).Select(i => start + (i * step)).Select(v => (v, FormatTick(v, step))).ToList();
    }

    /// <summary>Ticks of a log10 axis at 1, 2 and 5 × 10^k (only 10^k when the range spans many decades).</summary>
    private static List<(double Value, string Label)> LogTicks(double min, double max)
    {
        var ticks = new List<(double, string)>();
        var decades = max - min;
        var multiples = decades > 4 ? new[] { 1.0 } : decades > 1.5 ? [1.0, 3.0] : [1.0, 2.0, 5.0];
        for (var k = (int)Math.Floor(min); k <= (int)Math.Ceiling(max); k++)
        {
            foreach (var m in multiples)
            {
                var value = m * Math.Pow(10, k);
                var log = Math.Log10(value);
                if (log >= min - 1e-9 && log <= max + 1e-9)
                {
                    ticks.Add((log, FormatTick(value, Math.Pow(10, k))));
                }
            }
        }

        if (ticks.Count < 2)
        {
            var low = Math.Pow(10, min);
            var high = Math.Pow(10, max);
            ticks = [(min, FormatTick(low, (high - low) / 4)), (max, FormatTick(high, (high - low) / 4))];
        }

        return ticks;
    }
}

/// <summary>
/// A bar chart: one bar per category, or grouped bars when several series are added; values are printed above
/// the bars, and an optional dashed reference line marks a baseline to beat. Written as a dependency-free PNG.
/// </summary>
/// <example>
/// <code>
/// new BarChart(["LS-LLaMA", "SDCA"]) { Title = "IMDB accuracy", ValueFormat = "P1" }
///     .AddSeries("accuracy", [0.71, 0.82])
///     .Save("accuracy.png");
/// </code>
/// </example>
public sealed class BarChart : Chart
{
    private readonly string[] _categories;
    private readonly List<(string Name, double[] Values)> _series = [];

    /// <summary>Creates a chart over these categories (the x-axis labels).</summary>
    /// <param name="categories">At least one category.</param>
    public BarChart(IReadOnlyList<string> categories)
    {
        ArgumentNullException.ThrowIfNull(categories);
        if (categories.Count == 0)
        {
            throw new ArgumentException("A bar chart needs at least one category.", nameof(categories));
        }

        _categories = categories.ToArray();
    }

    /// <summary>Gets or sets the .NET format of the values printed above the bars (e.g. <c>P1</c>, <c>F2</c>); null prints none. Default <c>G3</c>.</summary>
    public string? ValueFormat { get; set; } = "G3";

    /// <summary>Gets or sets a value drawn as a dashed horizontal line across the plot, or null. Default null.</summary>
    public double? ReferenceValue { get; set; }

    /// <summary>Gets or sets the label of <see cref="ReferenceValue"/>. Default empty.</summary>
    public string ReferenceLabel { get; set; } = string.Empty;

    /// <summary>Adds a series with one value per category (NaN leaves a gap).</summary>
    /// <param name="name">The legend entry (empty for none).</param>
    /// <param name="values">One value per category.</param>
    /// <returns>This chart.</returns>
    public BarChart AddSeries(string name, IReadOnlyList<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count != _categories.Length)
        {
            throw new ArgumentException($"Series '{name}' has {values.Count} values but the chart has {_categories.Length} categories.", nameof(values));
        }

        _series.Add((name ?? string.Empty, values.ToArray()));
        return this;
    }

    internal override Canvas Render()
    {
        if (_series.Count == 0)
        {
            throw new InvalidOperationException("The bar chart has no series; call AddSeries first.");
        }

        var canvas = new Canvas(Width, Height);
        var values = _series.SelectMany(s => s.Values).Where(double.IsFinite).ToList();
        if (ReferenceValue is { } reference && double.IsFinite(reference))
        {
            values.Add(reference);
        }

        var dataMin = Math.Min(0, values.DefaultIfEmpty(0).Min());
        var dataMax = Math.Max(0, values.DefaultIfEmpty(1).Max());
        var (start, step, count) = NiceTicks(YMin ?? dataMin, YMax ?? (dataMax * 1.08), 6);
        var yMin = YMin ?? start;
        var yMax = YMax ?? (start + ((count - 1) * step));
        var ticks = Enumerable.Range(0, count).Select(i => start + (i * step)).Where(v => v >= yMin - 1e-12 && v <= yMax + 1e-12)
            .Select(v => (v, FormatTick(v, step))).ToList();
        var textHeight = Canvas.TextHeight(Scale);
        var labelScale = _categories.Max(c => Canvas.TextWidth(c, Scale)) * _categories.Length > Width * 0.8 ? 1 : Scale;
        var (left, top, right, bottom) = DrawFrame(canvas, ticks, 16 + (2 * (Canvas.TextHeight(labelScale) + 6)) + 8);
        int Py(double v) => bottom - (int)Math.Round((Math.Clamp(v, yMin, yMax) - yMin) / (yMax - yMin) * (bottom - top));

        foreach (var (value, label) in ticks)
        {
            var y = Py(value);
            canvas.Line(left, y, right, y, Grid);
            canvas.Text(left - 10 - Canvas.TextWidth(label, Scale), y - (textHeight / 2), label, Ink, Scale);
        }

        var slot = (double)(right - left) / _categories.Length;
        var groupWidth = slot * 0.75;
        var barWidth = Math.Max(2, (int)(groupWidth / _series.Count));
        var zero = Py(0);
        for (var c = 0; c < _categories.Length; c++)
        {
            var groupLeft = left + (int)((c * slot) + ((slot - (barWidth * _series.Count)) / 2));
            for (var s = 0; s < _series.Count; s++)
            {
                var value = _series[s].Values[c];
                if (!double.IsFinite(value))
                {
                    continue;
                }

                var x = groupLeft + (s * barWidth);
                var y = Py(value);
                canvas.FillRect(x + 1, Math.Min(y, zero), barWidth - 2, Math.Max(1, Math.Abs(zero - y)), ColorAt(_series.Count == 1 ? c : s));
                if (ValueFormat is not null)
                {
                    var text = value.ToString(ValueFormat, CultureInfo.InvariantCulture);
                    var valueScale = Canvas.TextWidth(text, Scale) <= barWidth + 8 ? Scale : 1;
                    canvas.Text(x + (barWidth / 2) - (Canvas.TextWidth(text, valueScale) / 2), Math.Min(y, zero) - Canvas.TextHeight(valueScale) - 4, text, Ink, valueScale);
                }
            }

            DrawCategoryLabel(canvas, _categories[c], left + (int)((c + 0.5) * slot), bottom + 10, (int)slot - 4, labelScale);
        }

        canvas.Line(left, top, left, bottom, Ink, 2);
        canvas.Line(left, zero, right, zero, Ink, 2);
        if (ReferenceValue is { } line && double.IsFinite(line))
        {
            var y = Py(line);
            canvas.Line(left, y, right, y, Muted, 2, dash: 8);
            if (!string.IsNullOrEmpty(ReferenceLabel))
            {
                canvas.Text(right - Canvas.TextWidth(ReferenceLabel, Scale) - 4, y - textHeight - 6, ReferenceLabel, Muted, Scale);
            }
        }

        if (_series.Count > 1)
        {
            DrawLegend(canvas, _series.Select((s, i) => (s.Name, ColorAt(i))).ToList(), right, top);
        }

        return canvas;
    }

    /// <summary>Centres a category label under its bars, breaking it onto a second line at a space when too wide.</summary>
    private static void DrawCategoryLabel(Canvas canvas, string label, int centre, int y, int maxWidth, int scale)
    {
        var lines = new List<string> { label };
        if (Canvas.TextWidth(label, scale) > maxWidth && label.Contains(' ', StringComparison.Ordinal))
        {
            var middle = label.Length / 2;
            var split = Enumerable.Range(0, label.Length).Where(i => label[i] == ' ').MinBy(i => Math.Abs(i - middle));
            lines = [label[..split], label[(split + 1)..]];
        }

        for (var i = 0; i < lines.Count; i++)
        {
            canvas.Text(centre - (Canvas.TextWidth(lines[i], scale) / 2), y + (i * (Canvas.TextHeight(scale) + 6)), lines[i], Ink, scale);
        }
    }
}
