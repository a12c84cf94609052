using System.Globalization;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>The JSON half of a portable pretraining state (<c>pretraining-state.json</c>).</summary>
internal sealed record PortableStateInfo
{
    /// <summary>Gets the layout version; a later library reads it or migrates it with a clear message.</summary>
    [JsonPropertyName("format_version")]
    public int FormatVersion { get; init; } = PortablePretrainingState.FormatVersion;

    /// <summary>Gets the optimizer steps taken by the run.</summary>
    [JsonPropertyName("step")]
    public long Step { get; init; }

    /// <summary>Gets the training tokens seen.</summary>
    [JsonPropertyName("tokens")]
    public long Tokens { get; init; }

    /// <summary>Gets the pass over the corpus the next window comes from.</summary>
    [JsonPropertyName("epoch")]
    public int Epoch { get; init; }

    /// <summary>Gets the index, inside the epoch's permutation, of the next window.</summary>
    [JsonPropertyName("window_in_epoch")]
    public long WindowInEpoch { get; init; }

    /// <summary>Gets the wall time spent training so far, all sessions together.</summary>
    [JsonPropertyName("train_seconds")]
    public double TrainSeconds { get; init; }

    /// <summary>Gets the hash of the recipe (architecture, data, tokenizer, batch, rates, schedule, seed).</summary>
    [JsonPropertyName("fingerprint")]
    public string Fingerprint { get; init; } = string.Empty;

    /// <summary>Gets the content hash of the training corpus and tokenizer (<see cref="PackedCorpus.ContentHash"/>).</summary>
    [JsonPropertyName("corpus_hash")]
    public string CorpusHash { get; init; } = string.Empty;

    /// <summary>Gets the content hash of the validation file and tokenizer, or "none".</summary>
    [JsonPropertyName("valid_hash")]
    public string ValidationHash { get; init; } = string.Empty;

    /// <summary>Gets the SHA-256 of the tokenizer file.</summary>
    [JsonPropertyName("tokenizer_sha256")]
    public string TokenizerSha256 { get; init; } = string.Empty;

    /// <summary>Gets the recipe in words, so that a refused resume can say what differs.</summary>
    [JsonPropertyName("recipe")]
    public string Recipe { get; init; } = string.Empty;

    /// <summary>Gets the weights file (float32 safetensors, Hugging Face keys) in the same folder.</summary>
    [JsonPropertyName("weights_file")]
    public string WeightsFile { get; init; } = string.Empty;

    /// <summary>Gets the SHA-256 of <see cref="WeightsFile"/>.</summary>
    [JsonPropertyName("weights_sha256")]
    public string WeightsSha256 { get; init; } = string.Empty;

    /// <summary>Gets what the optimizer state is: the moments are not kept and are reset on every start from this state.</summary>
    [JsonPropertyName("optimizer")]
    public string Optimizer { get; init; } = "AdamW moments not kept: reset to zero (bias correction restarts) with a linear re-warmup";

    /// <summary>Gets the run's history in words: how it was started, migrated or changed.</summary>
    [JsonPropertyName("history")]
    public IReadOnlyList<string> History { get; init; } = [];

    /// <summary>Gets when the state was written (UTC, ISO 8601).</summary>
    [JsonPropertyName("saved_at")]
    public string SavedAt { get; init; } = string.Empty;
}

/// <summary>
/// A compact copy of a pretraining run meant to be committed to a repository, so that a run of many hours continues on
/// a fresh machine: <c>pretraining-state.json</c>, <c>weights-{step}.safetensors</c> (every parameter, float32) and
/// <c>metrics.jsonl</c>. It keeps the position (step, tokens, data order), the hashes of corpus and tokenizer and the
/// recipe, but not the AdamW moments (about twice the weights): a start from it resets them and re-warms the
/// learning rate. Files are written atomically, the weights before the JSON that names them.
/// </summary>
internal static class PortablePretrainingState
{
    public const int FormatVersion = 1;
    public const string StateFileName = "pretraining-state.json";

    private static readonly JsonSerializerOptions _json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Reads the state JSON, or null when the folder holds none.</summary>
    public static PortableStateInfo? Read(string folder)
    {
        var path = Path.Combine(folder, StateFileName);
        if (!File.Exists(path))
        {
            return null;
        }

        PortableStateInfo? info;
        try
        {
            info = JsonSerializer.Deserialize<PortableStateInfo>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Portable pretraining state '{path}' is not valid JSON: {e.Message}", e);
        }

        if (info is null)
        {
            throw new InvalidDataException($"Portable pretraining state '{path}' holds null instead of a state.");
        }

        if (info.FormatVersion != FormatVersion)
        {
            throw new InvalidDataException(
                $"Portable pretraining state '{path}' has format version {info.FormatVersion} but this library reads version {FormatVersion}. " +
                "Use the library version that wrote it, or migrate it with that version's tools; the run is not restarted.");
        }

        return info;
    }

