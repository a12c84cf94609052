using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Tests.Tokenizers;

/// <summary>One expected encoding from a cases.json fixture.</summary>
internal sealed record TokenizerCase(
    string Text,
    int[] Ids,
    bool ParseSpecial,
    bool SpecialTokensAdded,
    string? Decoded,
    string? DecodedWithSpecial,
    string Source);

/// <summary>The tokenizer fixtures: where they are, how to read their cases, and loaded tokenizers shared across tests.</summary>
internal static class TokenizerFixtures
{
    /// <summary>Names another SentencePiece cases.json (with tokenizer.model, and optionally tokenizer.json, beside it).</summary>
    internal const string CasesVariable = "LABELTUNING_TOKENIZER_CASES";

    private static readonly ConcurrentDictionary<string, LlamaTextTokenizer> s_loaded = new();
    private static readonly Lazy<string> s_scratch = new(() => Directory.CreateTempSubdirectory("lt-tokenizer-fixtures-").FullName);

    internal static string FixturesRoot => Path.Combine(AppContext.BaseDirectory, "Fixtures");

    /// <summary>The LLaMA-2 SentencePiece folder (tokenizer.model, cases.json).</summary>
    internal static string SentencePieceFolder => Path.Combine(FixturesRoot, "llama2-tokenizer");

    /// <summary>The LLaMA-2 tokenizer.json folder.</summary>
    internal static string LlamaJsonFolder => Path.Combine(FixturesRoot, "tokenizers", "llama2-json");

    /// <summary>The LLaMA-3 tokenizer fixture: tokenizer.json.gz, tokenizer_config.json and cases.json.gz.</summary>
    internal static string Llama3Folder => Path.Combine(FixturesRoot, "llama3-tokenizer");

    /// <summary>
    /// Writes a loadable LLaMA-3 tokenizer folder into <paramref name="target"/>: the fixture's tokenizer.json (unzipped,
    /// with <paramref name="edit"/> applied when given) and tokenizer_config.json.
    /// </summary>
    internal static string WriteLlama3Folder(string target, Action<JsonNode>? edit = null)
    {
        Directory.CreateDirectory(target);
        var json = Path.Combine(target, LlamaTextTokenizer.HuggingFaceFileName);
        using (var input = new System.IO.Compression.GZipStream(File.OpenRead(Path.Combine(Llama3Folder, "tokenizer.json.gz")), System.IO.Compression.CompressionMode.Decompress))
        {
            if (edit is null)
            {
                using var output = File.Create(json);
                input.CopyTo(output);
            }
            else
            {
                var node = JsonNode.Parse(input)!;
                edit(node);
                File.WriteAllText(json, node.ToJsonString());
            }
        }

        File.Copy(Path.Combine(Llama3Folder, "tokenizer_config.json"), Path.Combine(target, "tokenizer_config.json"), overwrite: true);
        return target;
    }

    /// <summary>The LLaMA-3 reference cases (ids from Hugging Face tokenizers, checked against two JavaScript tokenizers).</summary>
    internal static IReadOnlyList<TokenizerCase> ReadLlama3Cases()
    {
        using var input = new System.IO.Compression.GZipStream(File.OpenRead(Path.Combine(Llama3Folder, "cases.json.gz")), System.IO.Compression.CompressionMode.Decompress);
        using var document = JsonDocument.Parse(input);
        var file = Path.Combine(Llama3Folder, "cases.json.gz");
        return document.RootElement.GetProperty("cases").EnumerateArray()
            .Select(item => new TokenizerCase(
                item.GetProperty("text").GetString()!,
                item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                ParseSpecial: item.GetProperty("parse_special").GetBoolean(),
                SpecialTokensAdded: true,
                Decoded: null,
                DecodedWithSpecial: item.GetProperty("decoded").GetString(),
                Source: file))
            .ToList();
    }

    /// <summary>The folders of Hugging Face reference cases, one per tokenizer variant.</summary>
    internal static string HuggingFaceCasesRoot => Path.Combine(FixturesRoot, "tokenizers");

    /// <summary>The SentencePiece cases file: the environment variable's when set, else the fixture's.</summary>
    internal static string SentencePieceCasesFile
        => Environment.GetEnvironmentVariable(CasesVariable) is { Length: > 0 } path
            ? Path.GetFullPath(path)
            : Path.Combine(SentencePieceFolder, "cases.json");

