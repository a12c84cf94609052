using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.LabelTuning.Transformers;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms;

namespace Microsoft.ML.LabelTuning.Sweep;

/// <summary>
/// A sweep over tuning methods and their settings, in the shape of ML.NET AutoML's <c>AutoMLExperiment</c>: set the
/// data, the search space, the metric and the budgets fluently, then <see cref="RunAsync"/> returns the best trial with
/// its fitted model and the full leaderboard.
/// </summary>
/// <example>
/// <code>
/// var result = await new LabelTuningExperiment(ml, new LabelTuningExperimentSettings { ModelPath = "models/labeltuning-default" })
///     .SetDataset(train, validation)
///     .SetMetric(LabelTuningMetric.MacroAccuracy)
///     .SetMaxTrials(12)
///     .SetTrainingTimeInSeconds(600)
///     .RunAsync();
/// </code>
/// </example>
public sealed partial class LabelTuningExperiment
{
    private readonly MLContext _ml;
    private readonly LabelTuningExperimentSettings _settings;
    private IDataView? _train;
    private SharedBaseModels.DeferredHold? _baseHold;
    private IDataView? _validation;
    private LabelTuningSearchSpace? _space;
    private LabelTuningMetric _metric = LabelTuningMetric.MacroAccuracy;
    private TimeSpan? _timeBudget;
    private int? _maxTrials;
    private string? _checkpointFolder;
    private IProgress<SweepProgress>? _progress;
    private (int MinEpochs, int MaxEpochs, int Eta)? _halving;

    /// <summary>Creates an experiment; nothing runs until <see cref="RunAsync"/>.</summary>
    /// <param name="context">The ML.NET context: its seed (when the settings give none), log channel and device settings are used.</param>
    /// <param name="settings">What every trial shares.</param>
    public LabelTuningExperiment(MLContext context, LabelTuningExperimentSettings settings)
    {
        _ml = context ?? throw new ArgumentNullException(nameof(context));
        _settings = settings ?? throw new ArgumentNullException(nameof(settings));
    }

    /// <summary>Sets the training data and the validation data the metric is measured on.</summary>
    /// <param name="train">Training rows.</param>
    /// <param name="validation">Validation rows (same schema).</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetDataset(IDataView train, IDataView validation)
    {
        _train = train ?? throw new ArgumentNullException(nameof(train));
        _validation = validation ?? throw new ArgumentNullException(nameof(validation));
        return this;
    }

