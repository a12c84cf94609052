using System.Reflection;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;

namespace Microsoft.ML.LabelTuning.Tests.Samples;

/// <summary>
/// What a notebook sees as globals when the test host runs it. A notebook uses <c>FastMode</c> as if it were its own
/// variable; its own declaration of it (a line such as <c>bool FastMode = false;</c>) is dropped by the host, so the
/// host's value wins. <c>display(x)</c> stands in for Polyglot's function of that name.
/// </summary>
public sealed class NotebookGlobals
{
    /// <summary>Gets or sets whether the notebook should use tiny sizes.</summary>
    public bool FastMode { get; set; }

    /// <summary>Writes <paramref name="value"/> to the console, as Polyglot's <c>display</c> would show it.</summary>
    public object? display(object? value)
    {
        Console.WriteLine(value);
        return value;
    }
}

/// <summary>One C# code cell of a notebook: its index among all cells, and its code with the magic lines removed.</summary>
internal sealed record NotebookCell(int Index, string Code);

/// <summary>
/// Runs a Polyglot (.NET Interactive) notebook's C# cells in order through Roslyn scripting, each cell continuing the
/// previous cell's state, against the assemblies the test process has loaded (the library, ML.NET, TorchSharp).
/// </summary>
internal static partial class NotebookRunner
{
    /// <summary>The environment variable set while a notebook runs in fast mode, for notebooks that read it instead of the global.</summary>
    public const string FastModeVariable = "LABELTUNING_NOTEBOOK_FAST";

