using System.Reflection;
using System.Runtime.ExceptionServices;
using Microsoft.ML.LabelTuning.Transformers;

namespace Microsoft.ML.LabelTuning;

/// <summary>Loading model zips whose base model may have moved, with errors that arrive as themselves.</summary>
public static class ModelLoadCatalog
{
    /// <summary>
    /// Loads a model saved with <c>mlContext.Model.Save</c> (or <see cref="ModelSaveCatalog.SaveAtomically"/>), finding
    /// each label-tuning transformer's base model by its SHA-256 rather than by the absolute path recorded at save time.
    /// The folders searched, in order: the recorded path; <paramref name="baseModelFolders"/>; the folders in the
    /// <c>LABELTUNING_MODELS</c> environment variable (separated by <see cref="Path.PathSeparator"/>); the folder that
    /// holds <paramref name="filePath"/>. Each may be the base model folder itself or hold base model folders one level
    /// beneath it. A base model whose config and weights hash differently is never used.
    /// </summary>
    /// <remarks>
    /// ML.NET builds transformers by reflection and wraps their errors in two <see cref="TargetInvocationException"/>s;
    /// this method throws the error itself: <see cref="FileNotFoundException"/> when no base model is found, and
    /// <see cref="InvalidDataException"/> when base models were found but none has the expected hash (both messages
    /// name the hash expected and the folders searched). Plain <c>mlContext.Model.Load</c> still works and searches the
    /// recorded path and <c>LABELTUNING_MODELS</c>, but not the zip's folder, and its errors arrive wrapped (read
    /// the innermost exception).
    /// </remarks>
    /// <param name="catalog">The model operations catalog (<c>mlContext.Model</c>).</param>
    /// <param name="filePath">The model zip.</param>
    /// <param name="inputSchema">The schema the model was saved with.</param>
    /// <param name="baseModelFolders">Extra folders to search for base models, or null.</param>
    /// <returns>The loaded model.</returns>
    public static ITransformer LoadLabelTuning(this ModelOperationsCatalog catalog, string filePath, out DataViewSchema inputSchema,
        IEnumerable<string>? baseModelFolders = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        if (!File.Exists(filePath))
        {
            throw new FileNotFoundException($"The model file '{filePath}' was not found.", filePath);
        }

        var zipFolder = Path.GetDirectoryName(Path.GetFullPath(filePath));
        using (BaseModelSearch.Use(baseModelFolders?.ToArray() ?? [], zipFolder))
        {
            try
            {
                return catalog.Load(filePath, out inputSchema);
            }
            catch (TargetInvocationException ex) when (Unwrap(ex) is { } inner)
            {
                ExceptionDispatchInfo.Capture(inner).Throw();
                throw; // unreachable
            }
        }
    }

    /// <summary>The first exception beneath the reflection wrappers ML.NET adds, or null when there is none.</summary>
    internal static Exception? Unwrap(Exception error)
    {
        var current = error;
        while (current is TargetInvocationException { InnerException: { } inner })
        {
            current = inner;
        }

        return ReferenceEquals(current, error) ? null : current;
    }
}
