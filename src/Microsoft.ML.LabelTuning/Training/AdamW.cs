using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Training;

/// <summary>A group of parameters that share a learning-rate multiplier and a weight decay.</summary>
/// <param name="Name">A stable name for checkpoints and diagnostics.</param>
/// <param name="Parameters">The parameters, each with a stable name.</param>
/// <param name="LearningRateScale">Multiplies the scheduled learning rate (DePT gives its low-rank pair its own rate).</param>
/// <param name="WeightDecay">Decoupled weight decay for this group.</param>
internal sealed record ParameterGroup(
    string Name,
    IReadOnlyList<(string Name, Parameter Parameter)> Parameters,
    double LearningRateScale,
    double WeightDecay);

/// <summary>
/// AdamW (Loshchilov and Hutter), the same update as torch.optim.AdamW: decoupled weight decay, bias-corrected
/// moments. Written here so that its whole state (moments and step count) checkpoints and resumes exactly.
/// </summary>
internal sealed class AdamW : IDisposable
{
    private readonly IReadOnlyList<ParameterGroup> _groups;
    private readonly Dictionary<string, (Tensor M, Tensor V)> _moments = new();
    private readonly double _beta1;
    private readonly double _beta2;
    private readonly double _eps;

    public AdamW(IReadOnlyList<ParameterGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        var names = groups.SelectMany(g => g.Parameters.Select(p => p.Name)).ToList();
        var duplicate = names.GroupBy(n => n).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException($"Parameter '{duplicate.Key}' appears in more than one optimizer group.", nameof(groups));
        }

        _groups = groups;
        _beta1 = beta1;
        _beta2 = beta2;
        _eps = eps;
    }

    /// <summary>Gets the number of updates applied.</summary>
    public long StepCount { get; private set; }

    /// <summary>Gets the groups.</summary>
    public IReadOnlyList<ParameterGroup> Groups => _groups;

    /// <summary>Applies one update with the scheduled learning rate; parameters without a gradient are skipped.</summary>
    public void Step(double learningRate)
    {
        StepCount++;
        var biasCorrection1 = 1 - Math.Pow(_beta1, StepCount);
        var biasCorrection2 = 1 - Math.Pow(_beta2, StepCount);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var group in _groups)
        {
            var lr = learningRate * group.LearningRateScale;
            foreach (var (name, parameter) in group.Parameters)
            {
                var grad = parameter.grad;
                if (grad is null)
                {
                    continue;
                }

                var (m, v) = GetMoments(name, parameter);
                if (group.WeightDecay > 0)
                {
                    parameter.mul_(1 - lr * group.WeightDecay);
                }

                m.mul_(_beta1).add_(grad, alpha: 1 - _beta1);
                v.mul_(_beta2).addcmul_(grad, grad, value: 1 - _beta2);
                var denominator = v.sqrt().div_(Math.Sqrt(biasCorrection2)).add_(_eps);
                parameter.addcdiv_(m, denominator, value: -lr / biasCorrection1);
            }
        }
    }

    /// <summary>Clears every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        using var scope = NewDisposeScope(); // each .grad read makes a tensor handle
        foreach (var (_, parameter) in _groups.SelectMany(g => g.Parameters))
        {
            if (parameter.grad is { } grad)
            {
                grad.zero_();
            }
        }
    }

    /// <summary>The optimizer state as named tensors (copies), for checkpoints.</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor>();
        foreach (var (name, (m, v)) in _moments)
        {
            state[$"{name}.exp_avg"] = m.detach().clone();
            state[$"{name}.exp_avg_sq"] = v.detach().clone();
        }

        return state;
    }

    /// <summary>Restores the state written by <see cref="StateDict"/>.</summary>
    public void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        StepCount = stepCount;
        foreach (var group in _groups)
        {
            foreach (var (name, parameter) in group.Parameters)
            {
                if (state.TryGetValue($"{name}.exp_avg", out var m) && state.TryGetValue($"{name}.exp_avg_sq", out var v))
                {
                    var (myM, myV) = GetMoments(name, parameter);
                    using var noGrad = no_grad();
                    myM.copy_(m);
                    myV.copy_(v);
                }
            }
        }
    }

    private (Tensor M, Tensor V) GetMoments(string name, Parameter parameter)
    {
        if (!_moments.TryGetValue(name, out var moments))
        {
            var m = zeros_like(parameter).DetachFromDisposeScope();
            var v = zeros_like(parameter).DetachFromDisposeScope();
            moments = (m, v);
            _moments[name] = moments;
        }

        return moments;
    }

    public void Dispose()
    {
        foreach (var (m, v) in _moments.Values)
        {
            m.Dispose();
            v.Dispose();
        }

        _moments.Clear();
    }
}