    internal static LlamaTextTokenizer Load(string folder) => s_loaded.GetOrAdd(folder, LlamaTextTokenizer.FromModelFolder);

    /// <summary>Reads a cases.json: either the SentencePiece form (bos_prepended) or the Hugging Face reference form.</summary>
    internal static IReadOnlyList<TokenizerCase> ReadCases(string file)
    {
        using var document = JsonDocument.Parse(File.ReadAllBytes(file));
        var root = document.RootElement;
        var bosPrepended = !root.TryGetProperty("bos_prepended", out var bos) || bos.GetBoolean();
        var cases = new List<TokenizerCase>();
        foreach (var item in root.GetProperty("cases").EnumerateArray())
        {
            cases.Add(new TokenizerCase(
                item.GetProperty("text").GetString()!,
                item.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                ParseSpecial: item.TryGetProperty("parse_special", out var parse) && parse.GetBoolean(),
                SpecialTokensAdded: bosPrepended,
                Decoded: item.TryGetProperty("decoded", out var decoded) ? decoded.GetString() : null,
                DecodedWithSpecial: item.TryGetProperty("decoded_with_special", out var withSpecial) ? withSpecial.GetString() : null,
                Source: file));
        }

        return cases;
    }

    /// <summary>
    /// A loadable folder for a Hugging Face case folder: its tokenizer.json (the one its cases.json names, with its
    /// "override" edits applied) and its other files, written once to a scratch folder.
    /// </summary>
    internal static string MaterializeCaseFolder(string caseFolder)
    {
        var target = Path.Combine(s_scratch.Value, Path.GetFileName(caseFolder));
        lock (s_loaded)
        {
            if (Directory.Exists(target))
            {
                return target;
            }

            var spec = JsonNode.Parse(File.ReadAllText(Path.Combine(caseFolder, "cases.json")))!;
            var tokenizerPath = Path.GetFullPath(Path.Combine(caseFolder, (string)spec["tokenizer"]!));
            var tokenizer = JsonNode.Parse(File.ReadAllText(tokenizerPath))!;
            if (spec["override"] is JsonObject edits)
            {
                foreach (var (key, value) in edits)
                {
                    var parts = key.Split('.');
                    var node = tokenizer;
                    foreach (var part in parts[..^1])
                    {
                        node = node[part]!;
                    }

                    node[parts[^1]] = value?.DeepClone();
                }
            }

            var staging = target + ".partial";
            Directory.CreateDirectory(staging);
            File.WriteAllText(Path.Combine(staging, LlamaTextTokenizer.HuggingFaceFileName), tokenizer.ToJsonString());
            foreach (var file in Directory.GetFiles(caseFolder))
            {
                var name = Path.GetFileName(file);
                if (name is not ("cases.json" or LlamaTextTokenizer.HuggingFaceFileName))
                {
                    File.Copy(file, Path.Combine(staging, name));
                }
            }

            Directory.Move(staging, target);
            return target;
        }
    }

    /// <summary>A folder under this run's scratch folder, deleted with it.</summary>
    internal static string ScratchFolder(string name) => Directory.CreateDirectory(Path.Combine(s_scratch.Value, name)).FullName;

    /// <summary>Deletes the scratch folder; tokenizers already loaded stay usable, and later calls write it again.</summary>
    internal static void DeleteScratch()
    {
        lock (s_loaded)
        {
            if (s_scratch.IsValueCreated && Directory.Exists(s_scratch.Value))
            {
                Directory.Delete(s_scratch.Value, recursive: true);
            }
        }
    }

    /// <summary>A display name that shows the text of a case, escaped and shortened.</summary>
    internal static string Show(string text)
    {
        var escaped = JsonSerializer.Serialize(text, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        return escaped.Length > 50 ? escaped[..47] + "...\"" : escaped;
    }
}

/// <summary>A temporary folder for one test, deleted afterwards.</summary>
internal sealed class TempFolder : IDisposable
{
    internal TempFolder() => Path = Directory.CreateTempSubdirectory("lt-tokenizer-").FullName;

    internal string Path { get; }

    internal string Write(string name, string content)
    {
        var file = System.IO.Path.Combine(Path, name);
        File.WriteAllText(file, content);
        return file;
    }

    internal void CopyFrom(string folder, string name)
        => File.Copy(System.IO.Path.Combine(folder, name), System.IO.Path.Combine(Path, name));

    public void Dispose()
    {
        if (Directory.Exists(Path))
        {
            Directory.Delete(Path, recursive: true);
        }
    }
}
