using Microsoft.ML.LabelTuning.Methods;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>What a tuner proposes: a configuration of a method, at an epoch budget (the rung).</summary>
internal sealed record TrialProposal(int ConfigurationId, TuningMethod Method, SortedDictionary<string, object> Parameters, int Rung);

/// <summary>
/// Proposes trials one at a time. A tuner is a pure function of its seed and the results it was told, so a resumed
/// sweep that replays the recorded results gets the same proposals again.
/// </summary>
internal interface ISweepTuner
{
    /// <summary>The next trial, or null when the tuner has nothing more to try.</summary>
    /// <param name="remainingTrials">Trials left in the budget (int.MaxValue when unbounded).</param>
    TrialProposal? Propose(int remainingTrials);

    /// <summary>Tells the tuner how a proposed trial ended.</summary>
    void Update(TrialResult result);
}

/// <summary>
/// Draws configurations: first each method at its defaults (the annotations' init values), in the search space's order,
/// then a method uniformly at random and each of its parameters from its range, in name order.
/// </summary>
internal sealed class ConfigurationSampler
{
    private readonly LabelTuningSearchSpace _space;
    private readonly Random _random;
    private int _drawn;

    public ConfigurationSampler(LabelTuningSearchSpace space, int seed)
    {
        if (space.Methods.Count == 0)
        {
            throw new InvalidOperationException("The search space has no methods; add at least one with SetSearchSpace.");
        }

        _space = space;
        _random = new Random(seed);
    }

    public (int ConfigurationId, TuningMethod Method, SortedDictionary<string, object> Parameters) Next()
    {
        var index = _drawn++;
        var useDefaults = index < _space.Methods.Count;
        var method = useDefaults ? _space.Methods[index] : _space.Methods[_random.Next(_space.Methods.Count)];
        var parameters = new SortedDictionary<string, object>(StringComparer.Ordinal);
        foreach (var parameter in method.Parameters)
        {
            parameters[parameter.Name] = Normalize(useDefaults ? parameter.Default : parameter.Sample(_random));
        }

        return (index + 1, method.Method, parameters);
    }

    /// <summary>Enums travel as their names, so the JSON log and the leaderboard read them.</summary>
    private static object Normalize(object value) => value is Enum e ? e.ToString() : value;
}

/// <summary>Random search: every trial is a fresh configuration, trained for its sampled (or fixed) epochs.</summary>
internal sealed class RandomSearchTuner(LabelTuningSearchSpace space, int seed) : ISweepTuner
{
    private readonly ConfigurationSampler _sampler = new(space, seed);

    public TrialProposal? Propose(int remainingTrials)
    {
        var (id, method, parameters) = _sampler.Next();
        return new TrialProposal(id, method, parameters, 0);
    }

    public void Update(TrialResult result)
    {
    }
}

/// <summary>
/// Successive halving with epochs as the resource: a bracket trains n configurations for the fewest epochs, keeps the
/// best 1/eta of them, trains those for eta times more epochs, and so on up to the most epochs; poor configurations stop
/// early. Each rung retrains from scratch with the larger epoch count (the learning-rate schedule spans the whole run,
/// so a shorter run's checkpoint is not a prefix of a longer one). The bracket's n is the largest, up to eta^(rungs-1),
/// whose rungs fit in the trials left; when a bracket ends and budget remains, a new one starts.
/// </summary>
internal sealed class SuccessiveHalvingTuner : ISweepTuner
{
    private readonly ConfigurationSampler _sampler;
    private readonly int[] _rungEpochs;
    private readonly int _eta;
    private readonly LabelTuningMetric _metric;
    private readonly Queue<TrialProposal> _queue = new();
    private readonly List<TrialResult> _rungResults = [];
    private readonly Dictionary<int, (TuningMethod Method, SortedDictionary<string, object> Parameters)> _configurations = [];
    private int _rung = -1;
    private int _rungSize;

    public SuccessiveHalvingTuner(LabelTuningSearchSpace space, int seed, int minEpochs, int maxEpochs, int eta, LabelTuningMetric metric)
    {
        _sampler = new ConfigurationSampler(space, seed);
        _rungEpochs = RungEpochs(minEpochs, maxEpochs, eta);
        _eta = eta;
        _metric = metric;
    }

    /// <summary>The epochs of each rung: min, min·eta, min·eta², ..., capped by (and ending at) max.</summary>
    internal static int[] RungEpochs(int minEpochs, int maxEpochs, int eta)
    {
        var epochs = new List<int> { minEpochs };
        while (epochs[^1] < maxEpochs)
        {
            epochs.Add((int)Math.Min(maxEpochs, (long)epochs[^1] * eta));
        }

        return [.. epochs];
    }

    /// <summary>Trials a bracket of <paramref name="n"/> configurations takes: n + ceil(n/eta) + ceil(n/eta²) + ...</summary>
    internal static int BracketCost(int n, int rungs, int eta)
    {
        var cost = 0;
        for (var k = 0; k < rungs; k++)
        {
            cost += n;
            n = Math.Max(1, (n + eta - 1) / eta);
        }

        return cost;
    }

    /// <summary>Gets the proposals of the current rung not yet handed out (a distributed sweep proposes these without waiting).</summary>
    internal int Queued => _queue.Count;

    public TrialProposal? Propose(int remainingTrials)
    {
        if (_queue.Count == 0)
        {
            Advance(remainingTrials);
        }

        return _queue.Dequeue();
    }

    public void Update(TrialResult result)
    {
        if (result.Rung == _rung)
        {
            _rungResults.Add(result);
        }
    }

    private void Advance(int remainingTrials)
    {
        var completed = TrialResult.Rank(_rungResults.Where(r => r.Status == TrialStatus.Completed && double.IsFinite(r.Metric)), _metric).ToList();
        if (_rung >= 0 && _rung + 1 < _rungEpochs.Length && completed.Count > 0)
        {
            var keep = Math.Max(1, (_rungSize + _eta - 1) / _eta);
            _rung++;
            _rungSize = Math.Min(keep, completed.Count);
            _rungResults.Clear();
            foreach (var survivor in completed.Take(_rungSize))
            {
                var (method, parameters) = _configurations[survivor.ConfigurationId];
                _queue.Enqueue(new TrialProposal(survivor.ConfigurationId, method, WithEpochs(parameters, _rungEpochs[_rung]), _rung));
            }

            return;
        }

        // A new bracket: as many configurations as fit the trials left, at most eta^(rungs-1).
        var full = (int)Math.Min(10_000, Math.Pow(_eta, _rungEpochs.Length - 1));
        var n = 1;
        while (n < full && BracketCost(n + 1, _rungEpochs.Length, _eta) <= remainingTrials)
        {
            n++;
        }

        _rung = 0;
        _rungSize = n;
        _rungResults.Clear();
        for (var i = 0; i < n; i++)
        {
            var (id, method, parameters) = _sampler.Next();
            _configurations[id] = (method, parameters);
            _queue.Enqueue(new TrialProposal(id, method, WithEpochs(parameters, _rungEpochs[0]), 0));
        }
    }

    private static SortedDictionary<string, object> WithEpochs(SortedDictionary<string, object> parameters, int epochs)
        => new(parameters, StringComparer.Ordinal) { ["Epochs"] = epochs };
}
