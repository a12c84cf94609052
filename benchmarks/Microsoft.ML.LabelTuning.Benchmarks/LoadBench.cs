using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>Memory cost of loading a checkpoint: resident-memory growth over the file's size (target ≤ 1.3).</summary>
internal static class LoadBench
{
    /// <summary>The child side: prints RSS before and after loading, and the peak, in bytes.</summary>
    public static void Child(string folder)
    {
        Runtime.TorchRuntime.EnsureInitialized();
        var warm = torch.zeros(1); // load libtorch before measuring
        warm.Dispose();
        var before = ProcessMemory.RssBytes();
        using var loaded = CheckpointLoader.LoadCausalLM(folder);
        Console.WriteLine($"{before} {ProcessMemory.RssBytes()} {ProcessMemory.PeakRssBytes()}");
    }

    public static object Run()
    {
        var config = BenchConfig.Model with { HiddenSize = 512, IntermediateSize = 1376, NumHiddenLayers = 8, NumAttentionHeads = 8, NumKeyValueHeads = 8 };
        var folder = Directory.CreateTempSubdirectory("lt-load-").FullName;
        try
        {
            torch.random.manual_seed(0);
            using (var model = new LlamaForCausalLM(config))
            {
                CheckpointLoader.SaveHfFolder(model, config, folder);
            }

            // Measured in a fresh process, so memory freed by building the model here cannot hide the load's cost.
            var fileBytes = new FileInfo(Path.Combine(folder, "model.safetensors")).Length;
            var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true };
            start.ArgumentList.Add(typeof(LoadBench).Assembly.Location);
            start.ArgumentList.Add("--load-child");
            start.ArgumentList.Add(folder);
            using var child = System.Diagnostics.Process.Start(start)!;
            var output = child.StandardOutput.ReadToEnd().Trim().Split(' ');
            child.WaitForExit();
            var (before, after) = (long.Parse(output[0], System.Globalization.CultureInfo.InvariantCulture), long.Parse(output[1], System.Globalization.CultureInfo.InvariantCulture));
            return new
            {
                bench = "checkpoint_load",
                file_mb = Math.Round(fileBytes / 1e6, 1),
                rss_growth_mb = Math.Round((after - before) / 1e6, 1),
                ratio_to_file_size = Math.Round((double)(after - before) / fileBytes, 3),
                peak_rss_growth_mb = Math.Round((long.Parse(output[2], System.Globalization.CultureInfo.InvariantCulture) - before) / 1e6, 1),
                target = 1.3,
            };
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
