using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Checkpoints;

/// <summary>How checkpoint keys are matched to a module's state-dict keys.</summary>
internal sealed record CheckpointLoadOptions
{
    /// <summary>
    /// Gets prefix rewrites applied to checkpoint keys, first match wins: (<c>"model."</c>, <c>""</c>) loads a
    /// <c>LlamaForCausalLM</c> checkpoint's decoder into a <see cref="LlamaModel"/>.
    /// </summary>
    public IReadOnlyList<(string From, string To)> KeyPrefixMap { get; init; } = [];

    /// <summary>
    /// Gets checkpoint keys to skip (matched before and after rewriting; a trailing <c>*</c> matches a prefix),
    /// e.g. <c>lm_head.weight</c> when loading only the decoder.
    /// </summary>
    public IReadOnlyCollection<string> IgnoreKeys { get; init; } = [];

    /// <summary>
    /// Gets module keys that may be absent from the checkpoint and keep their current values (a trailing <c>*</c>
    /// matches a prefix), e.g. <c>score.weight</c> of a new classification head.
    /// </summary>
    public IReadOnlyCollection<string> AllowMissingKeys { get; init; } = [];
}

/// <summary>What a load did.</summary>
/// <param name="Loaded">Module keys filled from the checkpoint.</param>
/// <param name="Ignored">Checkpoint keys skipped through <see cref="CheckpointLoadOptions.IgnoreKeys"/>.</param>
/// <param name="MissingAllowed">Module keys left as they were through <see cref="CheckpointLoadOptions.AllowMissingKeys"/>.</param>
internal sealed record CheckpointLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Ignored, IReadOnlyList<string> MissingAllowed);

/// <summary>
/// Loads Hugging Face safetensors checkpoints strictly into TorchSharp modules whose state-dict keys equal the
/// checkpoint's, and saves modules as Hugging Face folders. A missing, extra or wrongly shaped tensor is an
/// <see cref="InvalidDataException"/> naming the tensor, the file, and the shape the config implies; every problem
/// is found before any weight is copied. Weights are converted (F32/F16/BF16) to the module's dtype on the way in.
/// </summary>
internal static class CheckpointLoader
{
    private const int MaxListedProblems = 20;

