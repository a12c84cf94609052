using Microsoft.ML;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(LabelTuningNerTransformer), null, typeof(SignatureLoadModel),
    "Label-tuning token classification transformer", LabelTuningNerTransformer.LoaderSignature)]

namespace Microsoft.ML.LabelTuning.Transformers;

/// <summary>
/// Tags every space-separated word of a sentence with a tuned LLaMA token classifier (LS-unLLaMA). Adds
/// <c>PredictedLabel</c>: a vector of keys, one per word, carrying the label column's key values.
/// </summary>
public sealed class LabelTuningNerTransformer : LabelTuningTransformerBase
{
    internal const string LoaderSignature = "LabelTuningNer";

    internal LabelTuningNerTransformer(IHostEnvironment env, ClassifierRuntime runtime)
        : base(env, runtime, nameof(LabelTuningNerTransformer))
    {
    }

    // Called by ML.NET through LoadableClass.
    private LabelTuningNerTransformer(IHostEnvironment env, ModelLoadContext ctx)
        : this(env, ModelPersistence.Load(env, ctx, GetVersionInfo()))
    {
    }

    private protected override VersionInfo VersionInfo => GetVersionInfo();

    private static VersionInfo GetVersionInfo() => MakeVersionInfo("LTNERTAG", LoaderSignature, typeof(LabelTuningNerTransformer));

    private protected override OutputColumn[] CreateOutputColumns()
        => [OutputColumn.PredictedWordKeys(Runtime.Description.PredictedLabelColumn, Runtime.ClassCount, Runtime.KeyValues)];
}
