namespace Microsoft.ML.LabelTuning.Tests.Architecture;

/// <summary>
/// The library's namespaces form a tree of layers (docs/architecture.md): engine, core, ML.NET surface, methods,
/// catalog, sweep. A namespace that reaches back up the tree makes a cycle, and this test names it.
/// </summary>
[TestClass]
public sealed class NamespaceCycleTests
{
    private const string Library = "Microsoft.ML.LabelTuning";

    [TestMethod]
    public void TheLibrarysNamespacesHaveNoCycle()
    {
        var graph = NamespaceGraph.Of(typeof(LabelTuning.Methods.TuningMethod).Assembly, Library);
        var cycles = graph.Cycles();
        Assert.AreEqual(0, cycles.Count, string.Join("\n", cycles.Select(group =>
            $"namespaces {string.Join(", ", group.Select(graph.Short))} reach each other:\n  " + string.Join("\n  ", graph.Explain(group)))));
    }

    /// <summary>
    /// The layers of docs/architecture.md, bottom first. A namespace may use only namespaces of earlier layers, so a
    /// method's folder never reaches another method's, the engine never reaches a method, and the sweep sits on top.
    /// </summary>
    private static readonly string[][] _layers =
    [
        ["IO", "Llama", "Runtime"],                     // engine: files, the model, devices
        ["Checkpoints", "Tokenizers", "Reporting"],     // engine: safetensors and HF folders, tokenizers, charts
        ["Generation", "Data"],                         // text generation; text to tensors
        ["Evaluation", "Training", "Methods.Lora"],     // core: metrics, options base, Example, IClassifierModel, the loop; LoRA layers
        ["Methods"],                                    // core: the classifier, adapters, TuningMethod, descriptor and registry
        ["Transformers"],                               // ML.NET surface: trainer base, transformers, persistence
        ["Interop"],                                    // PEFT entry points and format
        ["Methods.LabelSupervised", "Methods.PromptTuning", "Methods.PrefixTuning", "Methods.LTuning", "Methods.Gpta"], // one folder per method
        ["(root)"],                                     // the registration and the catalog extensions users call
        ["Sweep", "Pretraining"],                       // the experiment over methods; pretraining
    ];

    [TestMethod]
    public void EachNamespaceUsesOnlyTheLayersBelowIt()
    {
        var graph = NamespaceGraph.Of(typeof(LabelTuning.Methods.TuningMethod).Assembly, Library);
        var layerOf = _layers.SelectMany((names, layer) => names.Select(n => (n, layer))).ToDictionary(p => p.n, p => p.layer);
        var problems = new List<string>();
        foreach (var (from, uses) in graph.Edges)
        {
            if (!layerOf.TryGetValue(graph.Short(from), out var layer))
            {
                problems.Add($"namespace {graph.Short(from)} is in no layer: add it to the table here and to docs/architecture.md");
                continue;
            }

            problems.AddRange(uses.Where(u => layerOf.TryGetValue(graph.Short(u.Key), out var used) && used >= layer)
                .Select(u => $"{graph.Short(from)} (layer {layer}) uses {graph.Short(u.Key)} (layer {layerOf[graph.Short(u.Key)]}): {u.Value}"));
        }

        Assert.AreEqual(0, problems.Count, string.Join("\n", problems));
    }

    [TestMethod]
    public void TheGraphSeesEveryKindOfReference()
    {
        // The test's own namespaces, where this class and NamespaceGraph only reach each other through method bodies.
        var graph = NamespaceGraph.Of(typeof(NamespaceCycleTests).Assembly, "Microsoft.ML.LabelTuning.Tests");
        Assert.IsTrue(graph.Edges["Microsoft.ML.LabelTuning.Tests.Architecture.Probe"].ContainsKey("Microsoft.ML.LabelTuning.Tests.Architecture.Probe.Back"),
            "a call in a method body is a dependency");
        var cycle = graph.Cycles().SingleOrDefault(g => g.Contains("Microsoft.ML.LabelTuning.Tests.Architecture.Probe"));
        Assert.IsNotNull(cycle, "two namespaces that call each other are a cycle");
        CollectionAssert.AreEquivalent(
            new[] { "Microsoft.ML.LabelTuning.Tests.Architecture.Probe", "Microsoft.ML.LabelTuning.Tests.Architecture.Probe.Back" }, cycle);
    }
}
