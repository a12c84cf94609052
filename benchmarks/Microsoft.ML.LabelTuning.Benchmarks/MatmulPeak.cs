using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>The fp32 matmul peak of this process: the best GFLOP/s over a few large square-ish products.</summary>
internal static class MatmulPeak
{
    public static (double GflopsPerSecond, string Shape) Measure()
    {
        var best = 0.0;
        var bestShape = string.Empty;
        foreach (var (m, k, n) in new[] { (1024, 1024, 1024), (2048, 1024, 1024), (1024, 256, 688), (1024, 688, 256), (2048, 2048, 2048) })
        {
            using var scope = NewDisposeScope();
            var a = randn(m, k);
            var b = randn(k, n);
            for (var i = 0; i < 3; i++)
            {
                a.matmul(b).Dispose();
            }

            var flops = 2.0 * m * k * n;
            var repeats = Math.Max(5, (int)(4e9 / flops));
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < repeats; i++)
            {
                a.matmul(b).Dispose();
            }

            var gflops = flops * repeats / clock.Elapsed.TotalSeconds / 1e9;
            if (gflops > best)
            {
                best = gflops;
                bestShape = $"{m}x{k}x{n}";
            }
        }

        return (best, bestShape);
    }
}
