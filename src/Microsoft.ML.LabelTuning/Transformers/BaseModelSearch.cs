namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Finds the base model a saved classifier was trained on by its SHA-256, not by its absolute path, so a saved model
/// moves between machines and folders. Candidates, in order: the path recorded at save time; each folder the caller
/// names on load (<c>mlContext.Model.LoadLabelTuning(..., baseModelFolders)</c>); each folder of the
/// <c>LABELTUNING_MODELS</c> environment variable (a search path separated like <c>PATH</c>); the folder that holds the
/// zip, when the caller's entry point knows it. Each search folder may be the base folder itself or hold base folders
/// one level beneath it (a folder with the saved base's name is tried first). The first candidate whose config and
/// weights hash to the saved SHA-256 wins; one that hashes differently is never used.
/// </summary>
internal static class BaseModelSearch
{
    /// <summary>The environment variable holding extra folders to search, separated by <see cref="Path.PathSeparator"/>.</summary>
    public const string EnvironmentVariable = "LABELTUNING_MODELS";

    private static readonly AsyncLocal<Scope?> _ambient = new();

    /// <summary>
    /// Makes <paramref name="folders"/> and the zip's folder visible to loads on this logical call path until the
    /// returned scope is disposed. ML.NET builds our transformers by reflection, so the folders travel this way.
    /// </summary>
    public static IDisposable Use(IReadOnlyList<string> folders, string? zipFolder)
    {
        var scope = new Scope(folders, zipFolder, _ambient.Value);
        _ambient.Value = scope;
        return scope;
    }

    /// <summary>Returns the folder holding the base model whose fingerprint is <paramref name="sha256"/>.</summary>
    /// <exception cref="FileNotFoundException">No candidate folder holds a base model.</exception>
    /// <exception cref="InvalidDataException">Base models were found, but none hashes to <paramref name="sha256"/>.</exception>
    public static string Find(string savedPath, string sha256)
    {
        var looked = new List<string>();
        var mismatched = new List<string>();
        foreach (var candidate in Candidates(savedPath))
        {
            if (!File.Exists(Path.Combine(candidate, "config.json")))
            {
                continue;
            }

            string sha;
            try
            {
                sha = BaseModelReference.Fingerprint(candidate);
            }
            catch (IOException ex)
            {
                looked.Add($"'{candidate}' (unreadable: {ex.Message})");
                continue;
            }

            if (string.Equals(sha, sha256, StringComparison.OrdinalIgnoreCase))
            {
                return candidate;
            }

            mismatched.Add($"'{candidate}' (hashes to {sha})");
        }

        var searched = SearchFolders().Select(f => $"'{f}'").ToList();
        var where = $"It looked in the saved path '{savedPath}'" +
            (searched.Count > 0 ? $" and in {string.Join(", ", searched)} (each folder and the folders beneath it)" : "") +
            $". Name folders to search with mlContext.Model.LoadLabelTuning(path, out schema, baseModelFolders) or the {EnvironmentVariable} " +
            $"environment variable (folders separated by '{Path.PathSeparator}'), or retrain with EmbedBaseModel = true for a self-contained model.";
        if (mismatched.Count > 0)
        {
            throw new InvalidDataException(
                $"The saved model was trained on a base model whose config and weights hash to {sha256}, and no base model found hashes to that: " +
                $"{string.Join(", ", mismatched.Concat(looked))}. The adapter only fits the original base model; one that has changed since this " +
                $"model was trained is refused. {where}");
        }

        throw new FileNotFoundException(
            $"The saved model was trained on the base model in '{savedPath}' (SHA-256 {sha256}), which is missing. Put the same base model there " +
            $"or in a folder searched at load. {where}" + (looked.Count > 0 ? $" Unreadable: {string.Join(", ", looked)}." : ""),
            savedPath);
    }

    /// <summary>The extra folders searched after the saved path, in order: the caller's, the environment's, the zip's.</summary>
    internal static IReadOnlyList<string> SearchFolders()
    {
        var folders = new List<string>();
        var scope = _ambient.Value;
        if (scope is not null)
        {
            folders.AddRange(scope.Folders);
        }

        var variable = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(variable))
        {
            folders.AddRange(variable.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        }

        if (scope?.ZipFolder is { } zipFolder)
        {
            folders.Add(zipFolder);
        }

        return folders.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal).ToList();
    }

    private static IEnumerable<string> Candidates(string savedPath)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(savedPath));
        var all = new List<string> { savedPath };
        foreach (var folder in SearchFolders())
        {
            all.Add(folder);
            if (!Directory.Exists(folder))
            {
                continue;
            }

            if (name.Length > 0)
            {
                all.Add(Path.Combine(folder, name));
            }

            string[] children;
            try
            {
                children = Directory.GetDirectories(folder);
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }

            Array.Sort(children, StringComparer.Ordinal);
            all.AddRange(children);
        }

        foreach (var candidate in all)
        {
            var full = Path.GetFullPath(candidate);
            if (seen.Add(full) && Directory.Exists(full))
            {
                yield return full;
            }
        }
    }

    private sealed class Scope : IDisposable
    {
        private readonly Scope? _previous;

        public Scope(IReadOnlyList<string> folders, string? zipFolder, Scope? previous)
        {
            Folders = folders.ToArray();
            ZipFolder = zipFolder;
            _previous = previous;
        }

        public IReadOnlyList<string> Folders { get; }

        public string? ZipFolder { get; }

        public void Dispose() => _ambient.Value = _previous;
    }
}
