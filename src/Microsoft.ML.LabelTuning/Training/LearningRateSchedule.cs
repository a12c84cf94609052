namespace Microsoft.ML.LabelTuning.Training;

/// <summary>The shape of the learning rate after its linear warmup.</summary>
internal enum ScheduleShape
{
    /// <summary>The peak until the end.</summary>
    Constant,

    /// <summary>Linear decay from the end of warmup to the floor at the last step (Hugging Face's "linear" with a floor of 0).</summary>
    Linear,

    /// <summary>Cosine decay from the end of warmup to the floor at the last step.</summary>
    Cosine,

    /// <summary>
    /// Warmup-stable-decay: the peak until the last <c>ceil(totalSteps × decayFraction)</c> steps, then a linear fall to
    /// the floor at the last step, so that the budget can be raised at any time before the decay starts.
    /// </summary>
    WarmupStableDecay,
}

/// <summary>
/// The one learning-rate schedule of the training engine: linear warmup from 0 to the peak over
/// <see cref="WarmupSteps"/> optimizer steps, then <see cref="Shape"/> down to <c>peak × floorRatio</c>. A pure
/// function of the 0-based step, so a resumed run trains at exactly the rates of an uninterrupted one.
/// </summary>
internal sealed class LearningRateSchedule
{
    private readonly double _peak;
    private readonly long _totalSteps;
    private readonly double _floorRatio;
    private readonly double _decayFraction;

    /// <summary>Creates a schedule.</summary>
    /// <param name="shape">The shape after warmup.</param>
    /// <param name="peak">The rate at the end of warmup.</param>
    /// <param name="totalSteps">The steps of the whole run (the decay ends here).</param>
    /// <param name="warmupSteps">Steps of linear warmup.</param>
    /// <param name="floorRatio">The last step's rate as a fraction of the peak (decaying shapes).</param>
    /// <param name="decayFraction">The fraction of the steps, at the end, that warmup-stable-decay decays over.</param>
    public LearningRateSchedule(ScheduleShape shape, double peak, long totalSteps, long warmupSteps, double floorRatio = 0, double decayFraction = 0.2)
    {
        Shape = shape;
        _peak = peak;
        _totalSteps = totalSteps;
        WarmupSteps = warmupSteps;
        _floorRatio = floorRatio;
        _decayFraction = decayFraction;
    }

    /// <summary>Gets the shape after warmup.</summary>
    public ScheduleShape Shape { get; }

    /// <summary>Gets the steps of linear warmup.</summary>
    public long WarmupSteps { get; }

    /// <summary>
    /// The fine-tuning schedule: warmup over <c>ceil(totalSteps × warmupRatio)</c> steps, then linear decay to zero.
    /// </summary>
    public static LearningRateSchedule Linear(double peak, long totalSteps, double warmupRatio)
    {
        var total = Math.Max(1, totalSteps);
        return new LearningRateSchedule(ScheduleShape.Linear, peak, total, (long)Math.Ceiling(total * warmupRatio));
    }

    /// <summary>The rate of the optimizer step with this 0-based index.</summary>
    public double At(long step)
    {
        if (step < WarmupSteps)
        {
            return _peak * (step + 1) / WarmupSteps;
        }

        var floor = _peak * _floorRatio;
        switch (Shape)
        {
            case ScheduleShape.Constant:
                return _peak;
            case ScheduleShape.WarmupStableDecay:
            {
                var decaySteps = Math.Max(1, (long)Math.Ceiling(_totalSteps * _decayFraction));
                var decayStart = Math.Max(WarmupSteps, _totalSteps - decaySteps);
                if (step < decayStart)
                {
                    return _peak;
                }

                var fallen = Math.Clamp((double)(step + 1 - decayStart) / Math.Max(1, _totalSteps - decayStart), 0, 1);
                return _peak - ((_peak - floor) * fallen);
            }

            default:
            {
                var progress = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, _totalSteps - WarmupSteps), 0, 1);
                return Shape == ScheduleShape.Cosine
                    ? floor + ((_peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress)))
                    : floor + ((_peak - floor) * (1 - progress));
            }
        }
    }

    /// <summary>
    /// The linear re-warmup factor after the AdamW moments were reset at <paramref name="resetAtStep"/> (a start from
    /// weights without moments): from <c>1 / steps</c> at the reset step up to 1 after <paramref name="steps"/> steps;
    /// 1 when no reset happened.
    /// </summary>
    public static double RewarmFactor(long step, long? resetAtStep, int steps)
        => resetAtStep is { } reset && steps > 0 && step >= reset
            ? Math.Min(1.0, (double)(step - reset + 1) / steps)
            : 1.0;
}
