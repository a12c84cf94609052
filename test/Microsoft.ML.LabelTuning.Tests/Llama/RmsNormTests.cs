using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Tests.Llama;

[TestClass]
public sealed class RmsNormTests
{
    private const double Eps = 1e-5;

    [TestInitialize]
    public void Initialize() => TorchRuntime.EnsureInitialized();

    [TestMethod]
    [DataRow(true, false)]
    [DataRow(false, true)]
    [DataRow(true, true)]
    public void TheFusedNodeMatchesTheCompositeFormInFloat64ForwardAndBackward(bool inputGrad, bool weightGrad)
    {
        using var scope = NewDisposeScope();
        random.manual_seed(5);
        using var norm = new RmsNorm(48, Eps);
        using (no_grad())
        {
            norm.Weight.copy_(torch.randn(48) * 0.5 + 1);
        }

        norm.Weight.requires_grad_(weightGrad);
        var x = (torch.randn(3, 7, 48) * 3).requires_grad_(inputGrad); // rows of different scales
        var upstream = torch.randn(3, 7, 48);

        var y = norm.call(x);
        Assert.IsTrue(y.requires_grad, "a recorded node");
        var gradients = autograd.grad([y], Wrt(x, norm.Weight, inputGrad, weightGrad), [upstream]);

        // Hugging Face's formula, in float64 and differentiated by autograd.
        var x64 = x.detach().to(ScalarType.Float64).requires_grad_(inputGrad);
        var w64 = norm.Weight.detach().to(ScalarType.Float64).requires_grad_(weightGrad);
        var expected = w64 * (x64 * torch.rsqrt(x64.square().mean([-1L], keepdim: true) + Eps));
        var expectedGradients = autograd.grad([expected], Wrt(x64, w64, inputGrad, weightGrad), [upstream.to(ScalarType.Float64)]);

        LlamaTesting.AssertCloseToScale(expected, y, 1e-5, "output"); // the float64 reference
        for (var i = 0; i < gradients.Count; i++)
        {
            LlamaTesting.AssertCloseToScale(expectedGradients[i], gradients[i], 1e-5, i == 0 && inputGrad ? "input gradient" : "weight gradient");
        }
    }

    [TestMethod]
    public void ScoringWithoutGradientsGivesTheSameValuesAsTheRecordedNode()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(9);
        using var norm = new RmsNorm(32, Eps);
        var x = torch.randn(4, 5, 32).requires_grad_(true);
        var recorded = norm.call(x);
        Tensor plain;
        using (no_grad())
        {
            plain = norm.call(x);
        }

        Assert.IsFalse(plain.requires_grad);
        Assert.AreEqual(0.0, (recorded.detach() - plain).abs().max().item<float>(), 0.0, "the same kernels either way");
    }

    [TestMethod]
    public void AnInputOfAnotherDtypeIsNormalisedInFloat32AndCastBack()
    {
        using var scope = NewDisposeScope();
        random.manual_seed(2);
        using var norm = new RmsNorm(16, Eps, dtype: ScalarType.BFloat16);
        using var reference32 = new RmsNorm(16, Eps);
        var x = torch.randn(2, 16) * 4;
        var y = norm.call(x.to(ScalarType.BFloat16));

        Assert.AreEqual(ScalarType.BFloat16, y.dtype);
        var reference = reference32.call(x.to(ScalarType.BFloat16).to(ScalarType.Float32));
        Assert.AreEqual(0.0, (y.to(ScalarType.Float32) - reference).abs().max().item<float>(), 0.05, "bfloat16 rounding of the float32 values");
    }

    [TestMethod]
    public void BackwardLeavesNoGradientHandlesBehindInTheStepsScope()
    {
        // Each call's incoming and returned gradient handles are released during the backward pass (at most the last
        // call's stay), not kept until the step's scope ends: at real sizes each is an activation-sized tensor.
        using var norm = new RmsNorm(64, Eps);
        using var scope = NewDisposeScope();
        var x = torch.randn(8, 64).requires_grad_(true);
        var h = x;
        for (var i = 0; i < 6; i++)
        {
            h = norm.call(h);
        }

        var loss = h.sum();
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        loss.backward();
        var added = DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;

        Assert.IsNotNull(x.grad);
        Assert.IsTrue(added <= 3, $"{added} more live handles after backward through 6 norms");
    }

    private static List<Tensor> Wrt(Tensor x, Tensor w, bool inputGrad, bool weightGrad)
        => (inputGrad ? [x] : new List<Tensor>()).Concat(weightGrad ? [w] : []).ToList();
}
