using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// Places a grain on the silo its key names (<c>{silo}|...</c>), so the coordinator decides where each trial trains.
/// When that silo is no longer in the cluster the grain goes to any silo, where it reports
/// <see cref="TrialAttemptState.Idle"/> and the coordinator re-runs the trial.
/// </summary>
[GenerateSerializer]
[Immutable]
public sealed class TargetSiloPlacement : PlacementStrategy
{
    internal static readonly TargetSiloPlacement Instance = new();
}

/// <summary>Marks a grain class for <see cref="TargetSiloPlacement"/>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class TargetSiloPlacementAttribute : PlacementAttribute
{
    /// <summary>Initializes a new instance of the <see cref="TargetSiloPlacementAttribute"/> class.</summary>
    public TargetSiloPlacementAttribute()
        : base(TargetSiloPlacement.Instance)
    {
    }
}

internal sealed class TargetSiloPlacementDirector : IPlacementDirector
{
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        var silos = context.GetCompatibleSilos(target);
        var key = target.GrainIdentity.Key.ToString();
        var bar = key.IndexOf('|', StringComparison.Ordinal);
        if (bar > 0)
        {
            var wanted = key[..bar];
            foreach (var silo in silos)
            {
                if (silo.ToParsableString() == wanted)
                {
                    return Task.FromResult(silo);
                }
            }
        }

        return Task.FromResult(silos[Random.Shared.Next(silos.Length)]);
    }

    /// <summary>The key of a trial grain on <paramref name="silo"/>.</summary>
    internal static string Key(SiloAddress silo, string sweepId, int trialId, int attempt) => $"{silo.ToParsableString()}|{sweepId}|{trialId}|{attempt}";
}
