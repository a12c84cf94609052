using System.Globalization;
using Microsoft.ML.LabelTuning.IO;
using ScottPlot;

namespace Microsoft.ML.LabelTuning.Reporting;

/// <summary>What every chart shares: size, title, axis labels, the y range, and PNG output (drawn by ScottPlot).</summary>
public abstract class Chart
{
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
        if (Width is < 16 or > 8192 || Height is < 16 or > 8192)
        {
            throw new InvalidOperationException($"A chart must be 16 to 8192 pixels on each side but {Width} × {Height} was given.");
        }

        var plot = new Plot();
        var texts = new List<string> { Title, YLabel };
        Build(plot, texts);
        if (!string.IsNullOrEmpty(Title))
        {
            plot.Title(Title);
        }

        if (!string.IsNullOrEmpty(YLabel))
        {
            plot.YLabel(YLabel);
        }

        if (ChartFonts.Choose(texts) is { } font)
        {
            plot.Font.Set(font);
            ApplyFont(plot, font);
        }

        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }

    /// <summary>Writes the chart to a PNG file atomically (the folder is created).</summary>
    /// <param name="path">The target file.</param>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var png = ToPng();
        AtomicFile.Write(path, stream => stream.Write(png));
    }

    /// <summary>Adds the chart's plottables to <paramref name="plot"/>, and every text it draws to <paramref name="texts"/> (for the font choice).</summary>
    private protected abstract void Build(Plot plot, List<string> texts);

    /// <summary>Sets the font of the text that <see cref="ScottPlot.Stylers.FontStyler.Set"/> does not reach (plottable labels).</summary>
    private protected virtual void ApplyFont(Plot plot, string font)
    {
    }

    /// <summary>The y range: the one set, or the data's (with a little head room when one end is fixed).</summary>
    private protected void LimitY(Plot plot)
    {
        if (YMin is null && YMax is null)
        {
            return;
        }

        var limits = plot.Axes.GetLimits();
        var bottom = YMin ?? limits.Bottom;
        var top = YMax ?? limits.Top;
        if (!(top > bottom))
        {
            (bottom, top) = (bottom - 0.5, top + 0.5);
        }

        plot.Axes.SetLimitsY(bottom, top);
    }

    /// <summary>A tick label: k/M/B suffixes for large values, otherwise up to four significant digits.</summary>
    internal static string FormatTick(double value)
    {
        var magnitude = Math.Abs(value);
        var (divisor, suffix) = magnitude >= 1e9 ? (1e9, "B") : magnitude >= 1e6 ? (1e6, "M") : magnitude >= 1e4 ? (1e3, "k") : (1.0, string.Empty);
        return (value / divisor).ToString("G4", CultureInfo.InvariantCulture) + suffix;
    }

    private protected static ScottPlot.Color ColorAt(int index) => Palette[index % Palette.Count].ToScottPlot();
}

