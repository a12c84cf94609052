using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LabelTuning.BuildTools;

/// <summary>
/// Tidies a notebook that dotnet-repl has run, before it is committed: drops the kernel's transient displays (the
/// "Installing Packages" progress frames, "Loading extensions from ..." lines), keeps every other output (text, tables,
/// images, errors), and writes the repository's absolute path as <c>&lt;repository&gt;</c> so that outputs do not
/// depend on where the repository was cloned.
/// </summary>
internal static class NotebookOutputs
{
    private static readonly JsonSerializerOptions _write = new()
    {
        WriteIndented = true,
        IndentSize = 1,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static int Clean(string input, string output, string repositoryRoot)
    {
        var notebook = JsonNode.Parse(File.ReadAllText(input))?.AsObject()
            ?? throw new InvalidDataException($"'{input}' is not a JSON notebook.");
        var cells = notebook["cells"]?.AsArray() ?? throw new InvalidDataException($"'{input}' has no 'cells' array.");
        var errors = 0;
        foreach (var cell in cells)
        {
            if (cell?["outputs"] is not JsonArray outputs)
            {
                continue;
            }

            foreach (var transient in outputs.Where(IsTransient).ToList())
            {
                outputs.Remove(transient);
            }

            errors += outputs.Count(o => (string?)o?["output_type"] == "error");
        }

        var root = repositoryRoot.TrimEnd('/');
        var text = notebook.ToJsonString(_write).Replace(root + "/", "<repository>/", StringComparison.Ordinal)
            .Replace(root, "<repository>", StringComparison.Ordinal);
        File.WriteAllText(output, text + "\n");
        Console.WriteLine($"{Path.GetFileName(output)}: {cells.Count} cells, {errors} with an error");
        return errors == 0 ? 0 : 1;
    }

    private static bool IsTransient(JsonNode? output)
    {
        if ((string?)output?["output_type"] != "display_data" || output["data"] is not JsonObject data)
        {
            return false;
        }

        var html = Text(data["text/html"]);
        var plain = Text(data["text/plain"]);
        return html.Contains("<strong>Installing Packages</strong>", StringComparison.Ordinal)
            || html == "<div><div></div><div></div><div></div></div>"
            || plain.StartsWith("Loading extensions from ", StringComparison.Ordinal);
    }

    private static string Text(JsonNode? value) => value switch
    {
        JsonArray lines => string.Concat(lines.Select(l => (string?)l)),
        JsonValue single => (string?)single ?? string.Empty,
        _ => string.Empty,
    };
}
