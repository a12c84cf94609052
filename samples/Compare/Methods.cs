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
/// <param name="FullMaxLength">Tokens per text in full mode unless --max-length is given (null: the run's length).</param>
internal sealed record Dataset(string Name, string Folder, string Task, Func<string, string> LabelText, int? FullMaxLength = null);

internal static class Datasets
{
    public static readonly IReadOnlyList<Dataset> All =
    [
        // Reviews run to 230 words on average: 512 tokens read most of each, as the main job (samples/Sentiment) does.
        new("imdb", "imdb", "movie-review sentiment (positive/negative)", label => $"The review is {label}", FullMaxLength: 512),
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
        options.MaxSequenceLength = Settings.MaxLengthFor(Dataset);
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
    /// <summary>Gets the learning rate the run used (NaN for SDCA and for a failed run).</summary>
    public double LearningRate { get; init; } = double.NaN;

    /// <summary>Gets the epochs the run used (0 for SDCA and for a failed run).</summary>
    public int Epochs { get; init; }

    /// <summary>Gets the binomial standard error of the accuracy over <paramref name="testRows"/> rows: sqrt(p(1-p)/n).</summary>
    /// <param name="testRows">The test rows the accuracy was measured on.</param>
    /// <returns>The standard error, as a fraction.</returns>
    public double StandardError(int testRows) => testRows > 0 && double.IsFinite(Accuracy) ? Math.Sqrt(Accuracy * (1 - Accuracy) / testRows) : double.NaN;

    public static MethodResult Failed(string method, Exception e) => new(method, double.NaN, double.NaN, double.NaN, 0, double.NaN, $"{e.GetType().Name}: {e.Message}");
}

/// <summary>
/// What a LLaMA method needs to be tuned by <see cref="Tuning"/>: the library's method, its learning rate before tuning,
/// and the method-specific settings (everything but the learning rate and epochs, which the sweep samples).
/// </summary>
internal sealed record Tunable(TuningMethod Kind, double LearningRate, Action<RunPlan, LabelTuningOptions> Configure);

/// <summary>A method of the comparison: its id on the command line, its name in the tables, and how it runs.</summary>
internal sealed record Method(string Id, string Name, string Settings, Func<RunPlan, TunedSetting?, MethodResult> Run, Tunable? Tuning = null);

internal static class Methods
{
    public static readonly IReadOnlyList<Method> All =
    [
        Tuned<LabelSupervisedLlamaOptions>("ls-llama", "LS-LLaMA", "LoRA r=16 (alpha 32, dropout 0.05) on every linear layer + label head on the last token",
            TuningMethod.LabelSupervised, 1e-3,
            (_, o) =>
            {
                o.LoraRank = 16;
                o.LoraAlpha = 32;
                o.LoraDropout = 0.05;
                o.LoraTargets = LoraTargets.AllLinear;
            },
            (t, o) => t.LabelSupervisedLlama(o)),
        Tuned<PromptTuningOptions>("prompt", "Prompt tuning", "20 virtual tokens (random init) + label head",
            TuningMethod.PromptTuning, 3e-2,
            (_, o) => o.VirtualTokenCount = 20,
            (t, o) => t.PromptTuning(o)),
        Tuned<PromptTuningOptions>("dept", "DePT", "10 virtual tokens + rank-8 update of the input embeddings (lr 1e-3) + label head",
            TuningMethod.PromptTuning, 3e-2,
            (_, o) =>
            {
                o.VirtualTokenCount = 10;
                o.DecomposedRank = 8;
                o.DecomposedLearningRate = 1e-3;
            },
            (t, o) => t.PromptTuning(o)),
        Tuned<PrefixTuningOptions>("prefix", "Prefix tuning", "20 key/value prefixes per layer + label head",
            TuningMethod.PrefixTuning, 1e-2,
            (_, o) => o.VirtualTokenCount = 20,
            (t, o) => t.PrefixTuning(o)),
        Tuned<LTuningOptions>("ltuning-prefix", "L-Tuning prefix", "label-text prefixes (1 negative per example) + matching true/false head",
            TuningMethod.LTuningPrefix, 1e-3,
            (plan, o) => o.LabelTexts = plan.ClassNames.Select(plan.Dataset.LabelText).ToArray(),
            (t, o) => t.LTuningPrefix(o)),
        Tuned<LTuningOptions>("ltuning-prompt", "L-Tuning prompt", "label-text prompts before the text (1 negative per example) + matching true/false head",
            TuningMethod.LTuningPrompt, 1e-3,
            (plan, o) => o.LabelTexts = plan.ClassNames.Select(plan.Dataset.LabelText).ToArray(),
            (t, o) => t.LTuningPrompt(o)),
        Tuned<LTuningOptions>("ltuning-prompt-after", "L-Tuning prompt, after", "label-text prompts after the text, KV-cached scoring (1 negative per example) + matching true/false head",
            TuningMethod.LTuningPrompt, 1e-3,
            (plan, o) =>
            {
                o.LabelTexts = plan.ClassNames.Select(plan.Dataset.LabelText).ToArray();
                o.LabelPlacement = LabelPlacement.After;
            },
            (t, o) => t.LTuningPrompt(o)),
        new("sdca", "ML.NET SDCA", "FeaturizeText (word and character n-grams) + SdcaMaximumEntropy, 1 thread", (plan, _) => Classical(plan)),
    ];

    /// <summary>Gets the method with command-line id <paramref name="id"/>.</summary>
    public static Method ById(string id) => All.Single(m => m.Id == id);

    /// <summary>The learning rate and epochs a run uses: the tuned ones when there are, otherwise the untuned default and the command line's epochs.</summary>
    public static (double LearningRate, int Epochs) Budget(Method method, RunPlan plan, TunedSetting? tuned)
        => (tuned?.LearningRate ?? method.Tuning?.LearningRate ?? double.NaN, tuned?.Epochs ?? plan.Settings.Epochs);

    private static Method Tuned<TOptions>(string id, string name, string settings, TuningMethod kind, double learningRate,
        Action<RunPlan, TOptions> configure, Func<MulticlassClassificationCatalog.MulticlassClassificationTrainers, TOptions, MulticlassLabelTuningTrainer> trainer)
        where TOptions : LabelTuningOptions, new()
    {
        Method? self = null;
        self = new Method(id, name, settings, (plan, tuned) =>
        {
            try
            {
                var options = new TOptions();
                configure(plan, options);
                var (model, _, elapsed) = TrainingBar.Run(name, progress =>
                {
                    plan.Common(options, progress);
                    (options.LearningRate, options.Epochs) = Budget(self!, plan, tuned);
                    return trainer(plan.Ml.MulticlassClassification.Trainers, options).Fit(plan.KeyedTrain);
                });
                using (model)
                {
                    var (metrics, rowsPerSecond) = Score(plan, model);
                    return new MethodResult(name, metrics.MicroAccuracy, metrics.MacroF1(), elapsed.TotalSeconds, model.TrainableParameterCount, rowsPerSecond)
                    {
                        LearningRate = options.LearningRate,
                        Epochs = options.Epochs,
                    };
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                return MethodResult.Failed(name, e);
            }
        }, new Tunable(kind, learningRate, (plan, o) => configure(plan, (TOptions)o)));
        return self;
    }

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
