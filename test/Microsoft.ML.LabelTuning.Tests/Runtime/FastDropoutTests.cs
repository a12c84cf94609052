using Microsoft.ML.LabelTuning.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Runtime;

[TestClass]
public sealed class FastDropoutTests
{
    [TestInitialize]
    public void Initialize() => TorchRuntime.EnsureInitialized();

    [TestMethod]
    [DataRow(0.1)]
    [DataRow(0.5)]
    [DataRow(0.9)]
    public void KeepsEachElementWithProbabilityOneMinusPAndScalesTheKeptOnes(double p)
    {
        using var scope = NewDisposeScope();
        random.manual_seed(7);
        var x = torch.rand(1000, 1024) + 0.5f; // no zeros, so a zero in the output is a dropped element
        var y = FastDropout.Apply(x, p);

        CollectionAssert.AreEqual(x.shape, y.shape);
        var kept = y.ne(0);
        var n = (double)x.numel();
        var keepRate = kept.to(ScalarType.Float64).mean().item<double>();
        var standardError = Math.Sqrt(p * (1 - p) / n);
        Assert.AreEqual(1 - p, keepRate, 5 * standardError, $"keep rate over {n} elements");

        // Kept elements are x / (1 - p), exactly as torch's dropout scales them.
        var expected = x.masked_select(kept) * (float)(1.0 / (1 - p));
        Assert.AreEqual(0.0, (y.masked_select(kept) - expected).abs().max().item<float>(), 1e-6);
    }

    [TestMethod]
    public void NeighbouringElementsAndConsecutiveMasksAreIndependent()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(3);
        const double p = 0.3;
        var ones = torch.ones(1 << 20);
        var first = FastDropout.Apply(ones, p).eq(0).to(ScalarType.Float64);
        var second = FastDropout.Apply(ones, p).eq(0).to(ScalarType.Float64);
        var n = (double)ones.numel();
        var tolerance = 5 * Math.Sqrt(p * p * (1 - (p * p)) / n);

        // Both dropped at the same index in two calls, and at neighbouring indices within one call: p² if independent.
        Assert.AreEqual(p * p, (first * second).mean().item<double>(), tolerance, "the same index in consecutive masks");
        Assert.AreEqual(p * p, (first.narrow(0, 0, (1 << 20) - 1) * first.narrow(0, 1, (1 << 20) - 1)).mean().item<double>(), tolerance, "neighbours");
        Assert.AreEqual(p * p, (first.narrow(0, 0, (1 << 20) - 8) * first.narrow(0, 8, (1 << 20) - 8)).mean().item<double>(), tolerance, "one vector apart");
    }

    [TestMethod]
    public void TheSeedAndTheGeneratorStateDecideTheMask()
    {
        using var scope = NewDisposeScope();
        var x = torch.ones(64, 33);
        random.manual_seed(11);
        var a = FastDropout.Apply(x, 0.25);
        var state = random.get_rng_state();
        var b = FastDropout.Apply(x, 0.25);
        random.manual_seed(11);
        var again = FastDropout.Apply(x, 0.25);
        random.set_rng_state(state);
        var bAgain = FastDropout.Apply(x, 0.25);

        Assert.IsTrue(a.eq(again).all().item<bool>(), "manual_seed reproduces the mask");
        Assert.IsTrue(b.eq(bAgain).all().item<bool>(), "restoring the generator state (a checkpointed layer's rerun) reproduces the mask");
        Assert.IsFalse(a.eq(b).all().item<bool>(), "the next call draws a new mask");
    }

    [TestMethod]
    public void TheVectorLoopAndTheScalarTailGiveEachIndexTheSameDecision()
    {
        var longer = new float[1000];
        var shorter = new float[37];
        FastDropout.Fill(longer, 0.4, 123u, 456u);
        FastDropout.Fill(shorter, 0.4, 123u, 456u); // shorter than most vector widths: scalar for (nearly) all of it
        CollectionAssert.AreEqual(shorter, longer.Take(37).ToArray());
        var single = new float[1];
        FastDropout.Fill(single, 0.4, 123u, 456u);
        Assert.AreEqual(longer[0], single[0]);
    }

    [TestMethod]
    public void TheGradientIsTheMask()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(5);
        var x = torch.randn(8, 16, 32).requires_grad_(true);
        var y = FastDropout.Apply(x, 0.2);
        y.sum().backward();
        var mask = y.detach() / x.detach(); // 1 / 0.8 where kept, 0 where dropped
        Assert.AreEqual(0.0, (x.grad! - mask).abs().max().item<float>(), 1e-5);
    }

    [TestMethod]
    public void TheEdgesAreIdentityAndZeroAndABadProbabilityIsRefused()
    {
        using var scope = NewDisposeScope();
        var x = torch.randn(4, 5);
        Assert.IsTrue(FastDropout.Apply(x, 0).eq(x).all().item<bool>());
        Assert.IsTrue(FastDropout.Apply(x, 1).eq(torch.zeros(4, 5)).all().item<bool>());
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => FastDropout.Apply(x, 1.5));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => FastDropout.Apply(x, double.NaN));
        using var half = FastDropout.Apply(x.to(ScalarType.Float64), 0.5);
        Assert.AreEqual(ScalarType.Float64, half.dtype);
    }
}
