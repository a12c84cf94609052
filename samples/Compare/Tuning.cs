using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.LabelTuning.Sweep;
using Spectre.Console;

namespace Compare;

/// <summary>The learning rate and epochs chosen for one method on one data set, and the validation evidence for them.</summary>
internal sealed record TunedSetting(
    string Dataset,
    string Method,
    double LearningRate,
    int Epochs,
    double ValidationAccuracy,
    double ValidationStandardError,
    int FitRows,
    int ValidationRows,
    int Trials,
    double Seconds,
    int MaxLength = 0);

/// <summary>The settings of a tuned-settings file and the sequence length and epoch rungs they were tuned with.</summary>
internal sealed record TunedFile(int MaxLength, int[] EpochRungs, List<TunedSetting> Settings)
{
    /// <summary>Gets the setting tuned for a method on a data set under the same conditions as <paramref name="settings"/> would tune it, or null.</summary>
    public TunedSetting? Find(string dataset, string method, CompareSettings settings, int maxLength, int fitRows, int validationRows)
        => EpochRungs.SequenceEqual(settings.TuneEpochs)
            ? Settings.FirstOrDefault(t => t.Dataset == dataset && t.Method == method && t.MaxLength == maxLength && t.FitRows == fitRows && t.ValidationRows == validationRows)
            : null;
}

