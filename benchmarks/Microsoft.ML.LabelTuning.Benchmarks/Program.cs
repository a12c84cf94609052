using System.Text.Json;
using Microsoft.ML.LabelTuning.Benchmarks;
using Microsoft.ML.LabelTuning.Runtime;

// Prints one JSON object per line. Figures are ratios measured in this process (utilisation = achieved model FLOP/s
// over this process's own measured fp32 matmul peak); see docs/performance.md for the formulas.
if (args is ["--load-child", var childFolder])
{
    LoadBench.Child(childFolder);
    return;
}

if (args is ["--realsize-child", var realSizeFolder, var realSizeShape, .. var childFlags])
{
    var childThreads = Array.IndexOf(childFlags, "--threads") is var at and >= 0 ? int.Parse(childFlags[at + 1], System.Globalization.CultureInfo.InvariantCulture) : 2;
    RealSizeBench.Child(realSizeFolder, realSizeShape, peer: !childFlags.Contains("--no-peer"), longStep: !childFlags.Contains("--no-long"), threadCount: childThreads);
    return;
}

TorchRuntime.EnsureInitialized();
var json = new JsonSerializerOptions { WriteIndented = false };
void Print(object record) => Console.WriteLine(JsonSerializer.Serialize(record, record.GetType(), json));

if (args is ["peer-ours", .. var oursArgs])
{
    // Our side of the peer benchmark alone (no Python), for quick iterations: peer-ours [runs] [method or method/phase].
    PeerBench.RunOursOnly(
        Print,
        oursArgs.Length > 0 ? int.Parse(oursArgs[0], System.Globalization.CultureInfo.InvariantCulture) : 10,
        oursArgs.Length > 1 ? oursArgs[1] : null);
    return;
}

if (args is ["peer-ours-ab", .. var abArgs])
{
    // Our side alone, switching turn by turn between masked attention as matmuls and the fused kernel: peer-ours-ab [pairs] [runs].
    PeerBench.RunAttentionAb(
        Print,
        abArgs.Length > 0 ? int.Parse(abArgs[0], System.Globalization.CultureInfo.InvariantCulture) : 16,
        abArgs.Length > 1 ? int.Parse(abArgs[1], System.Globalization.CultureInfo.InvariantCulture) : 5);
    return;
}

if (args is ["peer", .. var peerArgs])
{
    // Side by side with Hugging Face + PEFT (benchmarks/peer/peer_bench.py): peer [pairs] [runs per turn] [parts],
    // parts a comma-separated list of methods (the three methods' steps), imdb (an epoch of real reviews with each side's
    // data path) and scaling (sequence x batch); default all three.
    // 12 pairs by default: on a shared 2-core host one turn varies by ±20%, and a median over 5 pairs moved by ±0.15
    // between back-to-back runs (docs/performance.md); the imdb part caps its own pairs at 4.
    var pairs = peerArgs.Length > 0 ? int.Parse(peerArgs[0], System.Globalization.CultureInfo.InvariantCulture) : 12;
    var runs = peerArgs.Length > 1 ? int.Parse(peerArgs[1], System.Globalization.CultureInfo.InvariantCulture) : 5;
    string[] allParts = ["methods", "imdb", "scaling"];
    var parts = (peerArgs.Length > 2 ? peerArgs[2].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : allParts).ToHashSet(StringComparer.Ordinal);
    if (parts.Except(allParts).FirstOrDefault() is { } unknown)
    {
        Console.Error.WriteLine($"peer: unknown part '{unknown}'; parts are {string.Join(",", allParts)}.");
        Environment.Exit(2);
    }

    PeerBench.Run(Print, pairs, runs, warmup: 3, parts);
    return;
}

if (args is ["realsize", .. var realSizeArgs])
{
    // Opt-in, never part of the default run: writes ~2 GB checkpoints per shape and trains at 1B parameters (minutes,
    // ~10 GB). "realsize --smoke" runs the same harness on shrunken shapes in seconds; "realsize llama-3.2-1b" one shape;
    // --no-peer skips the PyTorch side, --no-long the 16 x 512 step; "--layers N" keeps the widths but cuts the layers
    // (memory calibration); "--threads N" replaces the 2 threads.
    var realSizeValues = new Dictionary<string, int>();
    var realSizeShapes = new List<string>();
    for (var i = 0; i < realSizeArgs.Length; i++)
    {
        if (realSizeArgs[i] is "--layers" or "--threads")
        {
            realSizeValues[realSizeArgs[i]] = i + 1 < realSizeArgs.Length && int.TryParse(realSizeArgs[i + 1], out var value) && value > 0
                ? value
                : throw new ArgumentException($"realsize: {realSizeArgs[i]} takes a positive whole number.");
            i++;
        }
        else if (!realSizeArgs[i].StartsWith("--", StringComparison.Ordinal))
        {
            realSizeShapes.Add(realSizeArgs[i]);
        }
    }

    RealSizeBench.Run(Print, smoke: realSizeArgs.Contains("--smoke"), peer: !realSizeArgs.Contains("--no-peer"), longStep: !realSizeArgs.Contains("--no-long"), only: realSizeShapes,
        layers: realSizeValues.TryGetValue("--layers", out var layerCount) ? layerCount : null,
        threads: realSizeValues.TryGetValue("--threads", out var threadCount) ? threadCount : 2);
    return;
}

var only = args.Length > 0 ? args.ToHashSet(StringComparer.OrdinalIgnoreCase) : null;
bool Run(string name) => only is null || only.Contains(name);

var peak = MatmulPeak.Measure();
Print(new { bench = "matmul_peak", gflops_per_s = Math.Round(peak.GflopsPerSecond, 1), best_shape = peak.Shape, threads = TorchRuntime.Threads });
if (Run("engine"))
{
    foreach (var record in EngineBench.Run(peak.GflopsPerSecond))
    {
        Print(record);
    }
}

if (Run("trainer"))
{
    foreach (var record in TrainerBench.Run(peak.GflopsPerSecond))
    {
        Print(record);
    }
}

if (Run("prompt"))
{
    Print(PromptLearningBench.Run());
}

if (Run("ltuning"))
{
    Print(LTuningBench.Run());
}

if (Run("tokenizer"))
{
    Print(TokenizerBench.Run());
}

if (Run("pretrain"))
{
    foreach (var record in PretrainBench.Run())
    {
        Print(record);
    }
}

if (Run("load"))
{
    Print(LoadBench.Run());
}

Print(new { bench = "process", peak_rss_mb = Math.Round(ProcessMemory.PeakRssBytes() / 1e6, 1) });
