namespace Microsoft.ML.LabelTuning.Tests.Architecture;

/// <summary>
/// The public surface is a decision, not an accident: the catalog extensions, the options classes and their enums,
/// the trainers and transformers, the experiment with its settings and results, PEFT interop, the chat model loader,
/// the charts the notebooks draw, and pretraining. A type that becomes public (or stops being) fails here until this list says so.
/// </summary>
[TestClass]
public sealed class PublicSurfaceTests
{
    private static readonly string[] _public =
    [
        "Data.Truncation",
        "Evaluation.EntityMetrics",
        "Evaluation.EntityTypeMetrics",
        "Generation.ChatTemplateKind",
        "Generation.LlamaChatClient",
        "Generation.LlamaChatClientOptions",
        "GptaCatalog",
        "Interop.PeftAdapters",
        "LTuningCatalog",
        "LabelSupervisedCatalog",
        "LabelTuningCatalog",
        "Llama.LlamaConfig",
        "Llama.RopeScalingConfig",
        "Methods.Gpta.LlmPrefixAssistantBinaryTrainer",
        "Methods.Gpta.LlmPrefixAssistantOptions",
        "Methods.Gpta.LlmPrefixAssistantTrainer",
        "Methods.Gpta.LlmPrefixAssistantTrainerBase`1",
        "Methods.Gpta.PrefixCandidateResult",
        "Methods.Gpta.PrefixEvaluation",
        "Methods.Gpta.PrefixSearchResult",
        "Methods.Gpta.PrefixSelectionMetric",
        "Methods.LTuning.LTuningBinaryTrainer",
        "Methods.LTuning.LTuningHead",
        "Methods.LTuning.LTuningOptions",
        "Methods.LTuning.LTuningTrainer",
        "Methods.LTuning.LabelPlacement",
        "Methods.LabelSupervised.LabelSupervisedLlamaBinaryTrainer",
        "Methods.LabelSupervised.LabelSupervisedLlamaNerTrainer",
        "Methods.LabelSupervised.LabelSupervisedLlamaOptions",
        "Methods.LabelSupervised.LabelSupervisedLlamaTrainer",
        "Methods.Lora.LoraTargets",
        "Methods.Pooling",
        "Methods.PrefixTuning.PrefixTuningBinaryTrainer",
        "Methods.PrefixTuning.PrefixTuningOptions",
        "Methods.PrefixTuning.PrefixTuningTrainer",
        "Methods.PromptTuning.PromptTuningBinaryTrainer",
        "Methods.PromptTuning.PromptTuningInit",
        "Methods.PromptTuning.PromptTuningOptions",
        "Methods.PromptTuning.PromptTuningTrainer",
        "Methods.TuningMethod",
        "ModelSaveCatalog",
        "PrefixTuningCatalog",
        "Pretraining.BestModelInfo",
        "Pretraining.CausalLmPretrainer",
        "Pretraining.CausalLmPretrainerOptions",
        "Pretraining.PretrainedModelExport",
        "Pretraining.PretrainedModelExportResult",
        "Pretraining.PretrainingMetric",
        "Pretraining.PretrainingMetrics",
        "Pretraining.PretrainingProgress",
        "Pretraining.PretrainingSummary",
        "PromptTuningCatalog",
        "Reporting.BarChart",
        "Reporting.Chart",
        "Reporting.ChartColor",
        "Reporting.LineChart",
        "Runtime.TorchRuntime",
        "Sweep.ChoiceParameter",
        "Sweep.LabelTuningExperiment",
        "Sweep.LabelTuningExperimentResult",
        "Sweep.LabelTuningExperimentSettings",
        "Sweep.LabelTuningMetric",
        "Sweep.LabelTuningSearchSpace",
        "Sweep.MethodSearchSpace",
        "Sweep.RangeParameter",
        "Sweep.SearchParameter",
        "Sweep.SweepLeaderboard",
        "Sweep.SweepProgress",
        "Sweep.SweepStopReason",
        "Sweep.TrialResult",
        "Sweep.TrialStatus",
        "Training.LabelTuningOptions",
        "Training.MemoryCheck",
        "Training.TrainingProgress",
        "Transformers.BinaryLabelTuningTrainer",
        "Transformers.LabelTuningBinaryTransformer",
        "Transformers.LabelTuningMulticlassTransformer",
        "Transformers.LabelTuningNerTransformer",
        "Transformers.LabelTuningTrainerBase`1",
        "Transformers.LabelTuningTransformerBase",
        "Transformers.MulticlassLabelTuningTrainer",
    ];

    [TestMethod]
    public void ThePublicTypesAreTheListedOnes()
    {
        var exported = typeof(LabelTuning.Methods.TuningMethod).Assembly.GetExportedTypes()
            .Select(t => t.FullName!["Microsoft.ML.LabelTuning.".Length..]).Order(StringComparer.Ordinal).ToArray();
        CollectionAssert.AreEqual(_public, exported,
            $"public types now: {exported.Length}\n+ {string.Join("\n+ ", exported.Except(_public))}\n- {string.Join("\n- ", _public.Except(exported))}");
    }
}
