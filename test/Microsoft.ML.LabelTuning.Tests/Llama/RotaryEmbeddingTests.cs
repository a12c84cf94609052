using Microsoft.ML.LabelTuning.Llama;
using TorchSharp;
using static Microsoft.ML.LabelTuning.Tests.Llama.LlamaTesting;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

[TestClass]
public sealed class RotaryEmbeddingTests
{
    [TestMethod]
    public void Llama3ScalingMatchesTheHandComputedInverseFrequencies()
    {
        // Llama 3.1: θ = 500000, Dh = 128, factor 8, low 1, high 4, original context L = 8192.
        var config = TinyConfig() with
        {
            HiddenSize = 256,
            NumAttentionHeads = 2,
            NumKeyValueHeads = 1,
            RopeTheta = 500000,
            RopeScaling = new RopeScalingConfig { RopeType = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 8192 },
        };
        config.Validate();
        var actual = RotaryEmbedding.ComputeInverseFrequencies(config);

        // f_i = 1 / θ^(2i/Dh); λ_i = 2π / f_i.
        // λ < L/high: keep f.   λ > L/low: f / factor.
        // otherwise s = (L/λ − low) / (high − low) and f' = (1 − s)·f/factor + s·f.
        const double Theta = 500000, Factor = 8, Low = 1, High = 4, L = 8192;
        const int Dim = 128;
        var regimes = new HashSet<string>();
        Assert.AreEqual(Dim / 2, actual.Length);
        for (var i = 0; i < Dim / 2; i++)
        {
            var f = 1.0 / Math.Pow(Theta, 2.0 * i / Dim);
            var wavelength = 2 * Math.PI / f;
            double expected;
            if (wavelength < L / High)
            {
                expected = f;
                regimes.Add("high");
            }
            else if (wavelength > L / Low)
            {
                expected = f / Factor;
                regimes.Add("low");
            }
            else
            {
                var s = (L / wavelength - Low) / (High - Low);
                expected = (1 - s) * f / Factor + s * f;
                regimes.Add("medium");
            }

            Assert.AreEqual(expected, actual[i], Math.Abs(expected) * 1e-5, $"inv_freq[{i}]");
        }

        Assert.AreEqual(3, regimes.Count, "The test must cover all three regimes.");
    }

    [TestMethod]
    public void DefaultAndLinearScalingFollowTheirFormulas()
    {
        var config = TinyConfig() with { RopeTheta = 10000 };
        var plain = RotaryEmbedding.ComputeInverseFrequencies(config);
        var linear = RotaryEmbedding.ComputeInverseFrequencies(config with { RopeScaling = new RopeScalingConfig { Type = "linear", Factor = 4 } });
        var dim = config.HeadDimension;
        for (var i = 0; i < dim / 2; i++)
        {
            var f = 1.0 / Math.Pow(10000, 2.0 * i / dim);
            Assert.AreEqual(f, plain[i], f * 1e-6, $"inv_freq[{i}]");
            Assert.AreEqual(f / 4, linear[i], f * 1e-6, $"linear inv_freq[{i}]");
        }
    }

    [TestMethod]
    public void CachedRangeEqualsExplicitPositions()
    {
        using var scope = torch.NewDisposeScope();
        using var rotary = new RotaryEmbedding(TinyConfig());
        var (cosRange, sinRange) = rotary.ForRange(3, 300, torch.CPU, ScalarType.Float32); // grows the table past 256
        var positions = torch.arange(3, 303, dtype: ScalarType.Int64).unsqueeze(0);
        var (cos, sin) = rotary.ForPositions(positions, ScalarType.Float32);
        AssertClose(cos, cosRange, 0, "cos");
        AssertClose(sin, sinRange, 0, "sin");
    }

    [TestMethod]
    public void RotationUsesRotateHalfAndPreservesNorms()
    {
        using var scope = torch.NewDisposeScope();
        using var rotary = new RotaryEmbedding(TinyConfig());
        var x = torch.randn(1, 1, 5, 8, generator: new Generator(1));
        var (cos, sin) = rotary.ForRange(0, 5, torch.CPU, ScalarType.Float32);
        var rotated = RotaryEmbedding.Apply(x, cos, sin);
        AssertClose(x.norm(-1), rotated.norm(-1), 1e-5, "norms");
        AssertClose(x[.., .., 0], rotated[.., .., 0], 0, "position 0 is not rotated");

        // Pair (x_j, x_{j+Dh/2}) rotates by angle p·f_j.
        var p = 3;
        var f = rotary.InverseFrequencies[1];
        var angle = p * f;
        var (a, b) = (x[0, 0, p, 1].item<float>(), x[0, 0, p, 5].item<float>());
        Assert.AreEqual(a * MathF.Cos(angle) - b * MathF.Sin(angle), rotated[0, 0, p, 1].item<float>(), 1e-5);
        Assert.AreEqual(b * MathF.Cos(angle) + a * MathF.Sin(angle), rotated[0, 0, p, 5].item<float>(), 1e-5);
    }
}
