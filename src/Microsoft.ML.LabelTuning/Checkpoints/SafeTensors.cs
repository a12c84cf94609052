using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Checkpoints;

/// <summary>Whole-file conveniences over <see cref="SafeTensorsReader"/> and <see cref="SafeTensorsWriter"/>.</summary>
internal static class SafeTensors
{
    /// <summary>Reads every tensor of a file (into the current dispose scope) and its metadata.</summary>
    public static (Dictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata) ReadFile(string path)
    {
        using var reader = SafeTensorsReader.Open(path);
        var tensors = reader.Tensors.Keys.ToDictionary(name => name, name => reader.ReadTensor(name));
        return (tensors, reader.Metadata);
    }

    /// <summary>Writes tensors to a file atomically.</summary>
    public static void WriteFile(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => SafeTensorsWriter.Write(path, tensors, metadata);

    /// <summary>Writes tensors in safetensors format to a stream (used for entries inside model zips), with no temporary file.</summary>
    public static void Write(Stream destination, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
        => SafeTensorsWriter.Write(destination, tensors, metadata);

    /// <summary>Reads safetensors bytes from a stream; <paramref name="description"/> names the source in errors.</summary>
    public static (Dictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata) Read(Stream source, string description)
    {
        var temp = Path.Combine(Path.GetTempPath(), $"lt-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (var file = File.Create(temp))
            {
                source.CopyTo(file);
            }

            try
            {
                return ReadFile(temp);
            }
            catch (InvalidDataException ex)
            {
                throw new InvalidDataException($"{description}: {ex.Message.Replace(temp, description, StringComparison.Ordinal)}", ex);
            }
        }
        finally
        {
            File.Delete(temp);
        }
    }
}
