using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>What a pretraining run was built from, hashed: the corpus, the validation file, the tokenizer, the recipe.</summary>
internal sealed record PretrainingInputs(string CorpusHash, string ValidationHash, string TokenizerSha256, string Recipe);

/// <summary>
/// The data position of a pretraining run, the task-specific section of its checkpoint: the tokens seen, the pass
/// over the corpus and the index of the next window in that pass's permutation, and the hashes of the inputs.
/// </summary>
internal sealed record PretrainingPosition(long Tokens, int Epoch, long WindowInEpoch)
{
    /// <summary>Reads the position from a checkpoint's task section.</summary>
    public static PretrainingPosition Of(TrainingCheckpointState state)
        => new(state.Task?["tokens"]?.GetValue<long>() ?? 0, state.Task?["epoch"]?.GetValue<int>() ?? 0, state.Task?["window_in_epoch"]?.GetValue<long>() ?? 0);

    /// <summary>The task section with this position and the inputs' hashes.</summary>
    public JsonObject ToJson(PretrainingInputs? inputs)
    {
        var json = new JsonObject
        {
            ["tokens"] = Tokens,
            ["epoch"] = Epoch,
            ["window_in_epoch"] = WindowInEpoch,
        };
        if (inputs is not null)
        {
            json["corpus_hash"] = inputs.CorpusHash;
            json["valid_hash"] = inputs.ValidationHash;
            json["tokenizer_sha256"] = inputs.TokenizerSha256;
        }

        return json;
    }
}

/// <summary>
/// Causal-LM pretraining as a task of <see cref="TrainingEngine"/>: packed windows in a seeded per-epoch order that is
/// a pure function of the step, next-token cross-entropy, validation perplexity with the best model kept in
/// <c>best/</c>, a metrics line every few steps, and the portable state rewritten after each checkpoint. A run with no
/// checkpoint starts from the portable state when there is one (AdamW moments reset, learning rate re-warmed).
/// </summary>
internal sealed class CausalLmTrainingTask : ITrainingTask
{
    private readonly CausalLmPretrainerOptions _options;
    private readonly LlamaForCausalLM _model;
    private readonly PackedCorpus _corpus;
    private readonly PackedCorpus? _validation;
    private readonly string _fingerprint;
    private readonly PretrainingInputs _inputs;
    private readonly string? _metricsPath;
    private readonly WindowOrder _order;
    private readonly long _tokensPerStep;
    private readonly long[] _window;
    private readonly List<string> _history = [];
    private PretrainingPosition _started = new(0, 0, 0);
    private long _scoredTokens;

    public CausalLmTrainingTask(
        CausalLmPretrainerOptions options,
        LlamaForCausalLM model,
        IReadOnlyList<(string Name, Parameter Parameter)> parameters,
        PackedCorpus corpus,
        PackedCorpus? validation,
        long totalSteps,
        string fingerprint,
        PretrainingInputs inputs,
        string? metricsPath)
    {
        _options = options;
        _model = model;
        Parameters = parameters;
        _corpus = corpus;
        _validation = validation;
        TotalSteps = totalSteps;
        _fingerprint = fingerprint;
        _inputs = inputs;
        _metricsPath = metricsPath;
        _order = new WindowOrder(corpus.WindowCount, options.Seed);
        _tokensPerStep = (long)options.BatchSize * options.SequenceLength;
        _window = new long[options.BatchSize * (options.SequenceLength + 1)];
    }

    public string Kind => "causal-lm";

    public IReadOnlyList<(string Name, Parameter Parameter)> Parameters { get; }

    public long TotalSteps { get; }

    /// <summary>Gets the mean training loss of the last logged interval (NaN before the first).</summary>
    public double LastLoss { get; private set; } = double.NaN;

