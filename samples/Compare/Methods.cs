using System.Diagnostics;
using LabelTuning.Samples;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.Lora;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Trainers;
using Microsoft.ML.Transforms;

namespace Compare;

/// <summary>A committed data set and how L-Tuning words its labels.</summary>
internal sealed record Dataset(string Name, string Folder, string Task, Func<string, string> LabelText);

internal static class Datasets
{
    public static readonly IReadOnlyList<Dataset> All =
    [
        new("imdb", "imdb", "movie-review sentiment (positive/negative)", label => $"The review is {label}"),
        new("spam", "spam", "SpamAssassin spam/ham", label => label == "spam" ? "This email is spam" : "This email is not spam"),
        new("austen", "austen", "which of Jane Austen's six novels a passage is from", label => $"This passage is from {label.Replace("&", "and", StringComparison.Ordinal)}"),
    ];
}

/// <summary>What every method of one data set shares: the rows, the keyed views and the training sizes.</summary>
internal sealed class RunPlan
{
    public RunPlan(MLContext ml, string modelPath, IReadOnlyList<TextRow> trainRows, IReadOnlyList<TextRow> testRows, Dataset dataset, CompareSettings settings)
    {
        Ml = ml;
        ModelPath = modelPath;
        Dataset = dataset;
        Settings = settings;
        TrainCount = trainRows.Count;
        TestCount = testRows.Count;
        Train = ml.Data.LoadFromEnumerable(trainRows);
        Test = ml.Data.LoadFromEnumerable(testRows);
        // Keys by value, so class k is the k-th label in ordinal order; L-Tuning's label texts follow that order.
        KeyMap = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(Train);
        KeyedTrain = KeyMap.Transform(Train);
        KeyedTest = KeyMap.Transform(Test);
        VBuffer<ReadOnlyMemory<char>> keys = default;
        KeyedTrain.Schema["Label"].GetKeyValues(ref keys);
        ClassNames = keys.DenseValues().Select(k => k.ToString()).ToArray();
    }

    public MLContext Ml { get; }

    public string ModelPath { get; }

    public Dataset Dataset { get; }

    public CompareSettings Settings { get; }

    public int TrainCount { get; }

    public int TestCount { get; }

    public IDataView Train { get; }

    public IDataView Test { get; }

    public ITransformer KeyMap { get; }

    public IDataView KeyedTrain { get; }

    public IDataView KeyedTest { get; }

    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Applies the shared settings (model, lengths, epochs, batch, seed, progress) to a method's options.</summary>
    public T Common<T>(T options, IProgress<TrainingProgress> progress)
        where T : LabelTuningOptions
    {
        options.ModelPath = ModelPath;
        options.MaxSequenceLength = Settings.MaxLength;
        options.Epochs = Settings.Epochs;
        options.BatchSize = Settings.BatchSize;
        options.Seed = Settings.Seed;
        options.Progress = progress;
        return options;
    }
}

/// <summary>One method's figures on one data set's test rows (Error is set, and the figures are NaN, when it failed).</summary>
internal sealed record MethodResult(string Method, double Accuracy, double MacroF1, double TrainSeconds, long TrainableParameters, double RowsPerSecond, string? Error = null)
{
    public static MethodResult Failed(string method, Exception e) => new(method, double.NaN, double.NaN, double.NaN, 0, double.NaN, $"{e.GetType().Name}: {e.Message}");
}

/// <summary>A method of the comparison: its id on the command line, its name in the tables, and how it runs.</summary>
internal sealed record Method(string Id, string Name, string Settings, Func<RunPlan, MethodResult> Run);

