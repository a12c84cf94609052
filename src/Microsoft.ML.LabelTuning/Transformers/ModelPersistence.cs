using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Saves and loads a classifier inside an ML.NET model zip: <c>Description.json</c> (method, settings, classes,
/// columns, base model path and SHA-256), <c>Adapter.safetensors</c> (the tuned tensors: adapter and head), and, when
/// the base model is embedded, its files under <c>Base/</c>.
/// </summary>
internal static class ModelPersistence
{
    private const string DescriptionEntry = "Description.json";
    private const string AdapterEntry = "Adapter.safetensors";
    private const string BaseEntryPrefix = "Base_";

    private static readonly JsonSerializerOptions _json = new(SettingsJson.Options) { WriteIndented = true };

    public static void Save(ModelSaveContext ctx, ClassifierRuntime runtime)
    {
        var description = runtime.Description;
        var descriptionBytes = JsonSerializer.SerializeToUtf8Bytes(description, _json);
        ctx.SaveBinaryStream(DescriptionEntry, writer => writer.Write(descriptionBytes));

        using (var scope = NewDisposeScope())
        {
            var tensors = runtime.Classifier.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().cpu());
            using var buffer = new MemoryStream();
            SafeTensors.Write(buffer, tensors, new Dictionary<string, string> { ["format"] = "pt", ["method"] = description.Method.ToString() });
            var bytes = buffer.ToArray();
            ctx.SaveBinaryStream(AdapterEntry, writer => writer.Write(bytes));
        }

        if (description.BaseModelEmbedded)
        {
            foreach (var name in description.EmbeddedFiles)
            {
                var path = Path.Combine(description.BaseModelPath, name);
                ctx.SaveBinaryStream(BaseEntryPrefix + name, writer =>
                {
                    using var file = File.OpenRead(path);
                    file.CopyTo(writer.BaseStream);
                });
            }
        }
    }

    public static ClassifierRuntime Load(IHostEnvironment env, ModelLoadContext ctx, VersionInfo version)
    {
        ctx.CheckAtModel(version);
        var descriptionBytes = ReadEntry(ctx, DescriptionEntry);
        ClassifierDescription description;
        try
        {
            description = JsonSerializer.Deserialize<ClassifierDescription>(descriptionBytes, _json)
                ?? throw new InvalidDataException($"{DescriptionEntry} is empty.");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"The saved model's {DescriptionEntry} is not valid: {ex.Message}", ex);
        }

        string folder;
        if (description.BaseModelEmbedded)
        {
            folder = ExtractEmbeddedBase(ctx, description);
        }
        else
        {
            // By hash, not by path: the base may have moved (BaseModelSearch says where it looks).
            folder = BaseModelSearch.Find(description.BaseModelPath, description.BaseModelSha256);
            description = description with { BaseModelPath = folder };
        }

        var internalEnv = env as IHostEnvironmentInternal;
        var device = DeviceSelection.Select(internalEnv?.GpuDeviceId, internalEnv?.FallbackToCpu ?? false);
        var adapterBytes = ReadEntry(ctx, AdapterEntry);
        var (model, tokenizer) = ClassifierFactory.LoadBase(folder, device, DeviceSelection.ParseDtype(description.Dtype));
        IClassifierModel classifier;
        try
        {
            classifier = TuningMethodRegistry.Get(description.Method).Factory.Build(model, description.ClassNames.Length, description.Settings, description.TokenLevel);
        }
        catch
        {
            model.Dispose();
            throw;
        }

        try
        {
            LoadTrainable(classifier, adapterBytes);
        }
        catch
        {
            classifier.Dispose(); // it owns the decoder
            throw;
        }

        var encoder = new TextEncoder(tokenizer, description.MaxSequenceLength, description.Truncation, description.TextPrefix);
        VBuffer<ReadOnlyMemory<char>>? keyValues = description.ClassNamesAreKeyValues
            ? new VBuffer<ReadOnlyMemory<char>>(description.ClassNames.Length, description.ClassNames.Select(c => c.AsMemory()).ToArray())
            : null;
        return new ClassifierRuntime(classifier, encoder, device, description) { KeyValues = keyValues };
    }

    /// <summary>Copies the saved adapter and head tensors into the rebuilt classifier; a missing, extra or misshapen one is an error.</summary>
    private static void LoadTrainable(IClassifierModel classifier, byte[] adapterBytes)
    {
        using (var scope = NewDisposeScope())
        {
            var (tensors, _) = SafeTensors.Read(new MemoryStream(adapterBytes), $"{AdapterEntry} in the saved model");
            var trainable = classifier.TrainableParameters();
            var expected = trainable.Select(p => p.Name).ToHashSet();
            var extra = tensors.Keys.Where(k => !expected.Contains(k)).ToList();
            if (extra.Count > 0)
            {
                throw new InvalidDataException($"The saved model's {AdapterEntry} has unexpected tensor(s): {string.Join(", ", extra)}.");
            }

            using var noGrad = no_grad();
            foreach (var (name, parameter) in trainable)
            {
                if (!tensors.TryGetValue(name, out var value))
                {
                    throw new InvalidDataException($"The saved model's {AdapterEntry} lacks tensor '{name}'.");
                }

                if (!value.shape.SequenceEqual(parameter.shape))
                {
                    throw new InvalidDataException(
                        $"Tensor '{name}' in the saved model has shape [{string.Join(", ", value.shape)}] but the model expects [{string.Join(", ", parameter.shape)}].");
                }

                parameter.copy_(value);
            }
        }
    }

    private static string ExtractEmbeddedBase(ModelLoadContext ctx, ClassifierDescription description)
    {
        var folder = Path.Combine(Path.GetTempPath(), "Microsoft.ML.LabelTuning", "base-" + description.BaseModelSha256);
        if (Directory.Exists(folder) && BaseModelReference.Fingerprint(folder) == description.BaseModelSha256)
        {
            return folder;
        }

        var staging = folder + "." + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(staging);
        foreach (var name in description.EmbeddedFiles)
        {
            if (name.Contains('/') || name.Contains('\\') || name.Contains(".."))
            {
                throw new InvalidDataException($"Embedded base model file name '{name}' is not a plain file name.");
            }

            var loaded = ctx.TryLoadBinaryStream(BaseEntryPrefix + name, reader =>
            {
                using var file = File.Create(Path.Combine(staging, name));
                reader.BaseStream.CopyTo(file);
            });
            if (!loaded)
            {
                throw new InvalidDataException($"The saved model says it embeds base model file '{name}', but the entry is missing.");
            }
        }

        var sha = BaseModelReference.Fingerprint(staging);
        if (sha != description.BaseModelSha256)
        {
            Directory.Delete(staging, recursive: true);
            throw new InvalidDataException($"The embedded base model hashes to {sha} but the saved model expects {description.BaseModelSha256}; the zip is corrupt.");
        }

        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        Directory.Move(staging, folder);
        return folder;
    }

    private static byte[] ReadEntry(ModelLoadContext ctx, string name)
    {
        byte[]? bytes = null;
        if (!ctx.TryLoadBinaryStream(name, reader =>
        {
            using var memory = new MemoryStream();
            reader.BaseStream.CopyTo(memory);
            bytes = memory.ToArray();
        }))
        {
            throw new InvalidDataException($"The saved model lacks its '{name}' entry; it was not written by this library or is corrupt.");
        }

        return bytes!;
    }
}