/// <summary>
/// Chooses each LLaMA method's learning rate and epochs on validation rows, never on test rows. The validation rows are the
/// last rows of each label in the training split (train.tsv); the fit rows are the rows before them. Each method gets a
/// small <see cref="LabelTuningExperiment"/>: successive halving over epochs (the rungs of <see cref="CompareSettings.TuneEpochs"/>,
/// eta 3) with the learning rate drawn on a log scale within 4x of the method's untuned default (the first configuration is
/// the default itself). The winner is the trial with the best validation accuracy.
/// </summary>
internal static class Tuning
{
    /// <summary>
    /// Tunes every LLaMA method of the settings on one data set, and hands each choice to <paramref name="chosen"/> as soon
    /// as it is made (the caller writes the file then, so a run stopped half-way keeps what it finished). A method
    /// already in <paramref name="earlier"/> with the same fit and validation rows, sequence length and epoch rungs is
    /// not tuned again: a stopped <c>--tune</c> continues where it stopped.
    /// </summary>
    public static void Run(CompareSettings settings, string modelPath, Dataset dataset, IReadOnlyList<TextRow> trainRows,
        TunedFile? earlier, Action<TunedSetting> chosen)
    {
        var (fit, validation) = Split(trainRows, settings.TuneValidationSize, settings.TuneFitSize);
        var ml = new MLContext(seed: settings.Seed);
        var fitView = ml.Data.LoadFromEnumerable(fit);
        var validationView = ml.Data.LoadFromEnumerable(validation);
        // The plan gives the methods' Configure what the comparison gives them (class names in key order, label texts).
        var plan = new RunPlan(ml, modelPath, fit, validation, dataset, settings);
        AnsiConsole.MarkupLine(Markup.Escape($"  tuning on {fit.Count} fit rows ({TextData.Describe(fit)}) and {validation.Count} validation rows ({TextData.Describe(validation)}) from train.tsv"));
        foreach (var method in Methods.All.Where(m => m.Tuning is not null && settings.MethodNames.Contains(m.Id)))
        {
            if (earlier?.Find(dataset.Name, method.Id, settings, settings.MaxLengthFor(dataset), fit.Count, validation.Count) is { } done)
            {
                AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                    $"  {method.Name}: lr {done.LearningRate:G3}, {done.Epochs} epochs, validation accuracy {done.ValidationAccuracy:P1} (tuned earlier on the same rows; kept)")));
                continue;
            }

            var tunable = method.Tuning!;
            var space = LabelTuningSearchSpace.For(tunable.Kind);
            var methodSpace = space[tunable.Kind];
            foreach (var name in methodSpace.Parameters.Select(p => p.Name).ToList())
            {
                methodSpace.Remove(name);
            }

            methodSpace.SetRange("LearningRate", tunable.LearningRate / 4, tunable.LearningRate * 4, init: tunable.LearningRate, logBase: true);
            methodSpace.Configure = options => tunable.Configure(plan, options);
            var rungs = settings.TuneEpochs;
            var eta = rungs.Length > 1 ? Math.Max(2, rungs[1] / rungs[0]) : 3;
            var configurations = (int)Math.Pow(eta, rungs.Length - 1);
            var trials = 0;
            for (int k = 0, n = configurations; k < rungs.Length; k++, n = Math.Max(1, (n + eta - 1) / eta))
            {
                trials += n;
            }

            var clock = System.Diagnostics.Stopwatch.StartNew();
            var experiment = new LabelTuningExperiment(ml, new LabelTuningExperimentSettings
            {
                ModelPath = modelPath,
                MaxSequenceLength = settings.MaxLengthFor(dataset),
                BatchSize = settings.BatchSize,
                Seed = settings.Seed,
            })
                .SetDataset(fitView, validationView)
                .SetSearchSpace(space)
                .SetMetric(LabelTuningMetric.MicroAccuracy)
                .SetMaxTrials(trials)
                .SetSuccessiveHalvingTuner(minEpochs: rungs[0], maxEpochs: rungs[^1], eta: eta)
                .SetProgress(new Progress(method.Name));
            var result = experiment.RunAsync().GetAwaiter().GetResult();
            (result.Model as IDisposable)?.Dispose();
            var best = result.BestTrial;
            var accuracy = best.Metrics.TryGetValue(LabelTuningMetric.MicroAccuracy, out var a) ? a : best.Metric;
            var lr = Convert.ToDouble(best.Parameters["LearningRate"], CultureInfo.InvariantCulture);
            var setting = new TunedSetting(dataset.Name, method.Id, lr, best.Epochs, accuracy, Math.Sqrt(accuracy * (1 - accuracy) / validation.Count),
                fit.Count, validation.Count, result.TrialsTrained, clock.Elapsed.TotalSeconds, settings.MaxLengthFor(dataset));
            chosen(setting);
            AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                $"  {method.Name}: lr {lr:G3}, {best.Epochs} epochs, validation accuracy {accuracy:P1} ± {setting.ValidationStandardError:P1} ({result.TrialsTrained} trials, {clock.Elapsed.TotalSeconds:F0} s)")));
        }
    }

    /// <summary>
    /// Splits the training rows: the last <paramref name="validationSize"/>/labels rows of each label are validation, and up
    /// to <paramref name="fitSize"/> balanced rows before them are fit rows (0: all of them).
    /// </summary>
    public static (List<TextRow> Fit, List<TextRow> Validation) Split(IReadOnlyList<TextRow> rows, int validationSize, int fitSize)
    {
        var labels = rows.Select(r => r.Label).Distinct().ToList();
        var perLabel = Math.Max(1, validationSize / labels.Count);
        var validation = new List<TextRow>();
        var rest = new List<TextRow>();
        foreach (var label in labels)
        {
            var ofLabel = rows.Where(r => r.Label == label).ToList();
            if (ofLabel.Count <= perLabel)
            {
                throw new InvalidOperationException($"Label '{label}' has {ofLabel.Count} training rows; tuning holds out {perLabel} per label for validation and needs more rows than that.");
            }

            validation.AddRange(ofLabel.TakeLast(perLabel));
        }

        var held = validation.ToHashSet();
        rest.AddRange(rows.Where(r => !held.Contains(r)));
        return (TextData.Balanced(rest, fitSize), validation);
    }

    /// <summary>Writes the chosen settings with the base model's identity, atomically.</summary>
    public static void Save(string path, string modelPath, CompareSettings settings, IReadOnlyList<TunedSetting> chosen)
    {
        var json = JsonSerializer.Serialize(new
        {
            written_utc = DateTime.UtcNow,
            model_sha256 = ModelHash(modelPath),
            max_length = settings.MaxLength,
            batch = settings.BatchSize,
            seed = settings.Seed,
            epoch_rungs = settings.TuneEpochs,
            learning_rate_range = "default / 4 .. default x 4, log scale",
            settings = chosen.Select(c => new
            {
                dataset = c.Dataset,
                method = c.Method,
                learning_rate = c.LearningRate,
                epochs = c.Epochs,
                validation_accuracy = c.ValidationAccuracy,
                validation_standard_error = c.ValidationStandardError,
                fit_rows = c.FitRows,
                validation_rows = c.ValidationRows,
                trials = c.Trials,
                seconds = c.Seconds,
                max_length = c.MaxLength,
            }),
        }, new JsonSerializerOptions { WriteIndented = true });
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        File.WriteAllText(temp, json);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>
    /// Reads settings an earlier <c>--tune</c> run wrote. Settings for another base model (its weights' SHA-256 differs)
    /// are refused: they were chosen for other hidden states.
    /// </summary>
    public static List<TunedSetting> Load(string path, string modelPath) => LoadFile(path, modelPath).Settings;

    /// <summary>Reads an earlier <c>--tune</c> run's file with the conditions it tuned under (see <see cref="Load"/>).</summary>
    public static TunedFile LoadFile(string path, string modelPath)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(path));
        var root = document.RootElement;
        var expected = root.GetProperty("model_sha256").GetString();
        var actual = ModelHash(modelPath);
        if (!string.Equals(expected, actual, StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"{path} was tuned on a base model whose weights have SHA-256 {expected}, but '{modelPath}' has {actual}. " +
                "Run with --tune to choose settings for this model, or pass --untuned to use the defaults.");
        }

        var maxLength = root.TryGetProperty("max_length", out var length) ? length.GetInt32() : 0;
        var rungs = root.TryGetProperty("epoch_rungs", out var r) ? r.EnumerateArray().Select(e => e.GetInt32()).ToArray() : [];
        return new TunedFile(maxLength, rungs, root.GetProperty("settings").EnumerateArray().Select(s => new TunedSetting(
            s.GetProperty("dataset").GetString()!,
            s.GetProperty("method").GetString()!,
            s.GetProperty("learning_rate").GetDouble(),
            s.GetProperty("epochs").GetInt32(),
            s.GetProperty("validation_accuracy").GetDouble(),
            s.GetProperty("validation_standard_error").GetDouble(),
            s.GetProperty("fit_rows").GetInt32(),
            s.GetProperty("validation_rows").GetInt32(),
            s.GetProperty("trials").GetInt32(),
            s.GetProperty("seconds").GetDouble(),
            s.TryGetProperty("max_length", out var own) ? own.GetInt32() : maxLength)).ToList());
    }

    /// <summary>SHA-256 of the model's weights file(s), in file-name order.</summary>
    public static string ModelHash(string modelPath)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var files = Directory.GetFiles(modelPath, "*.safetensors").OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (files.Count == 0)
        {
            throw new FileNotFoundException($"No *.safetensors weights in '{modelPath}'.", modelPath);
        }

        var buffer = new byte[1 << 20];
        foreach (var file in files)
        {
            using var stream = File.OpenRead(file);
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                sha.AppendData(buffer, 0, read);
            }
        }

        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private sealed class Progress(string method) : IProgress<SweepProgress>
    {
        public void Report(SweepProgress value)
        {
            if (value.Finished is { } trial)
            {
                AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
                    $"    {method} trial {trial.Id}: {string.Join(", ", trial.Parameters.Select(p => $"{p.Key} {p.Value}"))} -> {trial.Metric:P1}{(trial.Error is null ? string.Empty : $" ({trial.Error})")}")));
            }
        }
    }
}