internal static class Methods
{
    public static readonly IReadOnlyList<Method> All =
    [
        Tuned("ls-llama", "LS-LLaMA", "LoRA r=16 (alpha 32, dropout 0.05) on every linear layer + label head on the last token, lr 1e-3",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.LabelSupervisedLlama(plan.Common(new LabelSupervisedLlamaOptions
            {
                LearningRate = 1e-3,
                LoraRank = 16,
                LoraAlpha = 32,
                LoraDropout = 0.05,
                LoraTargets = LoraTargets.AllLinear,
            }, progress))),
        Tuned("prompt", "Prompt tuning", "20 virtual tokens (random init) + label head, lr 3e-2",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.PromptTuning(plan.Common(new PromptTuningOptions
            {
                VirtualTokenCount = 20,
                LearningRate = 3e-2,
            }, progress))),
        Tuned("dept", "DePT", "10 virtual tokens + rank-8 update of the input embeddings (lr 1e-3) + label head, lr 3e-2",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.PromptTuning(plan.Common(new PromptTuningOptions
            {
                VirtualTokenCount = 10,
                DecomposedRank = 8,
                DecomposedLearningRate = 1e-3,
                LearningRate = 3e-2,
            }, progress))),
        Tuned("prefix", "Prefix tuning", "20 key/value prefixes per layer + label head, lr 1e-2",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.PrefixTuning(plan.Common(new PrefixTuningOptions
            {
                VirtualTokenCount = 20,
                LearningRate = 1e-2,
            }, progress))),
        Tuned("ltuning-prefix", "L-Tuning prefix", "label-text prefixes (1 negative per example) + matching true/false head, lr 1e-3",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.LTuningPrefix(plan.Common(new LTuningOptions
            {
                LabelTexts = plan.ClassNames.Select(plan.Dataset.LabelText).ToArray(),
                LearningRate = 1e-3,
            }, progress))),
        Tuned("ltuning-prompt", "L-Tuning prompt", "label-text prompts before the text (1 negative per example) + matching true/false head, lr 1e-3",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.LTuningPrompt(plan.Common(new LTuningOptions
            {
                LabelTexts = plan.ClassNames.Select(plan.Dataset.LabelText).ToArray(),
                LearningRate = 1e-3,
            }, progress))),
        Tuned("ltuning-prompt-after", "L-Tuning prompt, after", "label-text prompts after the text, KV-cached scoring (1 negative per example) + matching true/false head, lr 1e-3",
            (plan, progress) => plan.Ml.MulticlassClassification.Trainers.LTuningPrompt(plan.Common(new LTuningOptions
            {
                LabelTexts = plan.ClassNames.Select(plan.Dataset.LabelText).ToArray(),
                LabelPlacement = LabelPlacement.After,
                LearningRate = 1e-3,
            }, progress))),
        new("sdca", "ML.NET SDCA", "FeaturizeText (word and character n-grams) + SdcaMaximumEntropy, 1 thread", Classical),
    ];

    private static Method Tuned(string id, string name, string settings, Func<RunPlan, IProgress<TrainingProgress>, MulticlassLabelTuningTrainer> trainer)
        => new(id, name, settings, plan =>
        {
            try
            {
                var (model, _, elapsed) = TrainingBar.Run(name, progress => trainer(plan, progress).Fit(plan.KeyedTrain));
                using (model)
                {
                    var (metrics, rowsPerSecond) = Score(plan, model);
                    return new MethodResult(name, metrics.MicroAccuracy, metrics.MacroF1(), elapsed.TotalSeconds, model.TrainableParameterCount, rowsPerSecond);
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return MethodResult.Failed(name, e);
            }
        });

    private static MethodResult Classical(RunPlan plan)
    {
        const string name = "ML.NET SDCA";
        var clock = Stopwatch.StartNew();
        // The cache checkpoint stops SDCA's passes from featurizing the text again; one thread makes it deterministic.
        var model = plan.Ml.Transforms.Text.FeaturizeText("Features", "Text")
            .AppendCacheCheckpoint(plan.Ml)
            .Append(plan.Ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(new SdcaMaximumEntropyMulticlassTrainer.Options { NumberOfThreads = 1 }))
            .Fit(plan.KeyedTrain);
        clock.Stop();
        var (metrics, rowsPerSecond) = Score(plan, model);
        var features = ((VectorDataViewType)model.Transform(plan.KeyedTest).Schema["Features"].Type).Size;
        var classes = plan.ClassNames.Count;
        return new MethodResult(name, metrics.MicroAccuracy, metrics.MacroF1(), clock.Elapsed.TotalSeconds, ((long)features * classes) + classes, rowsPerSecond);
    }

    /// <summary>Scores the test rows (Evaluate drives the cursor, so the clock covers the whole scoring pass).</summary>
    private static (MulticlassClassificationMetrics Metrics, double RowsPerSecond) Score(RunPlan plan, ITransformer model)
    {
        var clock = Stopwatch.StartNew();
        var metrics = plan.Ml.MulticlassClassification.Evaluate(model.Transform(plan.KeyedTest));
        clock.Stop();
        return (metrics, plan.TestCount / clock.Elapsed.TotalSeconds);
    }
}