    /// <summary>Reads the C# code cells of an .ipynb file, without <c>#r</c>, <c>#!</c>, <c>#load</c> and <c>#i</c> lines.</summary>
    public static List<NotebookCell> ReadCells(string path, bool dropFastModeDeclaration)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        if (!document.RootElement.TryGetProperty("cells", out var cells) || cells.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"Notebook '{path}' has no 'cells' array.");
        }

        var defaultLanguage = DefaultLanguage(document.RootElement);
        var result = new List<NotebookCell>();
        var index = 0;
        foreach (var cell in cells.EnumerateArray())
        {
            index++;
            if (cell.GetProperty("cell_type").GetString() != "code" || !IsCSharp(cell, defaultLanguage))
            {
                continue;
            }

            var source = cell.GetProperty("source");
            var text = source.ValueKind == JsonValueKind.Array
                ? string.Concat(source.EnumerateArray().Select(s => s.GetString()))
                : source.GetString() ?? string.Empty;
            var lines = text.ReplaceLineEndings("\n").Split('\n')
                .Select(line => IsMagic(line) || (dropFastModeDeclaration && FastModeDeclaration().IsMatch(line)) ? string.Empty : line);
            var code = string.Join('\n', lines);
            if (!string.IsNullOrWhiteSpace(code))
            {
                result.Add(new NotebookCell(index, code));
            }
        }

        return result;
    }

    /// <summary>Runs every C# cell of <paramref name="path"/> in order; a failure names the notebook and the cell.</summary>
    public static async Task RunAsync(string path, bool fastMode)
    {
        var cells = ReadCells(path, dropFastModeDeclaration: true);
        if (cells.Count == 0)
        {
            throw new InvalidDataException($"Notebook '{path}' has no C# code cells.");
        }

        var options = ScriptOptions.Default
            .WithReferences(References())
            .WithImports("System", "System.IO", "System.Linq", "System.Collections.Generic", "System.Text", "System.Threading.Tasks")
            .WithLanguageVersion(LanguageVersion.Latest)
            .WithOptimizationLevel(OptimizationLevel.Release)
            .WithEmitDebugInformation(false);
        var globals = new NotebookGlobals { FastMode = fastMode };
        var previousDirectory = Directory.GetCurrentDirectory();
        var previousFast = Environment.GetEnvironmentVariable(FastModeVariable);
        // Polyglot runs a notebook in its own folder; relative paths in the notebook mean the same here.
        Directory.SetCurrentDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        Environment.SetEnvironmentVariable(FastModeVariable, fastMode ? "1" : "0");
        try
        {
            ScriptState<object>? state = null;
            foreach (var cell in cells)
            {
                Console.WriteLine($"--- {Path.GetFileName(path)} cell {cell.Index}");
                try
                {
                    state = state is null
                        ? await CSharpScript.RunAsync(cell.Code, options, globals, typeof(NotebookGlobals))
                        : await state.ContinueWithAsync(cell.Code, options);
                }
                catch (CompilationErrorException e)
                {
                    throw new InvalidOperationException(
                        $"Notebook '{Path.GetFileName(path)}' cell {cell.Index} does not compile:\n{string.Join("\n", e.Diagnostics.Take(10))}", e);
                }
                catch (Exception e)
                {
                    throw new InvalidOperationException($"Notebook '{Path.GetFileName(path)}' cell {cell.Index} threw {e.GetType().Name}: {e.Message}", e);
                }
            }
        }
        finally
        {
            Directory.SetCurrentDirectory(previousDirectory);
            Environment.SetEnvironmentVariable(FastModeVariable, previousFast);
        }
    }

    /// <summary>Every notebook in samples/notebooks of the repository that holds the test binaries, sorted by name.</summary>
    public static IReadOnlyList<string> FindNotebooks()
    {
        var folder = NotebookFolder();
        return folder is null ? [] : Directory.GetFiles(folder, "*.ipynb").Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>samples/notebooks above the test binaries, or null when the tests run outside the repository.</summary>
    public static string? NotebookFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.LabelTuning.sln")))
            {
                var folder = Path.Combine(dir.FullName, "samples", "notebooks");
                return Directory.Exists(folder) ? folder : null;
            }
        }

        return null;
    }

    private static bool IsMagic(string line)
    {
        var trimmed = line.TrimStart();
        return trimmed.StartsWith("#r ", StringComparison.Ordinal) || trimmed.StartsWith("#!", StringComparison.Ordinal)
            || trimmed.StartsWith("#load ", StringComparison.Ordinal) || trimmed.StartsWith("#i ", StringComparison.Ordinal);
    }

    /// <summary>A notebook's own default for the host's global: <c>bool FastMode = ...;</c> or <c>var FastMode = ...;</c> on one line.</summary>
    [GeneratedRegex(@"^\s*(bool|var)\s+FastMode\s*=[^;]*;\s*(//.*)?$")]
    private static partial Regex FastModeDeclaration();

    private static string DefaultLanguage(JsonElement root)
    {
        if (root.TryGetProperty("metadata", out var metadata)
            && metadata.TryGetProperty("polyglot_notebook", out var polyglot)
            && polyglot.TryGetProperty("kernelInfo", out var kernelInfo)
            && kernelInfo.TryGetProperty("defaultKernelName", out var name))
        {
            return name.GetString() ?? "csharp";
        }

        return "csharp";
    }

    private static bool IsCSharp(JsonElement cell, string defaultLanguage)
    {
        var language = defaultLanguage;
        if (cell.TryGetProperty("metadata", out var metadata))
        {
            if (metadata.TryGetProperty("dotnet_interactive", out var interactive) && interactive.TryGetProperty("language", out var l))
            {
                language = l.GetString() ?? language;
            }
            else if (metadata.TryGetProperty("polyglot_notebook", out var polyglot) && polyglot.TryGetProperty("kernelName", out var k))
            {
                language = k.GetString() ?? language;
            }
        }

        return language is "csharp" or "C#" or "c#";
    }

    /// <summary>The framework, the library and every managed assembly the test process has loaded or ships beside it.</summary>
    private static IEnumerable<MetadataReference> References()
    {
        // Touch the assemblies a notebook needs, so they are loaded before the list is taken.
        _ = new[]
        {
            typeof(MLContext), typeof(Microsoft.ML.Data.TextLoader), typeof(Microsoft.ML.Trainers.SdcaMaximumEntropyMulticlassTrainer),
            typeof(Microsoft.ML.Transforms.Text.TextFeaturizingEstimator), typeof(LabelTuningCatalog), typeof(TorchSharp.torch),
            typeof(Microsoft.ML.Runtime.IHostEnvironment), typeof(IDataView),
        };
        var paths = new HashSet<string>(StringComparer.Ordinal);
        foreach (var assembly in AppDomain.CurrentDomain.GetAssemblies())
        {
            if (!assembly.IsDynamic && !string.IsNullOrEmpty(assembly.Location))
            {
                paths.Add(assembly.Location);
            }
        }

        // The framework's reference set, so that types such as System.Text.Json or System.Net are there when a cell uses them.
        if (AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") is string trusted)
        {
            var frameworkDirectory = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
            foreach (var path in trusted.Split(Path.PathSeparator))
            {
                if (Path.GetDirectoryName(path) == frameworkDirectory && IsManaged(path))
                {
                    paths.Add(path);
                }
            }
        }

        return paths.Select(p => MetadataReference.CreateFromFile(p));
    }

    private static bool IsManaged(string path)
    {
        try
        {
            _ = AssemblyName.GetAssemblyName(path);
            return true;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }
}
