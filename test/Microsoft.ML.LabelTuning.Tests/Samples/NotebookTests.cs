using System.Text.Json;
using System.Text.RegularExpressions;

namespace Microsoft.ML.LabelTuning.Tests.Samples;

/// <summary>
/// Fast checks of the committed notebooks in samples/notebooks. They run for real in a .NET Interactive kernel
/// (dotnet-repl) in <c>./build.sh test</c>, each counted as one test; these checks only read the files: valid JSON, a
/// first code cell that takes the library as a user would (the package built from this checkout, at its version), and
/// the outputs of that run committed with them, images included and no errors.
/// </summary>
[TestClass]
public sealed partial class NotebookTests
{
    public static IEnumerable<object[]> Notebooks()
        => FindNotebooks().Select(path => new object[] { Path.GetFileName(path) });

    [TestMethod]
    public void TheSamplesShipTheThreeNotebooks()
    {
        var names = FindNotebooks().Select(Path.GetFileName).ToList();
        CollectionAssert.IsSubsetOf(new[] { "GettingStarted.ipynb", "Methods.ipynb", "Sweep.ipynb" }, names, $"found: {string.Join(", ", names)}");
    }

    [TestMethod]
    [DynamicData(nameof(Notebooks))]
    public void TheFirstCodeCellReferencesThePackageAsAUserWould(string notebook)
    {
        var cells = CodeCells(notebook);
        Assert.IsNotEmpty(cells, $"{notebook} has C# code cells");
        var first = cells[0].Source;
        var references = ReferenceLine().Matches(first).Select(m => (Package: m.Groups[1].Value, Version: m.Groups[2].Value)).ToList();
        CollectionAssert.Contains(references, ("Microsoft.ML.LabelTuning", PropertyOf("src/Microsoft.ML.LabelTuning/Microsoft.ML.LabelTuning.csproj", "Version")),
            $"{notebook}'s first cell references the package that ./build.sh packs, at the library's <Version>:\n{first}");
        CollectionAssert.Contains(references, ("libtorch-cpu-linux-x64", PackageVersion("libtorch-cpu-linux-x64")), $"{notebook}'s first cell names the libtorch the build uses");
        foreach (var cell in cells)
        {
            Assert.DoesNotMatchRegex(DllReference(), cell.Source, $"{notebook} references a built DLL instead of the package");
            Assert.IsFalse(cell.Source.Contains("FastMode", StringComparison.Ordinal), $"{notebook} still reads FastMode (the sizes are one number now)");
        }
    }

    [TestMethod]
    [DynamicData(nameof(Notebooks))]
    public void TheCommittedOutputsAreThoseOfARunWithoutErrors(string notebook)
    {
        var cells = CodeCells(notebook);
        var errors = cells.Where(c => c.Outputs.Any(o => o.Type == "error")).Select(c => c.Index).ToList();
        Assert.IsEmpty(errors, $"{notebook}: cells {string.Join(", ", errors)} hold an error output; run ./build.sh notebooks and commit the outputs");
        var withoutOutput = cells.Where(c => c.Outputs.Count == 0).Select(c => c.Index).ToList();
        Assert.IsTrue(withoutOutput.Count < cells.Count / 2, $"{notebook}: cells {string.Join(", ", withoutOutput)} have no output; run ./build.sh notebooks and commit the outputs");
        Assert.IsTrue(cells.Any(c => c.Outputs.Any(o => o.MimeTypes.Contains("image/png"))), $"{notebook} shows its chart as an image/png output");
    }

    private sealed record Output(string Type, IReadOnlyList<string> MimeTypes);

    private sealed record Cell(int Index, string Source, IReadOnlyList<Output> Outputs);

    private static List<Cell> CodeCells(string notebook)
    {
        var path = Path.Combine(NotebookFolder(), notebook);
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        Assert.IsTrue(document.RootElement.TryGetProperty("cells", out var cells) && cells.ValueKind == JsonValueKind.Array, $"{notebook} has a 'cells' array");
        var result = new List<Cell>();
        var index = 0;
        foreach (var cell in cells.EnumerateArray())
        {
            index++;
            if (cell.GetProperty("cell_type").GetString() != "code")
            {
                continue;
            }

            var source = cell.GetProperty("source");
            var text = source.ValueKind == JsonValueKind.Array ? string.Concat(source.EnumerateArray().Select(s => s.GetString())) : source.GetString() ?? string.Empty;
            var outputs = cell.TryGetProperty("outputs", out var o) && o.ValueKind == JsonValueKind.Array
                ? o.EnumerateArray().Select(x => new Output(
                    x.GetProperty("output_type").GetString() ?? string.Empty,
                    x.TryGetProperty("data", out var data) ? data.EnumerateObject().Select(p => p.Name).ToList() : [])).ToList()
                : [];
            result.Add(new Cell(index, text, outputs));
        }

        return result;
    }

    private static IReadOnlyList<string> FindNotebooks()
        => Directory.GetFiles(NotebookFolder(), "*.ipynb").Order(StringComparer.Ordinal).ToArray();

    private static string NotebookFolder() => Path.Combine(RepositoryRoot(), "samples", "notebooks");

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.LabelTuning.sln")))
            {
                return dir.FullName;
            }
        }

        throw new AssertFailedException("The repository (Microsoft.ML.LabelTuning.sln) was not found above the test binaries.");
    }

    private static string PropertyOf(string project, string property)
    {
        var match = Regex.Match(File.ReadAllText(Path.Combine(RepositoryRoot(), project)), $"<{property}>([^<]+)</{property}>");
        Assert.IsTrue(match.Success, $"{project} sets <{property}>");
        return match.Groups[1].Value;
    }

    private static string PackageVersion(string package)
    {
        var match = Regex.Match(File.ReadAllText(Path.Combine(RepositoryRoot(), "Directory.Packages.props")), $"<PackageVersion Include=\"{Regex.Escape(package)}\" Version=\"([^\"]+)\"");
        Assert.IsTrue(match.Success, $"Directory.Packages.props pins {package}");
        return match.Groups[1].Value;
    }

    [GeneratedRegex(@"^#r ""nuget:\s*([^,""]+),\s*([^""]+)""", RegexOptions.Multiline)]
    private static partial Regex ReferenceLine();

    [GeneratedRegex(@"^#r ""[^""]*\.dll""", RegexOptions.Multiline)]
    private static partial Regex DllReference();
}