    public bool StartFresh(TrainingRun run)
    {
        var o = _options;
        if (o.CheckpointFolder is null || o.PortableStateFolder is null || PortablePretrainingState.Read(o.PortableStateFolder) is not { } portable)
        {
            if (o.CheckpointFolder is not null)
            {
                _history.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{DateTime.UtcNow:yyyy-MM-dd}: started from random initialisation (seed {o.Seed}) on {TorchRuntime.Threads} thread(s)"));
            }

            return false;
        }

        PortablePretrainingState.CheckMatches(o.PortableStateFolder, portable, _inputs.CorpusHash, _inputs.ValidationHash, _inputs.TokenizerSha256, _fingerprint, _inputs.Recipe);
        PortablePretrainingState.LoadWeights(o.PortableStateFolder, portable, Parameters);
        run.Step = portable.Step;
        run.TrainSeconds = portable.TrainSeconds;
        run.MomentsResetAtStep = portable.Step;
        run.ResumeWarmupSteps = o.ResumeWarmupSteps;
        _started = new PretrainingPosition(portable.Tokens, portable.Epoch, portable.WindowInEpoch);
        _history.AddRange(portable.History);
        _history.Add(string.Create(CultureInfo.InvariantCulture,
            $"{DateTime.UtcNow:yyyy-MM-dd}: continued from the portable state at step {portable.Step} ({portable.Tokens:N0} tokens) on {TorchRuntime.Threads} thread(s); AdamW moments reset, learning rate re-warmed over {o.ResumeWarmupSteps} steps"));
        var portableMetrics = Path.Combine(o.PortableStateFolder, PretrainingCheckpoint.MetricsFileName);
        if (_metricsPath is not null && File.Exists(portableMetrics))
        {
            AtomicFile.WriteText(_metricsPath, File.ReadAllText(portableMetrics));
        }

        return true;
    }

    public void Restore(TrainingRun run, JsonObject? state, IReadOnlyDictionary<string, Tensor> tensors)
    {
        foreach (var (key, expected) in new[] { ("corpus_hash", _inputs.CorpusHash), ("valid_hash", _inputs.ValidationHash), ("tokenizer_sha256", _inputs.TokenizerSha256) })
        {
            if (state?[key]?.GetValue<string>() is { } saved && saved != expected)
            {
                throw new InvalidDataException(
                    $"The checkpoint in '{_options.CheckpointFolder}' was trained with {key} {saved} but this run's is {expected}; the run is not resumed.");
            }
        }

        _started = new PretrainingPosition(
            state?["tokens"]?.GetValue<long>() ?? 0, state?["epoch"]?.GetValue<int>() ?? 0, state?["window_in_epoch"]?.GetValue<long>() ?? 0);
        if (_options.PortableStateFolder is not null && PortablePretrainingState.Read(_options.PortableStateFolder) is { } portable)
        {
            _history.AddRange(portable.History);
        }
    }

    public void BeforeFirstStep(TrainingRun run)
    {
        var o = _options;
        if (o.CheckpointFolder is not null)
        {
            AtomicFile.WriteText(Path.Combine(o.CheckpointFolder, Checkpoints.HfModelFolder.ConfigFileName),
                (o.ModelConfig! with { Architectures = ["LlamaForCausalLM"], TorchDtype = "float32" }).ToJson());
        }

        if (_metricsPath is not null)
        {
            PretrainingMetrics.TruncateAfter(_metricsPath, run.Step);
        }

        var expected = _order.Locate(run.Step * o.BatchSize);
        if (expected.Epoch != _started.Epoch || expected.IndexInEpoch != _started.WindowInEpoch)
        {
            throw new InvalidDataException(
                $"The checkpoint in '{o.CheckpointFolder}' is at step {run.Step} with data position (epoch {_started.Epoch}, window {_started.WindowInEpoch}) but the step implies (epoch {expected.Epoch}, window {expected.IndexInEpoch}).");
        }

        _model.train();
    }

    public StepLoss ForwardBackward(long step, double learningRate)
    {
        using var scope = NewDisposeScope();
        random.manual_seed(unchecked((_options.Seed * 1_000_003L) + step)); // every draw depends only on the step: exact resume
        var t = _options.SequenceLength;
        for (var row = 0; row < _options.BatchSize; row++)
        {
            var w = _order.WindowAt((step * _options.BatchSize) + row);
            _corpus.CopyWindow(w, _window.AsSpan(row * (t + 1), t + 1));
        }

        var windows = tensor(_window, [_options.BatchSize, t + 1]);     // [B, T + 1]
        var loss = CausalLmPretrainer.NextTokenLoss(_model, windows);
        loss.backward();
        var value = loss.item<float>();
        if (!float.IsFinite(value))
        {
            throw new InvalidOperationException(
                $"The pretraining loss became {value} at step {step + 1} (learning rate {learningRate:G3}). Lower LearningRate or raise WarmupSteps, and resume from the last checkpoint.");
        }

        return new StepLoss(value, _tokensPerStep);
    }