    /// <summary>Loads a causal LM (config + weights) from a Hugging Face folder.</summary>
    public static LlamaForCausalLM LoadCausalLM(string folder, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var hf = HfModelFolder.Open(folder);
        var config = hf.LoadConfig();
        var model = new LlamaForCausalLM(config, device, dtype, initializeWeights: false);
        try
        {
            // Some tied checkpoints still carry a copy of the head; it is the embedding by definition.
            var options = config.TieWordEmbeddings ? new CheckpointLoadOptions { IgnoreKeys = ["lm_head.weight"] } : null;
            LoadInto(model, hf, options);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads the decoder stack from a Hugging Face folder: a <c>LlamaForCausalLM</c> checkpoint's <c>model.*</c>
    /// keys (its <c>lm_head.weight</c> is ignored) or a bare <c>LlamaModel</c> checkpoint.
    /// </summary>
    public static LlamaModel LoadModel(string folder, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var hf = HfModelFolder.Open(folder);
        var config = hf.LoadConfig();
        var model = new LlamaModel(config, device, dtype, initializeWeights: false);
        try
        {
            LoadInto(model, hf, DecoderOptions(hf));
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The options that load a folder's decoder weights into a <see cref="LlamaModel"/>, whichever way it was saved.</summary>
    public static CheckpointLoadOptions DecoderOptions(HfModelFolder folder)
    {
        var prefixed = folder.TensorNames().Any(n => n.StartsWith("model.", StringComparison.Ordinal));
        return prefixed
            ? new CheckpointLoadOptions { KeyPrefixMap = [("model.", "")], IgnoreKeys = ["lm_head.weight"] }
            : new CheckpointLoadOptions { IgnoreKeys = ["lm_head.weight"] };
    }

    /// <summary>Loads a folder's weights (single or sharded) into <paramref name="module"/>.</summary>
    public static CheckpointLoadReport LoadInto(nn.Module module, string folderOrFile, CheckpointLoadOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folderOrFile);
        if (File.Exists(folderOrFile))
        {
            return LoadFiles(module, [folderOrFile], null, folderOrFile, options ?? new CheckpointLoadOptions());
        }

        return LoadInto(module, HfModelFolder.Open(folderOrFile), options);
    }

    /// <summary>Loads an opened folder's weights into <paramref name="module"/>.</summary>
    public static CheckpointLoadReport LoadInto(nn.Module module, HfModelFolder folder, CheckpointLoadOptions? options = null)
        => LoadFiles(module, folder.WeightFiles, folder.WeightMap, folder.WeightsPath, options ?? new CheckpointLoadOptions());

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (each atomically) for a module's state dict.</summary>
    /// <param name="module">The module; its state-dict keys are written as they are.</param>
    /// <param name="config">The config to write; <c>torch_dtype</c> is set to the saved dtype.</param>
    /// <param name="folder">The target folder, created if needed.</param>
    /// <param name="dtype">Converts floating-point weights to this type, when given.</param>
    public static void SaveHfFolder(nn.Module module, LlamaConfig config, string folder, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        SaveHfFolder(module.state_dict(), config, folder, dtype);
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (each atomically) for a state dict.</summary>
    public static void SaveHfFolder(IReadOnlyDictionary<string, Tensor> stateDict, LlamaConfig config, string folder, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(stateDict);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        var savedType = dtype ?? stateDict.Values.FirstOrDefault(t => t.is_floating_point())?.dtype ?? ScalarType.Float32;
        var toWrite = config with
        {
            TorchDtype = TorchDtypeName(savedType),
            Architectures = config.Architectures ?? (stateDict.Keys.Any(k => k.StartsWith("model.", StringComparison.Ordinal)) ? ["LlamaForCausalLM"] : ["LlamaModel"]),
        };
        Directory.CreateDirectory(folder);
        SafeTensorsWriter.Write(Path.Combine(folder, HfModelFolder.SafeTensorsFileName), stateDict, dtype: dtype);
        AtomicFile.WriteText(Path.Combine(folder, HfModelFolder.ConfigFileName), toWrite.ToJson());
    }

    /// <summary>The Hugging Face <c>torch_dtype</c> name of a type.</summary>
    public static string TorchDtypeName(ScalarType type) => type switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.Float16 => "float16",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float64 => "float64",
        _ => type.ToString().ToLowerInvariant(),
    };

    private static CheckpointLoadReport LoadFiles(
        nn.Module module, IReadOnlyList<string> files, IReadOnlyDictionary<string, string>? weightMap, string describedAs, CheckpointLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(module);
        var readers = new List<SafeTensorsReader>();
        try
        {
            foreach (var file in files)
            {
                readers.Add(SafeTensorsReader.Open(file));
            }

            var target = module.state_dict();
            var problems = new List<string>();
            var plan = new List<(SafeTensorsReader Reader, string Key, string TargetKey)>();
            var ignored = new List<string>();
            var sourceOf = new Dictionary<string, string>(StringComparer.Ordinal);

            foreach (var reader in readers)
            {
                var fileName = Path.GetFileName(reader.Path);
                foreach (var info in reader.Tensors.Values)
                {
                    var key = info.Name;
                    if (weightMap is not null && (!weightMap.TryGetValue(key, out var listed) || listed != fileName))
                    {
                        problems.Add(listed is null
                            ? $"Tensor '{key}' is in shard '{reader.Path}' but not in the index '{describedAs}'."
                            : $"Tensor '{key}' is in shard '{reader.Path}' but the index '{describedAs}' places it in '{listed}'.");
                        continue;
                    }

                    if (sourceOf.TryGetValue(key, out var earlier))
                    {
                        problems.Add($"Tensor '{key}' is stored twice, in '{earlier}' and '{reader.Path}'.");
                        continue;
                    }

                    sourceOf[key] = reader.Path;
                    var mapped = MapKey(key, options.KeyPrefixMap);
                    if (Matches(options.IgnoreKeys, key) || Matches(options.IgnoreKeys, mapped))
                    {
                        ignored.Add(key);
                        continue;
                    }

                    var renamed = mapped == key ? string.Empty : $" (loaded as '{mapped}')";
                    if (!target.TryGetValue(mapped, out var destination))
                    {
                        problems.Add($"Tensor '{key}'{renamed} with shape {info.ShapeText} in '{reader.Path}' has no counterpart in the {module.GetType().Name}; the checkpoint does not match the config (or pass the key in IgnoreKeys).");
                        continue;
                    }

                    if (!info.Shape.SequenceEqual(destination.shape))
                    {
                        problems.Add($"Tensor '{key}'{renamed} has shape {info.ShapeText} in '{reader.Path}' but the config implies [{string.Join(", ", destination.shape)}].");
                        continue;
                    }

                    if (destination.is_floating_point() != SafeTensorsDTypes.IsFloatingPoint(info.DType))
                    {
                        problems.Add($"Tensor '{key}'{renamed} is stored as {info.DType} in '{reader.Path}' but the model holds {destination.dtype}.");
                        continue;
                    }

                    plan.Add((reader, key, mapped));
                }
            }

            if (weightMap is not null)
            {
                foreach (var (key, file) in weightMap)
                {
                    if (!sourceOf.ContainsKey(key) && !problems.Any(p => p.Contains($"'{key}'", StringComparison.Ordinal)))
                    {
                        problems.Add($"Tensor '{key}' is listed in the index '{describedAs}' under '{file}' but that shard does not hold it.");
                    }
                }
            }

            var loadedKeys = new HashSet<string>(plan.Select(p => p.TargetKey), StringComparer.Ordinal);
            var missingAllowed = new List<string>();
            foreach (var (key, tensor) in target)
            {
                if (loadedKeys.Contains(key))
                {
                    continue;
                }

                if (Matches(options.AllowMissingKeys, key))
                {
                    missingAllowed.Add(key);
                    continue;
                }

                var expectedName = UnmapKey(key, options.KeyPrefixMap);
                var shown = expectedName == key ? $"'{key}'" : $"'{expectedName}' (for '{key}')";
                problems.Add($"Tensor {shown} is missing from '{describedAs}'; the config implies shape [{string.Join(", ", tensor.shape)}].");
            }

            if (problems.Count > 0)
            {
                var listed = string.Join(Environment.NewLine, problems.Take(MaxListedProblems).Select(p => "  " + p));
                var more = problems.Count > MaxListedProblems ? $"{Environment.NewLine}  ... and {problems.Count - MaxListedProblems} more." : string.Empty;
                // Name the config too: a shape the checkpoint and config disagree on may be the config's fault.
                var configPath = module switch
                {
                    LlamaModel decoder => decoder.Config.SourcePath,
                    LlamaForCausalLM causal => causal.Config.SourcePath,
                    _ => null,
                };
                var builtFrom = configPath is null ? string.Empty : $" built from '{configPath}'";
                throw new InvalidDataException(
                    $"Checkpoint '{describedAs}' does not match the {module.GetType().Name}{builtFrom} ({problems.Count} problem(s)); nothing was loaded:{Environment.NewLine}{listed}{more}");
            }

            foreach (var (reader, key, mapped) in plan)
            {
                reader.ReadInto(key, target[mapped]);
            }

            return new CheckpointLoadReport(plan.Select(p => p.TargetKey).ToArray(), ignored, missingAllowed);
        }
        finally
        {
            foreach (var reader in readers)
            {
                reader.Dispose();
            }
        }
    }

    private static string MapKey(string key, IReadOnlyList<(string From, string To)> map)
    {
        foreach (var (from, to) in map)
        {
            if (key.StartsWith(from, StringComparison.Ordinal))
            {
                return to + key[from.Length..];
            }
        }

        return key;
    }

    private static string UnmapKey(string key, IReadOnlyList<(string From, string To)> map)
    {
        foreach (var (from, to) in map)
        {
            if (key.StartsWith(to, StringComparison.Ordinal))
            {
                return from + key[to.Length..];
            }
        }

        return key;
    }

    private static bool Matches(IReadOnlyCollection<string> patterns, string key)
    {
        foreach (var pattern in patterns)
        {
            if (pattern.EndsWith('*')
                ? key.StartsWith(pattern[..^1], StringComparison.Ordinal)
                : string.Equals(pattern, key, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }
}