    /// <summary>Splits <paramref name="data"/> at random (with the experiment's seed) into training and validation rows.</summary>
    /// <param name="data">All labelled rows.</param>
    /// <param name="trainFraction">The fraction used for training, strictly between 0 and 1. Default 0.8.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetDataset(IDataView data, double trainFraction = 0.8)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (!(trainFraction is > 0 and < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(trainFraction), trainFraction, $"trainFraction must be strictly between 0 and 1 but is {trainFraction}.");
        }

        var split = _ml.Data.TrainTestSplit(data, testFraction: 1 - trainFraction, seed: Seed());
        return SetDataset(split.TrainSet, split.TestSet);
    }

    /// <summary>Sets the methods to try and their ranges. Default: <see cref="LabelTuningSearchSpace.Default"/>, every registered method.</summary>
    /// <param name="searchSpace">The search space.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetSearchSpace(LabelTuningSearchSpace searchSpace)
    {
        ArgumentNullException.ThrowIfNull(searchSpace);
        if (searchSpace.Methods.Count == 0)
        {
            throw new ArgumentException("The search space has no methods.", nameof(searchSpace));
        }

        _space = searchSpace;
        return this;
    }

    /// <summary>Tries the given methods with their registered default ranges.</summary>
    /// <param name="methods">The methods.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetSearchSpace(params TuningMethod[] methods) => SetSearchSpace(LabelTuningSearchSpace.For(methods));

    /// <summary>Sets the metric trials are ranked by. Default <see cref="LabelTuningMetric.MacroAccuracy"/>.</summary>
    /// <param name="metric">The metric.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetMetric(LabelTuningMetric metric)
    {
        if (!Enum.IsDefined(metric))
        {
            throw new ArgumentOutOfRangeException(nameof(metric), metric, "Unknown metric.");
        }

        _metric = metric;
        return this;
    }

    /// <summary>Bounds the sweep's wall-clock time; when it runs out the running trial is cancelled (and not recorded). Default unbounded.</summary>
    /// <param name="seconds">The budget in seconds; positive.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetTrainingTimeInSeconds(uint seconds)
    {
        if (seconds == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(seconds), seconds, "The training time budget must be positive.");
        }

        _timeBudget = TimeSpan.FromSeconds(seconds);
        return this;
    }

    /// <summary>Bounds the number of trials (a successive-halving rung counts each of its trials). Default unbounded.</summary>
    /// <param name="maxTrials">Positive.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetMaxTrials(int maxTrials)
    {
        if (maxTrials <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTrials), maxTrials, $"maxTrials must be positive but is {maxTrials}.");
        }

        _maxTrials = maxTrials;
        return this;
    }

    /// <summary>
    /// Persists every finished trial as a JSON line in <c>trials.jsonl</c> and the best model as <c>trial-NNNN.zip</c>
    /// in <paramref name="folder"/>; a sweep run again with the same folder, seed and search space reuses the recorded
    /// trials instead of rerunning them.
    /// </summary>
    /// <param name="folder">The folder (created when missing).</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetCheckpointFolder(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        _checkpointFolder = folder;
        return this;
    }

    /// <summary>Uses random search (the default): each method once at its defaults, then random methods and settings.</summary>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetRandomSearchTuner()
    {
        _halving = null;
        return this;
    }

    /// <summary>
    /// Uses successive halving with epochs as the resource: configurations train for <paramref name="minEpochs"/>, the
    /// best 1/<paramref name="eta"/> go on to eta times more epochs, up to <paramref name="maxEpochs"/>. Each rung
    /// retrains from scratch. The search space's Epochs parameter is ignored.
    /// </summary>
    /// <param name="minEpochs">Epochs of the first rung; positive. Default 1.</param>
    /// <param name="maxEpochs">Epochs of the last rung; at least minEpochs. Default 9.</param>
    /// <param name="eta">The halving rate; at least 2. Default 3.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetSuccessiveHalvingTuner(int minEpochs = 1, int maxEpochs = 9, int eta = 3)
    {
        if (minEpochs <= 0 || maxEpochs < minEpochs)
        {
            throw new ArgumentOutOfRangeException(nameof(maxEpochs), $"Successive halving needs 0 < minEpochs <= maxEpochs but has minEpochs {minEpochs} and maxEpochs {maxEpochs}.");
        }

        if (eta < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(eta), eta, $"eta must be at least 2 but is {eta}.");
        }

        _halving = (minEpochs, maxEpochs, eta);
        return this;
    }

    /// <summary>Receives a report when each trial starts, after each of its training steps, and when it ends. Reports arrive on the training thread.</summary>
    /// <param name="progress">The receiver.</param>
    /// <returns>This experiment.</returns>
    public LabelTuningExperiment SetProgress(IProgress<SweepProgress> progress)
    {
        _progress = progress ?? throw new ArgumentNullException(nameof(progress));
        return this;
    }

    /// <summary>
    /// Runs the sweep on a worker thread until the trials, the time or the search run out, or
    /// <paramref name="cancellationToken"/> fires. A trial that throws is recorded with its error and the sweep goes on.
    /// </summary>
    /// <param name="cancellationToken">Stops the sweep; the best trial so far is returned when one completed.</param>
    /// <returns>The best trial with its model, and the leaderboard.</returns>
    /// <exception cref="TimeoutException">The time budget ran out before any trial completed.</exception>
    /// <exception cref="OperationCanceledException">The sweep was cancelled before any trial completed.</exception>
    /// <exception cref="InvalidOperationException">No dataset was set, or every trial failed.</exception>
    public Task<LabelTuningExperimentResult> RunAsync(CancellationToken cancellationToken = default)
        => _backend is not null // a sweep backend (LabelTuningExperiment.Backend.cs) runs it elsewhere, e.g. on an Orleans cluster
            ? _backend.RunAsync(this, cancellationToken)
            : Task.Factory.StartNew(() => Run(cancellationToken), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    internal LabelTuningExperimentResult Run(CancellationToken cancellationToken)
    {
        // Trials are disposed one after another; this keeps their frozen base loaded between them.
        using var baseHold = _baseHold = new SharedBaseModels.DeferredHold();
        _settings.Validate();
        if (_train is null || _validation is null)
        {
            throw new InvalidOperationException("Call SetDataset before RunAsync: the sweep needs training and validation data.");
        }

        var space = _space ?? LabelTuningSearchSpace.Default();
        var seed = Seed();
        var host = ((IHostEnvironment)_ml).Register("LabelTuningExperiment");
        using var channel = host.Start("Sweep");
        var data = Prepare(_train, _validation);
        ISweepTuner tuner = _halving is { } h
            ? new SuccessiveHalvingTuner(space, seed, h.MinEpochs, h.MaxEpochs, h.Eta, _metric)
            : new RandomSearchTuner(space, seed);
        var log = _checkpointFolder is null ? null : new TrialLog(_checkpointFolder);
        var recorded = new Dictionary<int, TrialResult>();
        foreach (var trial in log?.Read(channel.Warning) ?? [])
        {
            recorded[trial.Id] = trial; // a later line for the same trial (after a search-space change) wins
        }

        channel.Info($"sweep: {space.Methods.Count} method(s) ({string.Join(", ", space.Methods.Select(m => m.Method))}), " +
            $"{(_halving is null ? "random search" : $"successive halving {string.Join('/', SuccessiveHalvingTuner.RungEpochs(_halving.Value.MinEpochs, _halving.Value.MaxEpochs, _halving.Value.Eta))} epochs")}, " +
            $"metric {_metric}, seed {seed}, {(_maxTrials is { } m ? $"{m} trials" : "no trial limit")}, {(_timeBudget is { } t ? $"{t.TotalSeconds:F0} s" : "no time limit")}" +
            (recorded.Count > 0 ? $", {recorded.Count} recorded trial(s) in '{log!.Folder}'" : string.Empty));

        var results = new List<TrialResult>();
        var clock = Stopwatch.StartNew();
        using var budget = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (_timeBudget is { } timeBudget)
        {
            budget.CancelAfter(timeBudget);
        }

        TrialResult? best = null;
        ITransformer? bestModel = null;
        var trainedHere = 0;
        var trainingClock = new Stopwatch();
        var stop = SweepStopReason.SearchFinished;
        TimeSpan? Remaining(int nextTrial)
        {
            if (_timeBudget is { } total)
            {
                return total - clock.Elapsed > TimeSpan.Zero ? total - clock.Elapsed : TimeSpan.Zero;
            }

            return _maxTrials is { } max && trainedHere > 0 ? trainingClock.Elapsed / trainedHere * Math.Max(0, max - nextTrial + 1) : null;
        }

        try
        {
            for (var id = 1; ; id++)
            {
                if (_maxTrials is { } max && id > max)
                {
                    stop = SweepStopReason.MaxTrials;
                    break;
                }

                if (budget.IsCancellationRequested)
                {
                    stop = cancellationToken.IsCancellationRequested ? SweepStopReason.Cancelled : SweepStopReason.TimeBudget;
                    break;
                }

                var proposal = tuner.Propose(_maxTrials is { } limit ? limit - id + 1 : int.MaxValue);
                if (proposal is null)
                {
                    break;
                }

                TrialResult result;
                ITransformer? model = null;
                if (recorded.TryGetValue(id, out var previous) && TrialLog.Key(previous.Method, previous.Parameters) == TrialLog.Key(proposal.Method, proposal.Parameters))
                {
                    result = previous;
                    channel.Info($"trial {id}: {result} (recorded, not rerun)");
                }
                else
                {
                    if (previous is not null)
                    {
                        channel.Warning($"trial {id} in the checkpoint folder has other settings ({previous.MethodName} {previous.ParametersText}); the seed or " +
                            "search space changed since, so it runs again.");
                    }

                    _progress?.Report(new SweepProgress(id, _maxTrials, MethodName(proposal.Method, null), null, best, clock.Elapsed, Remaining(id)));
                    trainingClock.Start();
                    (result, model) = RunTrial(proposal, id, seed, data, budget.Token, space, channel,
                        training => _progress?.Report(new SweepProgress(id, _maxTrials, MethodName(proposal.Method, null), null, best, clock.Elapsed, Remaining(id), training)));
                    trainingClock.Stop();
                    trainedHere++;
                    log?.Append(result);
                    channel.Info($"trial {id}{(_maxTrials is { } n ? $"/{n}" : string.Empty)}: {result}");
                }

                results.Add(result);
                tuner.Update(result);
                if (result.Status == TrialStatus.Completed && double.IsFinite(result.Metric)
                    && (best is null || TrialResult.Rank([result, best], _metric).First() == result))
                {
                    if (best is not null && log is not null && model is not null)
                    {
                        TryDelete(log.ModelPath(best.Id), channel);
                    }

                    DisposeModel(bestModel);
                    best = result;
                    bestModel = model;
                    if (model is not null && log is not null)
                    {
                        SaveModel(model, data, log.ModelPath(result.Id), channel);
                    }
                }
                else
                {
                    DisposeModel(model);
                }

                var report = new SweepProgress(id, _maxTrials, result.MethodName, result, best, clock.Elapsed, Remaining(id + 1));
                channel.Info(report.ToString());
                _progress?.Report(report);
            }
        }
        catch (OperationCanceledException) when (budget.IsCancellationRequested)
        {
            stop = cancellationToken.IsCancellationRequested ? SweepStopReason.Cancelled : SweepStopReason.TimeBudget;
            channel.Info(stop == SweepStopReason.Cancelled ? "sweep cancelled; the running trial is not recorded" : "time budget spent; the running trial is not recorded");
        }

        if (best is null)
        {
            DisposeModel(bestModel);
            var failures = results.Where(r => r.Status == TrialStatus.Failed).Select(r => $"#{r.Id} {r.MethodName}: {r.Error}").ToList();
            throw stop switch
            {
                SweepStopReason.Cancelled => new OperationCanceledException("The sweep was cancelled before any trial completed.", cancellationToken),
                SweepStopReason.TimeBudget when failures.Count == 0 => new TimeoutException(
                    $"The training time budget of {_timeBudget!.Value.TotalSeconds:F0} s ran out before any trial completed; raise SetTrainingTimeInSeconds or shrink the data."),
                _ => new InvalidOperationException(
                    $"No trial completed ({results.Count} ran). {(failures.Count > 0 ? "Errors: " + string.Join(" | ", failures) : string.Empty)}"),
            };
        }

        bestModel ??= LoadOrRefit(best, log, data, seed, space, channel, cancellationToken);
        best.Model = bestModel;
        var leaderboard = new SweepLeaderboard(TrialResult.Rank(results, _metric).ToList(), _metric);
        channel.Info($"sweep done ({stop}) in {clock.Elapsed.TotalSeconds:F0} s: {results.Count} trial(s), {trainedHere} trained in this run; best {best}");
        return new LabelTuningExperimentResult(best, leaderboard, stop, clock.Elapsed, trainedHere);
    }

    /// <summary>The readable name of a method and its settings (DePT and EPT are prompt-tuning settings), as its descriptor gives it.</summary>
    internal static string MethodName(TuningMethod method, LabelTuningOptions? options) => TuningMethodRegistry.Get(method).NameWith(options);

    private (TrialResult Result, ITransformer? Model) RunTrial(
        TrialProposal proposal,
        int id,
        int seed,
        PreparedData data,
        CancellationToken token,
        LabelTuningSearchSpace space,
        IChannel channel,
        Action<TrainingProgress> onTraining)
    {
        var methodSpace = space[proposal.Method];
        var options = TuningMethodRegistry.Get(proposal.Method).CreateOptions();
        options.ModelPath = _settings.ModelPath;
        options.LabelColumnName = _settings.LabelColumnName;
        options.TextColumnName = _settings.TextColumnName;
        options.SecondTextColumnName = _settings.SecondTextColumnName;
        options.MaxSequenceLength = _settings.MaxSequenceLength;
        options.BatchSize = _settings.BatchSize;
        options.Dtype = _settings.Dtype;
        options.NumberOfThreads = _settings.NumberOfThreads;
        options.Seed = seed;
        options.CancellationToken = token;
        options.Progress = new InlineProgress<TrainingProgress>(onTraining);
        var parameters = new SortedDictionary<string, object>(proposal.Parameters, StringComparer.Ordinal);
        var methodName = MethodName(proposal.Method, null);
        using var memory = new PeakMemorySampler();
        var clock = new Stopwatch();
        LabelTuningTransformerBase? trained = null;
        try
        {
            foreach (var (name, value) in proposal.Parameters)
            {
                MethodSearchSpace.Apply(options, name, value);
            }

            _settings.ConfigureOptions?.Invoke(options);
            methodSpace.Configure?.Invoke(options);
            parameters["Epochs"] = options.Epochs;
            methodName = MethodName(proposal.Method, options);
            channel.Info($"trial {id}: {methodName} {string.Join(' ', parameters.Select(p => $"{p.Key}={TrialResult.Format(p.Value)}"))}");
            clock.Start();
            trained = Fit(proposal.Method, options, data.Binary, data.Train);
            clock.Stop();
            _baseHold?.Ensure(trained.Runtime);
            var metrics = Evaluate(trained, data);
            ITransformer model = data.KeyMap is null ? trained : new TransformerChain<ITransformer>(data.KeyMap, trained);
            return (new TrialResult
            {
                Id = id,
                ConfigurationId = proposal.ConfigurationId,
                Rung = proposal.Rung,
                Method = proposal.Method,
                MethodName = methodName,
                Parameters = parameters,
                Status = TrialStatus.Completed,
                Metric = metrics[_metric],
                Metrics = metrics,
                TrainingTime = clock.Elapsed,
                TrainableParameters = trained.TrainableParameterCount,
                PeakMemoryBytes = memory.Peak,
                MemoryIncreaseBytes = Math.Max(0, memory.Peak - memory.Baseline),
            }, model);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            trained?.Dispose();
            throw;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            trained?.Dispose();
            clock.Stop();
            channel.Warning($"trial {id} ({methodName}) failed and the sweep goes on: {e.GetType().Name}: {e.Message}");
            return (new TrialResult
            {
                Id = id,
                ConfigurationId = proposal.ConfigurationId,
                Rung = proposal.Rung,
                Method = proposal.Method,
                MethodName = methodName,
                Parameters = parameters,
                Status = TrialStatus.Failed,
                TrainingTime = clock.Elapsed,
                PeakMemoryBytes = memory.Peak,
                MemoryIncreaseBytes = Math.Max(0, memory.Peak - memory.Baseline),
                Error = $"{e.GetType().Name}: {e.Message}",
            }, null);
        }
    }

    /// <summary>Fits one method with the trainer its descriptor makes, which is the one its catalog extension returns, so the sweep trains exactly what users would.</summary>
    private LabelTuningTransformerBase Fit(TuningMethod method, LabelTuningOptions options, bool binary, IDataView train)
    {
        var env = binary ? _ml.BinaryClassification.Trainers.GetEnvironment() : _ml.MulticlassClassification.Trainers.GetEnvironment(); // as the catalog extensions get it
        var trained = TuningMethodRegistry.Get(method).CreateTrainer(env, options, binary).Fit(train);
        if (trained is LabelTuningTransformerBase transformer)
        {
            return transformer;
        }

        (trained as IDisposable)?.Dispose();
        throw new InvalidOperationException($"{method}'s trainer made a {trained.GetType().Name}, not a label-tuning transformer the sweep can score and save.");
    }

    private Dictionary<LabelTuningMetric, double> Evaluate(LabelTuningTransformerBase model, PreparedData data)
    {
        var scored = model.Transform(data.Validation);
        if (data.Binary)
        {
            var m = _ml.BinaryClassification.Evaluate(scored, data.LabelColumn, DefaultColumnNames.Score, DefaultColumnNames.Probability, DefaultColumnNames.PredictedLabel);
            return new()
            {
                [LabelTuningMetric.MacroAccuracy] = (m.PositiveRecall + m.NegativeRecall) / 2,
                [LabelTuningMetric.MicroAccuracy] = m.Accuracy,
                [LabelTuningMetric.LogLoss] = m.LogLoss,
                [LabelTuningMetric.F1] = m.F1Score,
            };
        }

        var metrics = _ml.MulticlassClassification.Evaluate(scored, data.LabelColumn, DefaultColumnNames.Score, DefaultColumnNames.PredictedLabel);
        var precision = metrics.ConfusionMatrix.PerClassPrecision;
        var recall = metrics.ConfusionMatrix.PerClassRecall;
        var f1 = precision.Zip(recall, (p, r) => double.IsFinite(p) && double.IsFinite(r) && p + r > 0 ? 2 * p * r / (p + r) : 0).Average();
        return new()
        {
            [LabelTuningMetric.MacroAccuracy] = metrics.MacroAccuracy,
            [LabelTuningMetric.MicroAccuracy] = metrics.MicroAccuracy,
            [LabelTuningMetric.LogLoss] = metrics.LogLoss,
            [LabelTuningMetric.F1] = f1,
        };
    }

    private PreparedData Prepare(IDataView train, IDataView validation)
    {
        var name = _settings.LabelColumnName;
        var column = train.Schema.GetColumnOrNull(name)
            ?? throw new ArgumentException($"The training data has no label column '{name}'; its columns are {string.Join(", ", train.Schema.Select(c => c.Name))}.", nameof(train));
        if (validation.Schema.GetColumnOrNull(name) is null)
        {
            throw new ArgumentException($"The validation data has no label column '{name}'.", nameof(validation));
        }

        switch (column.Type)
        {
            case KeyDataViewType:
                return new PreparedData(train, validation, false, null, name, train.Schema);
            case BooleanDataViewType:
                return new PreparedData(train, validation, true, null, name, train.Schema);
            case TextDataViewType:
                var keyMap = _ml.Transforms.Conversion.MapValueToKey(name, keyOrdinality: ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(train);
                return new PreparedData(keyMap.Transform(train), keyMap.Transform(validation), false, keyMap, name, train.Schema);
            default:
                throw new ArgumentException(
                    $"Label column '{name}' must be Key<UInt32> or String (multiclass) or Boolean (binary) but is {column.Type}.", nameof(train));
        }
    }

    private ITransformer LoadOrRefit(TrialResult best, TrialLog? log, PreparedData data, int seed, LabelTuningSearchSpace space, IChannel channel, CancellationToken token)
    {
        if (log is not null && File.Exists(log.ModelPath(best.Id)))
        {
            try
            {
                return _ml.Model.LoadLabelTuning(log.ModelPath(best.Id), out _); // unwrapped errors, so the catch below sees them
            }
            catch (Exception e) when (e is InvalidDataException or InvalidOperationException or IOException or FormatException or ArgumentException)
            {
                channel.Warning($"The saved model '{log.ModelPath(best.Id)}' of the best trial could not be loaded ({e.Message}); it is trained again.");
            }
        }

        channel.Info($"the best trial #{best.Id} was recorded by an earlier run without its model; training it again with the same seed");
        var proposal = new TrialProposal(best.ConfigurationId, best.Method, new SortedDictionary<string, object>(best.Parameters.ToDictionary(), StringComparer.Ordinal), best.Rung);
        var (again, model) = RunTrial(proposal, best.Id, seed, data, token, space, channel, _ => { });
        if (model is null)
        {
            throw new InvalidOperationException($"Training the best trial #{best.Id} again failed: {again.Error}");
        }

        if (log is not null)
        {
            SaveModel(model, data, log.ModelPath(best.Id), channel);
        }

        return model;
    }

    private void SaveModel(ITransformer model, PreparedData data, string path, IChannel channel)
    {
        try
        {
            _ml.Model.Save(model, data.InputSchema, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or NotSupportedException)
        {
            channel.Warning($"The best model could not be saved to '{path}': {e.Message}. A resumed sweep will train it again.");
        }
    }

    private int Seed() => _settings.Seed ?? (_ml as IHostEnvironmentInternal)?.Seed ?? 0;

    /// <summary>Frees a trial's tensors: the model, or each part of a chain (the label mapping holds none).</summary>
    private static void DisposeModel(ITransformer? model)
    {
        if (model is IEnumerable<ITransformer> chain)
        {
            foreach (var part in chain.OfType<IDisposable>())
            {
                part.Dispose();
            }
        }
        else
        {
            (model as IDisposable)?.Dispose();
        }
    }

    /// <summary>Deletes the superseded best model; a file that cannot be deleted is only a stale file, so it is reported and the sweep goes on.</summary>
    private static void TryDelete(string path, IChannel channel)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            channel.Warning($"The superseded model '{path}' could not be deleted ({e.Message}); it is left in the checkpoint folder.");
        }
    }

    private sealed record PreparedData(IDataView Train, IDataView Validation, bool Binary, ITransformer? KeyMap, string LabelColumn, DataViewSchema InputSchema);
}