/// <summary>
/// A line chart of one or more (x, y) series, optionally with a logarithmic y axis; written as a PNG.
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

    /// <summary>Gets or sets a value indicating whether the x axis is logarithmic (points with x &lt;= 0 are skipped). Default false.</summary>
    public bool LogX { get; set; }

    /// <summary>Gets or sets a value indicating whether the legend sits in the lower right corner (where rising curves leave room) instead of the upper right.</summary>
    public bool LegendLowerRight { get; set; }

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

    private protected override void Build(Plot plot, List<string> texts)
    {
        var drawn = 0;
        for (var s = 0; s < _series.Count; s++)
        {
            var (name, xs, ys, markers) = _series[s];
            var points = xs.Zip(ys).Where(p => double.IsFinite(p.First) && double.IsFinite(p.Second) && (!LogY || p.Second > 0) && (!LogX || p.First > 0)).ToArray();
            if (points.Length == 0)
            {
                continue;
            }

            var scatter = plot.Add.Scatter(points.Select(p => LogX ? Math.Log10(p.First) : p.First).ToArray(), points.Select(p => LogY ? Math.Log10(p.Second) : p.Second).ToArray(), ColorAt(s));
            scatter.LineWidth = 2;
            scatter.MarkerSize = markers ? 7 : 0;
            scatter.LegendText = name;
            texts.Add(name);
            drawn += points.Length;
        }

        if (drawn == 0)
        {
            throw new InvalidOperationException("The line chart has no finite points to draw.");
        }

        if (!string.IsNullOrEmpty(XLabel))
        {
            plot.XLabel(XLabel);
            texts.Add(XLabel);
        }

        if (LogX)
        {
            // A few distinct x values (sizes of a learning curve) are ticked where they are; many get decade ticks.
            var distinct = _series.SelectMany(x => x.X).Where(x => double.IsFinite(x) && x > 0).Distinct().Order().ToList();
            var xs = distinct.Select(Math.Log10).ToList();
            var ticks = distinct.Count <= 12
                ? distinct.Select(x => (Math.Log10(x), FormatTick(x))).ToList()
                : LogTicks(xs.Min(), Math.Max(xs.Max(), xs.Min() + 1e-9));
            var generator = new ScottPlot.TickGenerators.NumericManual();
            foreach (var (value, label) in ticks)
            {
                generator.AddMajor(value, label);
            }

            plot.Axes.Bottom.TickGenerator = generator;
        }
        else
        {
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = FormatTick };
        }

        plot.Axes.Margins(horizontal: 0.02);
        if (LogY)
        {
            plot.Axes.AutoScale();
            var limits = plot.Axes.GetLimits();
            var bottom = YMin is > 0 ? Math.Log10(YMin.Value) : limits.Bottom;
            var top = YMax is > 0 ? Math.Log10(YMax.Value) : limits.Top;
            top = top > bottom ? top : bottom + 1;
            var ticks = LogTicks(bottom, top);
            var generator = new ScottPlot.TickGenerators.NumericManual();
            foreach (var (value, label) in ticks)
            {
                generator.AddMajor(value, label);
            }

            plot.Axes.Left.TickGenerator = generator;
            plot.Axes.SetLimitsY(bottom, top);
        }
        else
        {
            plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = FormatTick };
            plot.Axes.AutoScale();
            LimitY(plot);
        }

        plot.Legend.IsVisible = _series.Any(s => !string.IsNullOrEmpty(s.Name));
        plot.Legend.Alignment = LegendLowerRight ? Alignment.LowerRight : Alignment.UpperRight;
    }

    /// <summary>
    /// Ticks of a log10 axis over [<paramref name="min"/>, <paramref name="max"/>] (in log10 units), labelled with the
    /// values: 10^k when the range spans many decades, 1, 2 and 5 × 10^k over a few, and round linear steps within one.
    /// </summary>
    private static List<(double Log, string Label)> LogTicks(double min, double max)
    {
        var decades = max - min;
        var ticks = new List<(double, string)>();
        if (decades < 1)
        {
            var low = Math.Pow(10, min);
            var high = Math.Pow(10, max);
            var raw = (high - low) / 5;
            var magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
            var step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * magnitude).First(s => s >= raw * 0.999);
            for (var v = Math.Ceiling(low / step) * step; v <= high * (1 + 1e-12); v += step)
            {
                ticks.Add((Math.Log10(v), FormatTick(v)));
            }

            return ticks;
        }

        var multiples = decades > 4 ? new[] { 1.0 } : decades > 1.5 ? [1.0, 3.0] : [1.0, 2.0, 5.0];
        for (var k = (int)Math.Floor(min); k <= (int)Math.Ceiling(max); k++)
        {
            foreach (var m in multiples)
            {
                var log = Math.Log10(m * Math.Pow(10, k));
                if (log >= min - 1e-9 && log <= max + 1e-9)
                {
                    ticks.Add((log, FormatTick(m * Math.Pow(10, k))));
                }
            }
        }

        return ticks;
    }
}