    public void OnStep(TrainingRun run, StepReport report)
    {
    }

    public bool EvaluationDue(long step) => _validation is not null && (step % _options.EvalEverySteps == 0 || step == TotalSteps);

    public double Evaluate(TrainingRun run) => CausalLmPretrainer.Evaluate(_model, _validation!, _options.BatchSize, _options.EvalMaxTokens, out _scoredTokens);

    public void OnImproved(TrainingRun run, double value)
    {
        if (_options.CheckpointFolder is null)
        {
            return;
        }

        var meter = run.Meter;
        PretrainingCheckpoint.WriteBest(_options.CheckpointFolder, _model, _options.ModelConfig!, new BestModelInfo
        {
            Step = run.Step,
            Tokens = run.Step * _tokensPerStep,
            ValidationPerplexity = value,
            ValidationTokens = _scoredTokens,
            TrainSeconds = meter.TrainSeconds,
            TrainLoss = meter.IntervalLoss / meter.IntervalSteps,
            Threads = TorchRuntime.Threads,
            SavedAt = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        });
    }

    public void AfterStep(TrainingRun run, StepReport report, double? evaluation)
    {
        if (run.Step % _options.LogEverySteps != 0 && evaluation is null && run.Step != TotalSteps)
        {
            return;
        }

        var meter = run.Meter;
        var loss = meter.IntervalSteps > 0 ? meter.IntervalLoss / meter.IntervalSteps : (double?)null;
        var speed = meter.IntervalSteps > 0 ? meter.IntervalSteps * _tokensPerStep / Math.Max(1e-9, meter.IntervalSeconds) : (double?)null;
        if (loss is { } l)
        {
            LastLoss = l;
        }

        var metric = new PretrainingMetric
        {
            Step = run.Step,
            Tokens = run.Step * _tokensPerStep,
            Loss = loss,
            LearningRate = run.LastLearningRate,
            TokensPerSecond = speed,
            ValidationPerplexity = evaluation,
            ElapsedSeconds = Math.Round(meter.TrainSeconds, 3),
        };
        if (_metricsPath is not null)
        {
            PretrainingMetrics.Append(_metricsPath, metric);
        }

        _options.Progress?.Report(new PretrainingProgress(run.Step, TotalSteps, metric.Tokens, loss ?? LastLoss, run.LastLearningRate,
            speed ?? 0, TimeSpan.FromSeconds(meter.TrainSeconds), evaluation));
        meter.ResetInterval();
    }

    public bool IsBoundary(long step) => false;

    public (JsonObject State, IReadOnlyDictionary<string, Tensor> Tensors) Save(TrainingRun run)
        => (Position(run.Step).ToJson(_inputs), new Dictionary<string, Tensor>());

    public void OnCheckpointWritten(TrainingRun run)
    {
        if (_options.PortableStateFolder is null)
        {
            return;
        }

        var position = Position(run.Step);
        PortablePretrainingState.Write(_options.PortableStateFolder, Parameters, new PortableStateInfo
        {
            Step = run.Step,
            Tokens = position.Tokens,
            Epoch = position.Epoch,
            WindowInEpoch = position.WindowInEpoch,
            TrainSeconds = run.Meter.TrainSeconds,
            Fingerprint = _fingerprint,
            CorpusHash = _inputs.CorpusHash,
            ValidationHash = _inputs.ValidationHash,
            TokenizerSha256 = _inputs.TokenizerSha256,
            Recipe = _inputs.Recipe,
            History = _history,
        }, _metricsPath);
    }

    public void Finish(TrainingRun run)
    {
    }

    private PretrainingPosition Position(long step)
    {
        var (epoch, index) = _order.Locate(step * _options.BatchSize);
        return new PretrainingPosition(step * _tokensPerStep, epoch, index);
    }
}
