using Microsoft.ML;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(LabelTuningMulticlassTransformer), null, typeof(SignatureLoadModel),
    "Label-tuning multiclass transformer", LabelTuningMulticlassTransformer.LoaderSignature)]

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Scores text with a tuned LLaMA classifier. Adds <c>Score</c> (class probabilities, with slot names) and
/// <c>PredictedLabel</c> (a key carrying the label column's key values), the columns
/// <c>mlContext.MulticlassClassification.Evaluate</c> reads.
/// </summary>
public sealed class LabelTuningMulticlassTransformer : LabelTuningTransformerBase
{
    internal const string LoaderSignature = "LabelTuningMulticlass";

    internal LabelTuningMulticlassTransformer(IHostEnvironment env, ClassifierRuntime runtime)
        : base(env, runtime, nameof(LabelTuningMulticlassTransformer))
    {
    }

    // Called by ML.NET through LoadableClass.
    private LabelTuningMulticlassTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : this(env, ModelPersistence.Load(env, ctx, GetVersionInfo()))
    {
    }

    private protected override VersionInfo VersionInfo => GetVersionInfo();

    private static VersionInfo GetVersionInfo() => MakeVersionInfo("LTMULTIC", LoaderSignature, typeof(LabelTuningMulticlassTransformer));

    private protected override OutputColumn[] CreateOutputColumns()
    {
        var description = Runtime.Description;
        return
        [
            OutputColumn.ClassScores(description.ScoreColumn, description.ClassNames),
            OutputColumn.PredictedKey(description.PredictedLabelColumn, description.ClassNames.Length, Runtime.KeyValues),
        ];
    }
}
