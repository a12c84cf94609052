namespace Microsoft.ML.LabelTuning.Tests.Samples;

/// <summary>
/// Runs every notebook in samples/notebooks (one test case each, so a broken notebook names itself) with FastMode on,
/// cell by cell through Roslyn scripting against the built library.
/// </summary>
[TestClass]
public sealed class NotebookTests
{
    public static IEnumerable<object[]> Notebooks()
        => NotebookRunner.FindNotebooks().Select(path => new object[] { Path.GetFileName(path) });

    [TestMethod]
    [DynamicData(nameof(Notebooks))]
    public async Task NotebookRunsInFastMode(string notebook)
    {
        var folder = NotebookRunner.NotebookFolder() ?? throw new AssertFailedException("samples/notebooks was not found above the test binaries.");
        await NotebookRunner.RunAsync(Path.Combine(folder, notebook), fastMode: true);
    }

    [TestMethod]
    public void TheSamplesShipTheGettingStartedAndMethodsNotebooks()
    {
        var names = NotebookRunner.FindNotebooks().Select(Path.GetFileName).ToList();
        CollectionAssert.IsSubsetOf(new[] { "GettingStarted.ipynb", "Methods.ipynb" }, names, $"found: {string.Join(", ", names)}");
    }

    [TestMethod]
    public void ReadingKeepsCSharpCodeCellsAndDropsMagicsAndTheFastModeDefault()
    {
        var path = WriteNotebook(
            Markdown("# title"),
            Code("csharp", "#r \"nuget: Microsoft.ML, 6.0.0\"\n#!time\nbool FastMode = false; // the host's value wins\nvar n = FastMode ? 1 : 2;"),
            Code("fsharp", "let x = 1"),
            Code("csharp", "#r \"../x.dll\"\n"));
        try
        {
            var cells = NotebookRunner.ReadCells(path, dropFastModeDeclaration: true);
            Assert.HasCount(1, cells);
            Assert.AreEqual(2, cells[0].Index);
            Assert.AreEqual("var n = FastMode ? 1 : 2;", cells[0].Code.Trim());
            StringAssert.Contains(NotebookRunner.ReadCells(path, dropFastModeDeclaration: false)[0].Code, "bool FastMode = false;");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public async Task CellsShareStateAndSeeTheHostsFastMode()
    {
        var path = WriteNotebook(
            Code("csharp", "bool FastMode = false;\nvar sizes = new List<int> { FastMode ? 1 : 1000 };"),
            Code("csharp", "sizes.Add(2);\nif (sizes.Count != 2 || sizes[0] != 1) { throw new InvalidOperationException($\"state {string.Join(',', sizes)}\"); }"));
        try
        {
            await NotebookRunner.RunAsync(path, fastMode: true);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [TestMethod]
    public async Task ABrokenCellNamesTheNotebookAndTheCell()
    {
        var path = WriteNotebook(
            Markdown("intro"),
            Code("csharp", "var ok = 1;"),
            Code("csharp", "var broken = ok + undefinedThing;"));
        try
        {
            var error = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() => NotebookRunner.RunAsync(path, fastMode: true));
            StringAssert.Contains(error.Message, $"'{Path.GetFileName(path)}' cell 3 does not compile");
            StringAssert.Contains(error.Message, "undefinedThing");

            var throwing = WriteNotebook(Code("csharp", "throw new ArgumentException(\"bad size\");"));
            try
            {
                var runtime = await Assert.ThrowsExactlyAsync<InvalidOperationException>(() => NotebookRunner.RunAsync(throwing, fastMode: true));
                StringAssert.Contains(runtime.Message, "cell 1 threw ArgumentException: bad size");
            }
            finally
            {
                File.Delete(throwing);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static object Markdown(string text)
        => new Dictionary<string, object> { ["cell_type"] = "markdown", ["metadata"] = new { }, ["source"] = new[] { text } };

    private static object Code(string language, string code)
        => new Dictionary<string, object>
        {
            ["cell_type"] = "code",
            ["metadata"] = new { dotnet_interactive = new { language } },
            ["outputs"] = Array.Empty<object>(),
            ["source"] = new[] { code },
        };

    private static string WriteNotebook(params object[] cells)
    {
        var path = Path.Combine(Path.GetTempPath(), $"lt-notebook-{Guid.NewGuid():N}.ipynb");
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(new { cells, metadata = new { }, nbformat = 4, nbformat_minor = 2 }));
        return path;
    }
}