/// <summary>
/// A bar chart: one bar per category, or grouped bars when several series are added; values are printed above
/// the bars, and an optional dashed reference line marks a baseline to beat. Written as a PNG.
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
    private readonly List<ScottPlot.Plottables.BarPlot> _bars = [];
    private ScottPlot.Plottables.HorizontalLine? _reference;
    private ScottPlot.Plottables.Text? _referenceText;

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

    private protected override void Build(Plot plot, List<string> texts)
    {
        if (_series.Count == 0)
        {
            throw new InvalidOperationException("The bar chart has no series; call AddSeries first.");
        }

        _bars.Clear();
        const double groupWidth = 0.8;
        var barWidth = groupWidth / _series.Count;
        for (var s = 0; s < _series.Count; s++)
        {
            var (name, values) = _series[s];
            var bars = new List<Bar>();
            for (var c = 0; c < _categories.Length; c++)
            {
                if (!double.IsFinite(values[c]))
                {
                    continue;
                }

                var label = ValueFormat is null ? string.Empty : values[c].ToString(ValueFormat, CultureInfo.InvariantCulture);
                texts.Add(label);
                bars.Add(new Bar
                {
                    Position = c - (groupWidth / 2) + ((s + 0.5) * barWidth),
                    Value = values[c],
                    Size = barWidth * 0.92,
                    FillColor = ColorAt(_series.Count == 1 ? c : s),
                    LineWidth = 0,
                    Label = label,
                });
            }

            var plottable = plot.Add.Bars(bars);
            plottable.ValueLabelStyle.FontSize = 13;
            if (_series.Count > 1)
            {
                plottable.LegendText = name;
                texts.Add(name);
            }

            _bars.Add(plottable);
        }

        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, _categories.Length).Select(c => (double)c).ToArray(), _categories.Select(Wrap).ToArray());
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        texts.AddRange(_categories);
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { LabelFormatter = FormatTick };

        _reference = null;
        _referenceText = null;
        if (ReferenceValue is { } reference && double.IsFinite(reference))
        {
            _reference = plot.Add.HorizontalLine(reference, 2, Colors.Gray, LinePattern.Dashed);
            if (!string.IsNullOrEmpty(ReferenceLabel))
            {
                _referenceText = plot.Add.Text(ReferenceLabel, _categories.Length - 0.5, reference);
                _referenceText.LabelAlignment = Alignment.LowerRight;
                _referenceText.LabelFontColor = Colors.Gray;
                _referenceText.LabelFontSize = 14;
                texts.Add(ReferenceLabel);
            }
        }

        plot.Axes.Margins(bottom: 0);
        plot.Axes.AutoScale();
        var limits = plot.Axes.GetLimits();
        plot.Axes.SetLimitsY(YMin ?? Math.Min(0, limits.Bottom), YMax ?? (limits.Top + ((limits.Top - Math.Min(0, limits.Bottom)) * 0.08)));
        plot.Axes.SetLimitsX(-0.5, _categories.Length - 0.5);
        plot.Legend.IsVisible = _series.Count > 1;
        plot.Legend.Alignment = Alignment.UpperRight;
    }

    private protected override void ApplyFont(Plot plot, string font)
    {
        foreach (var bars in _bars)
        {
            bars.ValueLabelStyle.FontName = font;
        }

        if (_referenceText is not null)
        {
            _referenceText.LabelFontName = font;
        }
    }

    /// <summary>Breaks a long category label onto two lines at the space nearest its middle.</summary>
    private string Wrap(string label)
    {
        if (label.Length <= 12 || _categories.Length < 4 || !label.Contains(' ', StringComparison.Ordinal))
        {
            return label;
        }

        var middle = label.Length / 2;
        var split = Enumerable.Range(0, label.Length).Where(i => label[i] == ' ').MinBy(i => Math.Abs(i - middle));
        return label[..split] + "\n" + label[(split + 1)..];
    }
}
