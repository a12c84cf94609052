using Microsoft.ML.LabelTuning.IO;


namespace Microsoft.ML.LabelTuning;

/// <summary>Saving model zips so that a crash or a kill during the save never destroys the previous file.</summary>
public static class ModelSaveCatalog
{
    /// <summary>
    /// Saves <paramref name="model"/> and its input schema to <paramref name="filePath"/> atomically: the zip is written
    /// to a hidden temporary file in the same folder, flushed to disk and renamed over the target. A process killed at
    /// any moment leaves <paramref name="filePath"/> either as it was or complete. ML.NET's own
    /// <c>mlContext.Model.Save(model, schema, filePath)</c> truncates the target first, so a kill during it leaves a
    /// broken zip and the previous model is lost.
    /// </summary>
    /// <param name="catalog">The model operations catalog (<c>mlContext.Model</c>).</param>
    /// <param name="model">The trained model.</param>
    /// <param name="inputSchema">The schema of the model's input; may be null.</param>
    /// <param name="filePath">The zip to write; replaced if it exists.</param>
    public static void SaveAtomically(this ModelOperationsCatalog catalog, ITransformer model, DataViewSchema? inputSchema, string filePath)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        AtomicFile.Write(filePath, stream => catalog.Save(model, inputSchema, stream));
    }
}
