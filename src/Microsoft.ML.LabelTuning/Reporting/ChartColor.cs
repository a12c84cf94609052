namespace Microsoft.ML.LabelTuning.Reporting;

/// <summary>An opaque RGB colour of a chart.</summary>
/// <param name="R">Red, 0 to 255.</param>
/// <param name="G">Green, 0 to 255.</param>
/// <param name="B">Blue, 0 to 255.</param>
public readonly record struct ChartColor(byte R, byte G, byte B)
{
    /// <summary>Parses <c>#rrggbb</c>.</summary>
    /// <param name="hex">The colour, e.g. <c>#1f77b4</c>.</param>
    /// <returns>The colour.</returns>
    public static ChartColor Parse(string hex)
    {
        ArgumentNullException.ThrowIfNull(hex);
        var h = hex.TrimStart('#');
        if (h.Length != 6)
        {
            throw new ArgumentException($"Colour '{hex}' must be written #rrggbb.", nameof(hex));
        }

        return new ChartColor(Convert.ToByte(h[..2], 16), Convert.ToByte(h[2..4], 16), Convert.ToByte(h[4..], 16));
    }

    internal ScottPlot.Color ToScottPlot() => new(R, G, B);
}