/// <summary>What <see cref="LabelTuningExperiment.RunAsync"/> returns.</summary>
public sealed class LabelTuningExperimentResult
{
    internal LabelTuningExperimentResult(TrialResult bestTrial, SweepLeaderboard leaderboard, SweepStopReason stopReason, TimeSpan elapsed, int trialsTrained)
    {
        BestTrial = bestTrial;
        Leaderboard = leaderboard;
        StopReason = stopReason;
        Elapsed = elapsed;
        TrialsTrained = trialsTrained;
    }

    /// <summary>Gets the best trial; its <see cref="TrialResult.Model"/> is the fitted model (label mapping included for String labels).</summary>
    public TrialResult BestTrial { get; }

    /// <summary>Gets the best trial's fitted model.</summary>
    public ITransformer Model => BestTrial.Model!;

    /// <summary>Gets every trial of the sweep, best first (recorded ones from the checkpoint folder included).</summary>
    public SweepLeaderboard Leaderboard { get; }

    /// <summary>Gets why the sweep stopped.</summary>
    public SweepStopReason StopReason { get; }

    /// <summary>Gets the wall-clock time of this run.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Gets how many trials were trained in this run (the rest were read from the checkpoint folder).</summary>
    public int TrialsTrained { get; }
}

/// <summary>An IProgress that reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
internal sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
