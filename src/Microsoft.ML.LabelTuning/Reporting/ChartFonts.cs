using System.Text;
using SkiaSharp;

namespace Microsoft.ML.LabelTuning.Reporting;

/// <summary>
/// The font files charts draw with. ScottPlot renders through Skia, which on Linux (without fontconfig) finds no
/// font by itself and then draws no text at all; so the charts pick font files explicitly: a Latin font for text it
/// covers, and a font with CJK glyphs for text it does not. <c>LABELTUNING_CHART_FONT</c> names a font file to try
/// first. <c>./build.sh</c> installs DejaVu Sans and WenQuanYi Micro Hei where they are missing.
/// </summary>
internal static class ChartFonts
{
    /// <summary>The environment variable that names a font file (.ttf, .otf or .ttc) to try before the known ones.</summary>
    public const string FontVariable = "LABELTUNING_CHART_FONT";

    private static readonly Lazy<IReadOnlyList<ChartFont>> _fonts = new(Load);

    /// <summary>Latin fonts, most preferred first (Debian/Ubuntu, Fedora, Arch, macOS, Windows).</summary>
    private static readonly string[] _latinCandidates =
    [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
        "/Library/Fonts/Arial.ttf",
        @"C:\Windows\Fonts\segoeui.ttf",
        @"C:\Windows\Fonts\arial.ttf",
    ];

    /// <summary>Fonts with CJK glyphs (and Latin ones), for text the Latin font lacks.</summary>
    private static readonly string[] _cjkCandidates =
    [
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
        "/System/Library/Fonts/Hiragino Sans GB.ttc",
        @"C:\Windows\Fonts\msyh.ttc",
        @"C:\Windows\Fonts\YuGothM.ttc",
    ];

    /// <summary>Gets the fonts found, in order of preference; empty when none was found.</summary>
    public static IReadOnlyList<ChartFont> Available => _fonts.Value;

    /// <summary>
    /// The name (as registered with ScottPlot) of the first font that has a glyph for every character of
    /// <paramref name="texts"/>, else of the font that covers most of them; null when no font file was found.
    /// </summary>
    public static string? Choose(IEnumerable<string> texts)
    {
        var fonts = _fonts.Value;
        if (fonts.Count == 0)
        {
            return null;
        }

        var text = string.Concat(texts.Where(t => !string.IsNullOrEmpty(t)));
        var characters = text.EnumerateRunes().Where(r => !Rune.IsWhiteSpace(r) && !Rune.IsControl(r)).Distinct().ToList();
        return fonts.MaxBy(font => characters.Count(font.Has))!.Name;
    }

    private static IReadOnlyList<ChartFont> Load()
    {
        var fonts = new List<ChartFont>();
        var configured = Environment.GetEnvironmentVariable(FontVariable);
        var candidates = (string.IsNullOrEmpty(configured) ? [] : new[] { configured })
            .Concat(_latinCandidates.Where(File.Exists).Take(1))
            .Concat(_cjkCandidates.Where(File.Exists).Take(1));
        foreach (var path in candidates)
        {
            if (!File.Exists(path))
            {
                Console.Error.WriteLine($"Microsoft.ML.LabelTuning charts: {FontVariable} names '{path}', which does not exist; it is ignored.");
                continue;
            }

            var typeface = SKTypeface.FromFile(path);
            if (typeface is null)
            {
                Console.Error.WriteLine($"Microsoft.ML.LabelTuning charts: '{path}' is not a font file Skia can read; it is ignored.");
                continue;
            }

            var name = $"LabelTuning{fonts.Count}";
            ScottPlot.Fonts.AddFontFile(name, path, bold: false, italic: false);
            ScottPlot.Fonts.AddFontFile(name, path, bold: true, italic: false);
            fonts.Add(new ChartFont(name, path, typeface));
        }

        if (fonts.Count == 0)
        {
            Console.Error.WriteLine(
                "Microsoft.ML.LabelTuning charts: no font file was found, so chart text may be blank. Install one " +
                "('sudo apt-get install fonts-dejavu-core fonts-wqy-microhei' on Debian or Ubuntu; ./build.sh does this) " +
                $"or set {FontVariable} to a .ttf file. Looked for: {string.Join(", ", _latinCandidates.Concat(_cjkCandidates))}.");
        }

        return fonts;
    }
}

/// <summary>A font file registered with ScottPlot under <paramref name="Name"/>.</summary>
internal sealed record ChartFont(string Name, string Path, SKTypeface Typeface)
{
    /// <summary>Whether the font has a glyph for <paramref name="character"/>.</summary>
    public bool Has(Rune character) => Typeface.ContainsGlyph(character.Value);
}
