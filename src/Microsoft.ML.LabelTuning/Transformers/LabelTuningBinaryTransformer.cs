using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(LabelTuningBinaryTransformer), null, typeof(SignatureLoadModel),
    "Label-tuning binary transformer", LabelTuningBinaryTransformer.LoaderSignature)]

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Scores text with a tuned LLaMA binary classifier. Adds <c>Score</c> (log-odds of true), <c>Probability</c>
/// (P(true)) and <c>PredictedLabel</c> (Boolean), the columns <c>mlContext.BinaryClassification.Evaluate</c> reads.
/// </summary>
public sealed class LabelTuningBinaryTransformer : LabelTuningTransformerBase
{
    internal const string LoaderSignature = "LabelTuningBinary";

    internal LabelTuningBinaryTransformer(IHostEnvironment env, ClassifierRuntime runtime)
        : base(env, runtime, nameof(LabelTuningBinaryTransformer))
    {
    }

    // Called by ML.NET through LoadableClass.
    private LabelTuningBinaryTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : this(env, ModelPersistence.Load(env, ctx, GetVersionInfo()))
    {
    }

    /// <summary>Gets the name of the probability column.</summary>
    public string ProbabilityColumnName => DefaultColumnNames.Probability;

    private protected override VersionInfo VersionInfo => GetVersionInfo();

    private static VersionInfo GetVersionInfo() => MakeVersionInfo("LTBINARY", LoaderSignature, typeof(LabelTuningBinaryTransformer));

    private protected override OutputColumn[] CreateOutputColumns()
    {
        var description = Runtime.Description;
        return
        [
            OutputColumn.BinaryScore(description.ScoreColumn),
            OutputColumn.BinaryProbability(DefaultColumnNames.Probability),
            OutputColumn.BinaryPredictedLabel(description.PredictedLabelColumn),
        ];
    }
}