    /// <summary>
    /// Refuses, with what differs, a state whose corpus, validation file, tokenizer or recipe is not this run's.
    /// </summary>
    public static void CheckMatches(string folder, PortableStateInfo info, string corpusHash, string validationHash, string tokenizerSha256, string fingerprint, string recipe)
    {
        var path = Path.Combine(folder, StateFileName);
        if (info.TokenizerSha256 != tokenizerSha256)
        {
            throw new InvalidDataException(
                $"The portable pretraining state '{path}' was trained with a tokenizer of SHA-256 {info.TokenizerSha256} but the tokenizer here has {tokenizerSha256}. Resume with the tokenizer the run was started with.");
        }

        if (info.CorpusHash != corpusHash)
        {
            throw new InvalidDataException(
                $"The portable pretraining state '{path}' was trained on a corpus of content hash {info.CorpusHash} but the corpus rebuilt here has {corpusHash}. " +
                "Rebuild it from the registries (bash data/fetch.sh, then LabelTuning.DataPrep build-all) with the versions named in data/README.md; a different corpus would change the data order, so the run is not resumed.");
        }

        if (info.ValidationHash != validationHash)
        {
            throw new InvalidDataException(
                $"The portable pretraining state '{path}' was validated on a file of content hash {info.ValidationHash} but the validation file here has {validationHash}.");
        }

        if (info.Fingerprint != fingerprint)
        {
            throw new InvalidDataException(
                $"The portable pretraining state '{path}' belongs to another recipe. The state's: {info.Recipe}. This run's: {recipe}. Use the state's options to resume.");
        }
    }

    /// <summary>Copies the weights the state names into <paramref name="parameters"/> after checking their hash and shapes.</summary>
    public static void LoadWeights(string folder, PortableStateInfo info, IReadOnlyList<(string Name, Parameter Parameter)> parameters)
    {
        var path = Path.Combine(folder, info.WeightsFile);
        if (!File.Exists(path))
        {
            throw new InvalidDataException($"Portable pretraining state '{Path.Combine(folder, StateFileName)}' names '{info.WeightsFile}' but that file does not exist.");
        }

        var sha = Sha256Of(path);
        if (sha != info.WeightsSha256)
        {
            throw new InvalidDataException(
                $"Weights '{path}' have SHA-256 {sha} but '{StateFileName}' expects {info.WeightsSha256}; the file is damaged or from another state.");
        }

        using var scope = NewDisposeScope();
        var (tensors, _) = SafeTensors.ReadFile(path);
        TrainingEngine.CopyParameters(tensors, string.Empty, parameters, path);
    }

    /// <summary>
    /// Writes the weights (float32) and then the JSON, then deletes older weights files and copies the metrics file.
    /// </summary>
    public static void Write(string folder, IReadOnlyList<(string Name, Parameter Parameter)> parameters, PortableStateInfo info, string? metricsPath)
    {
        Directory.CreateDirectory(folder);
        var weightsFile = $"weights-{info.Step.ToString("D9", CultureInfo.InvariantCulture)}.safetensors";
        var weightsPath = Path.Combine(folder, weightsFile);
        using (var scope = NewDisposeScope())
        {
            var tensors = parameters.ToDictionary(p => p.Name, p => p.Parameter.detach().cpu().to_type(ScalarType.Float32));
            var metadata = new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["step"] = info.Step.ToString(CultureInfo.InvariantCulture),
                ["fingerprint"] = info.Fingerprint,
            };
            SafeTensorsWriter.Write(weightsPath, tensors, metadata);
        }

        if (metricsPath is not null && File.Exists(metricsPath))
        {
            AtomicFile.WriteText(Path.Combine(folder, PretrainingCheckpoint.MetricsFileName), File.ReadAllText(metricsPath));
        }

        var saved = info with
        {
            WeightsFile = weightsFile,
            WeightsSha256 = Sha256Of(weightsPath),
            SavedAt = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        AtomicFile.WriteText(Path.Combine(folder, StateFileName), JsonSerializer.Serialize(saved, _json));
        foreach (var old in Directory.EnumerateFiles(folder, "weights-*.safetensors"))
        {
            if (!string.Equals(Path.GetFileName(old), weightsFile, StringComparison.Ordinal))
            {
                File.Delete(old);
            }
        }
    }

    /// <summary>SHA-256 (lowercase hex) of a file.</summary>
    public static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }
}
