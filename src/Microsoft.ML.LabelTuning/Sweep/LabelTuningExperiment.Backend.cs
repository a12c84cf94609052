using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>The seam for sweeps that run elsewhere: a backend, the sweep as data, and one trial run from that data.</summary>
public sealed partial class LabelTuningExperiment
{
    private ISweepBackend? _backend;

    /// <summary>Gets the MLContext the experiment was made with.</summary>
    internal MLContext Context => _ml;

    /// <summary>Gets the progress receiver, when one was set.</summary>
    internal IProgress<SweepProgress>? ProgressReceiver => _progress;

    /// <summary>Runs the sweep through <paramref name="backend"/> (null: in this process, the default).</summary>
    internal LabelTuningExperiment SetBackend(ISweepBackend? backend)
    {
        _backend = backend;
        return this;
    }

    /// <summary>The training and validation data; throws as <see cref="RunAsync"/> does when none was set.</summary>
    internal (IDataView Train, IDataView Validation) Dataset()
        => _train is not null && _validation is not null
            ? (_train, _validation)
            : throw new InvalidOperationException("Call SetDataset before RunAsync: the sweep needs training and validation data.");

    /// <summary>The sweep as data, validated; throws when something cannot travel (a delegate).</summary>
    internal SweepDescription Describe()
    {
        _settings.Validate();
        if (_settings.ConfigureOptions is not null)
        {
            throw new InvalidOperationException(
                "LabelTuningExperimentSettings.ConfigureOptions is a delegate, which cannot travel to the silos of a cluster; " +
                "fix those option values in the search space instead (for example space.Fix(\"WarmupRatio\", 0.05)).");
        }

        return new SweepDescription
        {
            ModelPath = Path.GetFullPath(_settings.ModelPath),
            LabelColumnName = _settings.LabelColumnName,
            TextColumnName = _settings.TextColumnName,
            SecondTextColumnName = _settings.SecondTextColumnName,
            MaxSequenceLength = _settings.MaxSequenceLength,
            BatchSize = _settings.BatchSize,
            Dtype = _settings.Dtype,
            Seed = Seed(),
            Metric = _metric,
            MaxTrials = _maxTrials,
            TimeBudgetSeconds = _timeBudget?.TotalSeconds,
            Halving = _halving is { } h ? new HalvingDescription { MinEpochs = h.MinEpochs, MaxEpochs = h.MaxEpochs, Eta = h.Eta } : null,
            Space = SweepDescription.Describe(_space ?? LabelTuningSearchSpace.Default()),
        };
    }

    /// <summary>
    /// Trains and measures one trial of a described sweep exactly as the local sweep does (same options, same data
    /// preparation, same evaluation). <paramref name="configure"/> completes the options last (a cluster sets the trial's
    /// checkpoint folder there). A trial that throws comes back as a failed result; cancellation throws.
    /// </summary>
    internal static DescribedTrialOutcome RunDescribedTrial(
        MLContext ml,
        SweepDescription description,
        LabelTuningSearchSpace space,
        IDataView train,
        IDataView validation,
        TrialProposal proposal,
        int id,
        CancellationToken cancellationToken,
        Action<TrainingProgress>? onTraining = null,
        Action<LabelTuningOptions>? configure = null)
    {
        var settings = description.BuildSettings();
        settings.ConfigureOptions = configure;
        var experiment = new LabelTuningExperiment(ml, settings) { _space = space, _metric = description.Metric };
        var data = experiment.Prepare(train, validation);
        var host = ((IHostEnvironment)ml).Register("LabelTuningExperiment");
        using var channel = host.Start("Trial");
        var (result, model) = experiment.RunTrial(proposal, id, description.Seed, data, cancellationToken, space, channel, onTraining ?? (_ => { }));
        return new DescribedTrialOutcome(result, model, data.InputSchema);
    }

    /// <summary>Frees a trial's model (each part of a chain).</summary>
    internal static void DisposeTrialModel(ITransformer? model) => DisposeModel(model);
}

/// <summary>A trial's result, its fitted model (null when it failed) and the schema to save the model with.</summary>
internal sealed record DescribedTrialOutcome(TrialResult Result, ITransformer? Model, DataViewSchema InputSchema);
