namespace Microsoft.ML.LabelTuning.Reporting;

/// <summary>An 8-bit RGB colour.</summary>
/// <param name="R">Red.</param>
/// <param name="G">Green.</param>
/// <param name="B">Blue.</param>
public readonly record struct ChartColor(byte R, byte G, byte B)
{
    /// <summary>Parses <c>#rrggbb</c>.</summary>
    /// <param name="hex">The colour, e.g. <c>#1f77b4</c>.</param>
    /// <returns>The colour.</returns>
    public static ChartColor Parse(string hex)
    {
        var h = hex.TrimStart('#');
        if (h.Length != 6)
        {
            throw new ArgumentException($"Colour '{hex}' must be written #rrggbb.", nameof(hex));
        }

        return new ChartColor(Convert.ToByte(h[..2], 16), Convert.ToByte(h[2..4], 16), Convert.ToByte(h[4..], 16));
    }
}

/// <summary>A white RGB raster with the few drawing operations charts need: rectangles, thick lines, and text.</summary>
internal sealed class Canvas
{
    private readonly byte[] _pixels;

    public Canvas(int width, int height)
    {
        if (width is < 16 or > 8192 || height is < 16 or > 8192)
        {
            throw new ArgumentOutOfRangeException(nameof(width), $"A chart must be 16 to 8192 pixels on each side but {width} × {height} was given.");
        }

        Width = width;
        Height = height;
        _pixels = new byte[width * height * 3];
        Array.Fill(_pixels, (byte)255);
    }

    public int Width { get; }

    public int Height { get; }

    public ReadOnlySpan<byte> Pixels => _pixels;

    public ChartColor GetPixel(int x, int y)
    {
        var i = ((y * Width) + x) * 3;
        return new ChartColor(_pixels[i], _pixels[i + 1], _pixels[i + 2]);
    }

    public void SetPixel(int x, int y, ChartColor color)
    {
        if (x < 0 || y < 0 || x >= Width || y >= Height)
        {
            return;
        }

        var i = ((y * Width) + x) * 3;
        _pixels[i] = color.R;
        _pixels[i + 1] = color.G;
        _pixels[i + 2] = color.B;
    }

    public void FillRect(int x, int y, int width, int height, ChartColor color)
    {
        for (var yy = Math.Max(0, y); yy < Math.Min(Height, y + height); yy++)
        {
            for (var xx = Math.Max(0, x); xx < Math.Min(Width, x + width); xx++)
            {
                SetPixel(xx, yy, color);
            }
        }
    }

    /// <summary>A line of <paramref name="thickness"/> pixels (Bresenham with a square brush); <paramref name="dash"/> &gt; 0 draws dashes.</summary>
    public void Line(int x0, int y0, int x1, int y1, ChartColor color, int thickness = 1, int dash = 0)
    {
        int dx = Math.Abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
        int dy = -Math.Abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
        var error = dx + dy;
        var half = (thickness - 1) / 2;
        var n = 0;
        while (true)
        {
            if (dash <= 0 || (n / dash) % 2 == 0)
            {
                FillRect(x0 - half, y0 - half, thickness, thickness, color);
            }

            n++;
            if (x0 == x1 && y0 == y1)
            {
                break;
            }

            var e2 = 2 * error;
            if (e2 >= dy)
            {
                error += dy;
                x0 += sx;
            }

            if (e2 <= dx)
            {
                error += dx;
                y0 += sy;
            }
        }
    }

    /// <summary>Draws text with its top-left corner at (x, y), each font pixel a <paramref name="scale"/>-square.</summary>
    public void Text(int x, int y, string text, ChartColor color, int scale = 1)
    {
        foreach (var c in text)
        {
            var glyph = BitmapFont.Glyph(c);
            for (var r = 0; r < BitmapFont.GlyphHeight; r++)
            {
                for (var col = 0; col < BitmapFont.GlyphWidth; col++)
                {
                    if (glyph[r, col])
                    {
                        FillRect(x + (col * scale), y + (r * scale), scale, scale, color);
                    }
                }
            }

            x += BitmapFont.Advance * scale;
        }
    }

    /// <summary>Draws text rotated a quarter turn counter-clockwise (reading bottom to top), its bottom-left at (x, y).</summary>
    public void TextVertical(int x, int y, string text, ChartColor color, int scale = 1)
    {
        foreach (var c in text)
        {
            var glyph = BitmapFont.Glyph(c);
            for (var r = 0; r < BitmapFont.GlyphHeight; r++)
            {
                for (var col = 0; col < BitmapFont.GlyphWidth; col++)
                {
                    if (glyph[r, col])
                    {
                        FillRect(x + (r * scale), y - ((col + 1) * scale), scale, scale, color);
                    }
                }
            }

            y -= BitmapFont.Advance * scale;
        }
    }

    public static int TextWidth(string text, int scale) => BitmapFont.Measure(text) * scale;

    public static int TextHeight(int scale) => BitmapFont.GlyphHeight * scale;
}
