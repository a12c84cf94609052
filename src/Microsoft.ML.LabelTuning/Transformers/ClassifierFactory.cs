using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Data;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>The kind of label a trainer learns.</summary>
internal enum LabelKind
{
    /// <summary>Key&lt;UInt32&gt;, one class per row.</summary>
    Key,

    /// <summary>Boolean, two classes (false, true).</summary>
    Boolean,
}

/// <summary>Fits and rebuilds classifiers: the part of every trainer that is not method-specific.</summary>
internal static class ClassifierFactory
{
    /// <summary>
    /// Loads the tokenizer of a Hugging Face model folder and a decoder over the process's shared copy of its frozen
    /// weights (<see cref="SharedBaseModels"/>).
    /// </summary>
    public static (LlamaModel Model, LlamaTextTokenizer Tokenizer) LoadBase(string folder, Device device, ScalarType dtype)
    {
        var tokenizer = LoadTokenizer(folder);
        return (SharedBaseModels.Rent(folder, device, dtype), tokenizer);
    }

    /// <summary>
    /// Loads a model folder's tokenizer and checks that it fits the config's vocabulary; no tensor is made, so a fit
    /// can read and validate its data before it loads the decoder.
    /// </summary>
    public static LlamaTextTokenizer LoadTokenizer(string folder)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Model folder '{folder}' was not found. ModelPath must name a Hugging Face model folder.");
        }

        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder);
        var config = HfModelFolder.Open(folder).LoadConfig();
        if (tokenizer.VocabSize > config.VocabSize)
        {
            throw new InvalidDataException(
                $"Tokenizer '{tokenizer.TokenizerFile}' has {tokenizer.VocabSize} tokens but '{Path.Combine(folder, "config.json")}' gives vocab_size " +
                $"{config.VocabSize}: ids past the embedding table would fail. The tokenizer does not belong to this model.");
        }

        return tokenizer;
    }

    /// <summary>
    /// Loads the decoder of a causal-LM or sequence-classification checkpoint: <c>model.*</c> keys, ignoring the
    /// LM head and a saved classification head (<c>score.weight</c>), which the tuning method replaces.
    /// </summary>
    public static LlamaModel LoadDecoder(string folder, Device device, ScalarType dtype)
    {
        var hf = HfModelFolder.Open(folder);
        var model = new LlamaModel(hf.LoadConfig(), device, dtype, initializeWeights: false);
        try
        {
            var options = CheckpointLoader.DecoderOptions(hf);
            CheckpointLoader.LoadInto(model, hf, options with { IgnoreKeys = [.. options.IgnoreKeys, "score.weight", "score.bias"] });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public static ClassifierRuntime Fit(
        IHostEnvironment env,
        LabelTuningOptions options,
        TuningMethod method,
        JsonElement settings,
        IDataView data,
        LabelKind labelKind)
    {
        var host = env.Register($"LabelTuning.{method}");
        using var channel = host.Start("Training");
        using var threads = TorchRuntime.UseThreads(options.NumberOfThreads);
        var schema = data.Schema;
        ColumnReader.RequireTextColumn(schema, options.TextColumnName, "text");
        if (options.SecondTextColumnName is not null)
        {
            ColumnReader.RequireTextColumn(schema, options.SecondTextColumnName, "second text");
        }

        LabelClasses classes;
        List<(TextInput Input, int Label)> rows;
        if (labelKind == LabelKind.Key)
        {
            classes = ColumnReader.RequireKeyLabel(schema, options.LabelColumnName);
            rows = ColumnReader.ReadKeyLabeled(data, options.TextColumnName, options.SecondTextColumnName, options.LabelColumnName);
        }
        else
        {
            ColumnReader.RequireBooleanLabel(schema, options.LabelColumnName);
            classes = new LabelClasses(["False", "True"], null);
            rows = ColumnReader.ReadBooleanLabeled(data, options.TextColumnName, options.SecondTextColumnName, options.LabelColumnName);
        }

        if (options.ClassWeights is not null && options.ClassWeights.Length != classes.Count)
        {
            throw new ArgumentException(
                $"ClassWeights has {options.ClassWeights.Length} entries but column '{options.LabelColumnName}' has {classes.Count} classes.", nameof(options));
        }

        var internalEnv = env as IHostEnvironmentInternal;
        var device = DeviceSelection.Select(internalEnv?.GpuDeviceId, internalEnv?.FallbackToCpu ?? false);
        var dtype = DeviceSelection.ParseDtype(options.Dtype);
        var seed = options.Seed ?? internalEnv?.Seed ?? 0;
        var tokenizer = LoadTokenizer(options.ModelPath);
        var encoder = new TextEncoder(tokenizer, options.MaxSequenceLength, options.Truncation, options.TextPrefix);

        var train = Encode(rows, encoder, channel, "training", out var missing);
        if (missing > 0)
        {
            channel.Warning($"{missing} training row(s) have a missing label (key 0) and were skipped.");
        }

        if (train.Count == 0)
        {
            throw new ArgumentException($"The training data has no rows with a label in column '{options.LabelColumnName}'.", nameof(data));
        }

        if (train.Select(e => e.Label).Distinct().Count() < 2)
        {
            channel.Warning($"Every training row has the same label; the classifier cannot learn to tell classes apart.");
        }

        List<Example>? validation = null;
        if (options.ValidationSet is { } validationSet)
        {
            var validRows = labelKind == LabelKind.Key
                ? ColumnReader.ReadKeyLabeled(validationSet, options.TextColumnName, options.SecondTextColumnName, options.LabelColumnName)
                : ColumnReader.ReadBooleanLabeled(validationSet, options.TextColumnName, options.SecondTextColumnName, options.LabelColumnName);
            validation = Encode(validRows, encoder, channel, "validation", out _);
        }

        return TrainAndDescribe(options, method, settings, classes, SharedBaseModels.Rent(options.ModelPath, device, dtype), tokenizer, train, validation, seed, device, channel, tokenLevel: false);
    }

    /// <summary>Fits a token classifier (NER): the label is a vector of keys, one per space-separated word.</summary>
    public static ClassifierRuntime FitTokens(
        IHostEnvironment env,
        LabelTuningOptions options,
        TuningMethod method,
        JsonElement settings,
        IDataView data)
    {
        var host = env.Register($"LabelTuning.{method}.Tokens");
        using var channel = host.Start("Training");
        using var threads = TorchRuntime.UseThreads(options.NumberOfThreads);
        ColumnReader.RequireTextColumn(data.Schema, options.TextColumnName, "text");
        var classes = ColumnReader.RequireKeyVectorLabel(data.Schema, options.LabelColumnName);
        if (!string.IsNullOrEmpty(options.TextPrefix))
        {
            throw new ArgumentException("TextPrefix is for sequence classification; token classification labels every word of the text and takes no prefix.", nameof(options));
        }

        var rows = ColumnReader.ReadWordLabeled(data, options.TextColumnName, options.LabelColumnName);
        if (options.ClassWeights is not null && options.ClassWeights.Length != classes.Count)
        {
            throw new ArgumentException(
                $"ClassWeights has {options.ClassWeights.Length} entries but column '{options.LabelColumnName}' has {classes.Count} classes.", nameof(options));
        }

        var internalEnv = env as IHostEnvironmentInternal;
        var device = DeviceSelection.Select(internalEnv?.GpuDeviceId, internalEnv?.FallbackToCpu ?? false);
        var dtype = DeviceSelection.ParseDtype(options.Dtype);
        var seed = options.Seed ?? internalEnv?.Seed ?? 0;
        var tokenizer = LoadTokenizer(options.ModelPath);
        var words = new WordEncoder(tokenizer, options.MaxSequenceLength);
        var train = EncodeWords(rows, words, channel, options.TextColumnName, options.LabelColumnName);
        List<Example>? validation = null;
        if (options.ValidationSet is { } validationSet)
        {
            validation = EncodeWords(ColumnReader.ReadWordLabeled(validationSet, options.TextColumnName, options.LabelColumnName),
                words, channel, options.TextColumnName, options.LabelColumnName);
        }

        if (train.Count == 0)
        {
            throw new ArgumentException($"The training data has no rows with labelled words in column '{options.LabelColumnName}'.", nameof(data));
        }

        return TrainAndDescribe(options, method, settings, classes, SharedBaseModels.Rent(options.ModelPath, device, dtype), tokenizer, train, validation, seed, device, channel, tokenLevel: true);
    }

    /// <summary>
    /// The part of every fit after the data is encoded: build the method's model, train it, describe it. It owns
    /// <paramref name="model"/>: on every way out but success (a bad setting, the memory refusal, cancellation, an
    /// exception in a step) the decoder and whatever the method built around it are disposed before the error leaves.
    /// </summary>
    private static ClassifierRuntime TrainAndDescribe(
        LabelTuningOptions options,
        TuningMethod method,
        JsonElement settings,
        LabelClasses classes,
        LlamaModel model,
        LlamaTextTokenizer tokenizer,
        List<Example> train,
        List<Example>? validation,
        int seed,
        Device device,
        IChannel channel,
        bool tokenLevel)
    {
        IClassifierModel? classifier = null;
        try
        {
            var factory = TuningMethodRegistry.Get(method).Factory;
            settings = factory.Prepare(settings, tokenizer, classes.Names);
            random.manual_seed(seed);
            classifier = factory.Build(model, classes.Count, settings, tokenLevel);
            return Train(options, method, settings, classes, model, classifier, tokenizer, train, validation, seed, device, channel, tokenLevel);
        }
        catch
        {
            if (classifier is not null)
            {
                classifier.Dispose(); // the classifier owns the decoder
            }
            else
            {
                model.Dispose();
            }

            throw;
        }
    }

    private static ClassifierRuntime Train(
        LabelTuningOptions options,
        TuningMethod method,
        JsonElement settings,
        LabelClasses classes,
        LlamaModel model,
        IClassifierModel classifier,
        LlamaTextTokenizer tokenizer,
        List<Example> train,
        List<Example>? validation,
        int seed,
        Device device,
        IChannel channel,
        bool tokenLevel)
    {
        var baseSha = BaseModelReference.Fingerprint(options.ModelPath);
        var scales = options.LearningRateScales();
        var plan = new TrainingPlan(
            options.BatchSize, options.Epochs, options.LearningRate, options.WeightDecay, options.WarmupRatio,
            options.GradientAccumulationSteps, options.MaxGradientNorm, options.EarlyStoppingPatience, seed, options.ClassWeights,
            tokenizer.PaddingId, device, options.Progress, options.CancellationToken, options.CheckpointFolder, options.CheckpointEverySteps,
            RunFingerprint(method, settings, options, seed, scales, train, validation, baseSha), scales);
        var checkpointing = options.GradientCheckpointing == GradientCheckpointing.On;
        if (options.MemoryCheck != MemoryCheck.Off)
        {
            (var micro, checkpointing) = CheckMemory(options, model, classifier, train, device, channel);
            plan = plan with { MicroBatchSize = micro };
        }

        model.GradientCheckpointing = checkpointing;

        var summary = ClassifierTrainingTask.Run(classifier, train, validation, plan, channel);
        channel.Info($"trained {summary.Steps} steps, {summary.TrainableParameters:N0} trainable parameters, final loss {summary.FinalLoss:F4}");
        var description = new ClassifierDescription(
            method, settings, classes.Names.ToArray(), options.TextColumnName, tokenLevel ? null : options.SecondTextColumnName, options.MaxSequenceLength,
            options.Truncation, options.BatchSize, tokenLevel, Path.GetFullPath(options.ModelPath), baseSha, options.EmbedBaseModel,
            options.EmbedBaseModel ? BaseModelReference.EmbeddableFiles(options.ModelPath).Select(f => Path.GetFileName(f)).ToArray() : [],
            options.Dtype, options.ScoreColumnName, options.PredictedLabelColumnName, classes.KeyValues is not null,
            tokenLevel || string.IsNullOrEmpty(options.TextPrefix) ? null : options.TextPrefix);
        return new ClassifierRuntime(classifier, new TextEncoder(tokenizer, options.MaxSequenceLength, options.Truncation, description.TextPrefix), device, description)
        {
            KeyValues = classes.KeyValues,
            LastTraining = summary,
        };
    }

    /// <summary>
    /// Estimates the memory of the worst micro-batch (the length-grouped batcher puts the longest examples together).
    /// Under <see cref="MemoryCheck.Warn"/> a batch that does not fit is split into smaller micro-batches whose
    /// gradients accumulate (returned; null keeps the batch whole); what the user should know reaches both the ML.NET
    /// log and the progress receiver, which is what a console sees. <see cref="MemoryCheck.Fail"/> refuses. Before
    /// any of that, <see cref="GradientCheckpointing.Auto"/> turns checkpointing on when the batch does not fit
    /// without it (returned).
    /// </summary>
    private static (int? MicroBatch, bool Checkpointing) CheckMemory(
        LabelTuningOptions options, LlamaModel model, IClassifierModel classifier, List<Example> train, Device device, IChannel channel)
    {
        var batchSize = Math.Min(options.BatchSize, train.Count);
        var longest = train.Max(e => e.Ids.Length);
        var available = MemoryBudget.AvailableBytes(device);
        var checkpointing = options.GradientCheckpointing == GradientCheckpointing.On;
        if (options.GradientCheckpointing == GradientCheckpointing.Auto && available is { } free
            && MemoryEstimate.For(model, classifier, batchSize, longest).TrainingBytes > free)
        {
            checkpointing = true;
            channel.Info(
                $"gradient checkpointing on: without it a batch of {batchSize} rows would need " +
                $"{MemoryEstimate.FormatBytes(MemoryEstimate.For(model, classifier, batchSize, longest).TrainingBytes)} beyond the loaded model " +
                $"and {MemoryEstimate.FormatBytes(free)} is available; with it, {MemoryEstimate.For(model, classifier, batchSize, longest, checkpointing: true)}");
        }

        MemoryEstimate EstimateFor(int rows) => MemoryEstimate.For(model, classifier, rows, longest, checkpointing);
        var micro = options.MemoryCheck == MemoryCheck.Warn ? MemoryBudget.FittingMicroBatch(EstimateFor, batchSize, available) : null;
        string? warning;
        if (micro is { } rows)
        {
            warning =
                $"The memory estimate for a micro-batch of {batchSize} rows ({MemoryEstimate.FormatBytes(EstimateFor(batchSize).TrainingBytes)} beyond " +
                $"the loaded model) exceeds the {MemoryEstimate.FormatBytes(available!.Value)} available, so each batch of {batchSize} rows runs as " +
                $"{(batchSize + rows - 1) / rows} micro-batches of at most {rows} rows whose gradients are accumulated: the same effective batch " +
                $"and the same results within float rounding, a little slower. Estimate now: {EstimateFor(rows)}. Set MemoryCheck to Fail to refuse instead.";
            channel.Warning(warning);
        }
        else
        {
            warning = MemoryBudget.Check(EstimateFor(batchSize), available, options.MemoryCheck, channel);
        }

        if (warning is not null)
        {
            options.Progress?.Report(new TrainingProgress(1, options.Epochs, 0, 0, double.NaN, 0, 0, TimeSpan.Zero, TimeSpan.Zero)
            {
                Kind = TrainingProgressKind.Warning,
                Message = warning,
            });
        }

        return (micro, checkpointing);
    }

    private static List<Example> EncodeWords(List<(string Text, uint[] Labels)> rows, WordEncoder encoder, IChannel channel, string textColumn, string labelColumn)
    {
        var examples = new List<Example>(rows.Count);
        var truncated = 0;
        for (var r = 0; r < rows.Count; r++)
        {
            var (text, labels) = rows[r];
            var words = WordEncoder.SplitWords(text);
            if (words.Length != labels.Length)
            {
                throw new ArgumentException(
                    $"Row {r}: column '{textColumn}' has {words.Length} space-separated word(s) but column '{labelColumn}' has {labels.Length} label(s); they must match one to one.");
            }

            var ids = encoder.Encode(words, out var firsts, out var cut);
            truncated += cut ? 1 : 0;
            var tokenLabels = Enumerable.Repeat(-100, ids.Length).ToArray();
            for (var w = 0; w < words.Length; w++)
            {
                if (firsts[w] >= 0 && labels[w] > 0)
                {
                    tokenLabels[firsts[w]] = (int)labels[w] - 1; // key 0 is missing: no loss on that word
                }
            }

            examples.Add(new Example(ids, 0, tokenLabels));
        }

        if (truncated > 0)
        {
            channel.Info($"{truncated} of {rows.Count} row(s) were truncated to MaxSequenceLength; their last words get no label.");
        }

        return examples;
    }

    private static List<Example> Encode(List<(TextInput Input, int Label)> rows, TextEncoder encoder, IChannel channel, string what, out int missing)
    {
        var examples = new List<Example>(rows.Count);
        var truncated = 0;
        missing = 0;
        foreach (var (input, label) in rows)
        {
            if (label < 0)
            {
                missing++;
                continue;
            }

            examples.Add(new Example(encoder.Encode(input, out var cut), label));
            truncated += cut ? 1 : 0;
        }

        if (truncated > 0)
        {
            channel.Info($"{truncated} of {examples.Count} {what} row(s) ({100.0 * truncated / Math.Max(1, examples.Count):F1}%) were truncated to MaxSequenceLength.");
        }

        return examples;
    }

    private static string RunFingerprint(
        TuningMethod method,
        JsonElement settings,
        LabelTuningOptions o,
        int seed,
        IReadOnlyDictionary<string, double>? scales,
        IReadOnlyList<Example> train,
        IReadOnlyList<Example>? validation,
        string baseSha)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(string.Join('|', method, settings.GetRawText(), o.MaxSequenceLength, o.Truncation, o.BatchSize,
            o.Epochs, o.LearningRate, o.WeightDecay, o.WarmupRatio, o.GradientAccumulationSteps, o.MaxGradientNorm, seed, baseSha)));
        if (scales is not null)
        {
            // Only when set, so that the fingerprints of methods without learning-rate groups stay as they were.
            sha.AppendData(Encoding.UTF8.GetBytes(string.Join(',', scales.OrderBy(s => s.Key, StringComparer.Ordinal)
                .Select(s => $"{s.Key}={s.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}"))));
        }

        // What decides the best weights and early stopping, and the loss weights: each only when set, as above.
        if (o.ClassWeights is not null)
        {
            sha.AppendData(Encoding.UTF8.GetBytes("class-weights:" + string.Join(',', o.ClassWeights.Select(w => w.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + "\n"));
        }

        if (o.EarlyStoppingPatience > 0)
        {
            sha.AppendData(Encoding.UTF8.GetBytes($"patience:{o.EarlyStoppingPatience}\n"));
        }

        AppendExamples(sha, train);
        if (validation is not null)
        {
            sha.AppendData(Encoding.UTF8.GetBytes("\nvalidation:"));
            AppendExamples(sha, validation);
        }

        return Convert.ToHexString(sha.GetHashAndReset());
    }

    private static void AppendExamples(IncrementalHash sha, IReadOnlyList<Example> examples)
    {
        foreach (var example in examples)
        {
            var tags = example.TokenLabels is null ? string.Empty : "/" + string.Join(',', example.TokenLabels); // token classification
            sha.AppendData(Encoding.UTF8.GetBytes($"{example.Label}:{string.Join(',', example.Ids)}{tags};"));
        }
    }
}
