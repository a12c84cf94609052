namespace Microsoft.ML.LabelTuning.Training;

/// <summary>Linear warmup to the peak rate, then linear decay to zero (the Hugging Face "linear" schedule), or cosine decay.</summary>
internal sealed class LearningRateSchedule
{
    private readonly double _peak;
    private readonly long _warmupSteps;
    private readonly long _totalSteps;
    private readonly bool _cosine;
    private readonly double _floor;

    public LearningRateSchedule(double peak, long totalSteps, double warmupRatio, bool cosine = false, double floorRatio = 0)
    {
        _peak = peak;
        _totalSteps = Math.Max(1, totalSteps);
        _warmupSteps = (long)Math.Ceiling(_totalSteps * warmupRatio);
        _cosine = cosine;
        _floor = peak * floorRatio;
    }

    /// <summary>The rate for the optimizer step with this 0-based index.</summary>
    public double At(long step)
    {
        if (step < _warmupSteps)
        {
            return _peak * (step + 1) / _warmupSteps;
        }

        var progress = Math.Clamp((double)(step - _warmupSteps) / Math.Max(1, _totalSteps - _warmupSteps), 0, 1);
        var decay = _cosine ? 0.5 * (1 + Math.Cos(Math.PI * progress)) : 1 - progress;
        return _floor + (_peak - _floor) * decay;
    }
}
