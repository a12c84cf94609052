using System.Globalization;
using System.Text;
using Microsoft.ML.Data;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;
using Microsoft.ML.LabelTuning.Training;
using TorchSharp;

namespace Microsoft.ML.LabelTuning.TestHost;

/// <summary>
/// Commands the reliability tests kill with SIGKILL: checkpointed training that must resume exactly, and a loop of
/// atomic saves that must never leave a broken file. Each writes what it has done to stdout, one line at a time, so
/// that the test knows what was committed before the kill.
/// </summary>
public static class ReliabilityCommands
{
    /// <summary>Optimizer steps between checkpoints in <c>train-checkpointed</c>.</summary>
    public const int CheckpointEverySteps = 5;

    /// <summary>Training rows in <c>train-checkpointed</c>; with batches of 4, 12 optimizer steps per epoch.</summary>
    public const int TrainRows = 48;

    /// <summary>Batch size in <c>train-checkpointed</c>.</summary>
    public const int BatchSize = 4;

    /// <summary>Epochs in <c>train-checkpointed</c>.</summary>
    public const int Epochs = 3;

    /// <summary>Runs a reliability command; returns null when <paramref name="args"/> names none of them.</summary>
    public static int? TryRun(string[] args)
    {
        switch (args)
        {
            case ["train-checkpointed", var method, var modelDir, var checkpointDir, var scoresPath, .. var rest]:
                return TrainCheckpointed(method, modelDir, checkpointDir, scoresPath, IntOption(rest, "--slow-ms"), IntOption(rest, "--pause-at-step"));
            case ["save-loop", var sourceZip, var folder, var first, .. var rest]:
                return SaveLoop(sourceZip, folder, int.Parse(first, CultureInfo.InvariantCulture), StringOption(rest, "--stall"), IntOption(rest, "--stall-at"));
            case ["memory-probe", var modelDir, var batch, var sequence]:
                return MemoryProbe(modelDir, int.Parse(batch, CultureInfo.InvariantCulture), int.Parse(sequence, CultureInfo.InvariantCulture));
            case ["write-random-checkpoint", var folder, var hidden, var layers, var intermediate, var vocab, .. var rest]:
                return WriteRandomCheckpoint(folder, int.Parse(hidden, CultureInfo.InvariantCulture), int.Parse(layers, CultureInfo.InvariantCulture),
                    int.Parse(intermediate, CultureInfo.InvariantCulture), int.Parse(vocab, CultureInfo.InvariantCulture), rest.Contains("--tied"));
            case ["shared-base-rss", var folder]:
                return SharedBaseRss(folder);
            case ["default-fit", var folder, var batch, var tokens]:
                return DefaultFit(folder, int.Parse(batch, CultureInfo.InvariantCulture), int.Parse(tokens, CultureInfo.InvariantCulture));
            case ["load-rss", var folder]:
                return LoadRss(folder);
            default:
                return null;
        }
    }

    /// <summary>Writes a random-weight LLaMA folder (config and bf16 safetensors) of the given shape, 16 heads of 4 kv heads.</summary>
    private static int WriteRandomCheckpoint(string folder, int hidden, int layers, int intermediate, int vocab, bool tied)
    {
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumHiddenLayers = layers,
            NumAttentionHeads = 16,
            NumKeyValueHeads = 4,
            VocabSize = vocab,
            MaxPositionEmbeddings = 2048,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            BosTokenId = 1,
            EosTokenId = [2],
            TieWordEmbeddings = tied,
        };
        torch.random.manual_seed(1);
        using var model = new LlamaForCausalLM(config);
        CheckpointLoader.SaveHfFolder(model, config, folder, torch.ScalarType.BFloat16);
        Console.WriteLine($"wrote {folder}");
        return 0;
    }

    /// <summary>
    /// Loads a folder's decoder as classifiers do (float32, CPU) and prints the float32 parameter bytes, the resident
    /// memory before the load and the peak resident memory during it, in bytes.
    /// </summary>
    private static int LoadRss(string folder)
    {
        Runtime.TorchRuntime.EnsureInitialized();
        GC.Collect();
        File.WriteAllText("/proc/self/clear_refs", "5");
        var before = StatusKb("VmRSS") * 1024;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var model = Transformers.ClassifierFactory.LoadDecoder(folder, torch.CPU, torch.ScalarType.Float32);
        var seconds = clock.Elapsed.TotalSeconds;
        var peak = StatusKb("VmHWM") * 1024;
        var parameterBytes = model.parameters().Sum(p => p.numel() * 4);
        var lmHead = model.named_parameters().Any(p => p.name.Contains("lm_head", StringComparison.Ordinal));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"fp32_param_bytes {parameterBytes} rss_before {before} peak_rss {peak} peak_over_params {(double)peak / parameterBytes:F3} peak_minus_before_over_params {(double)(peak - before) / parameterBytes:F3} load_s {seconds:F2} lm_head {lmHead}"));
        return 0;
    }

    /// <summary>
    /// Rents two decoders over one shared base and prints the float32 parameter bytes and the resident memory each
    /// rent added, in bytes: <c>base_bytes B first_rss F second_rss S</c>.
    /// </summary>
    private static int SharedBaseRss(string folder)
    {
        Runtime.TorchRuntime.EnsureInitialized();
        torch.zeros(1).Dispose();
        GC.Collect();
        var before = StatusKb("VmRSS") * 1024;
        using var first = Transformers.SharedBaseModels.Rent(folder, torch.CPU, torch.ScalarType.Float32);
        var afterFirst = StatusKb("VmRSS") * 1024;
        using var second = Transformers.SharedBaseModels.Rent(folder, torch.CPU, torch.ScalarType.Float32);
        var afterSecond = StatusKb("VmRSS") * 1024;
        var baseBytes = first.parameters().Sum(p => p.numel() * 4);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"base_bytes {baseBytes} first_rss {afterFirst - before} second_rss {afterSecond - afterFirst}"));
        return 0;
    }

    /// <summary>
    /// Trains <paramref name="method"/> (<c>ls-llama</c>, <c>prompt-tuning</c>, or <c>ls-llama-best</c>: LS-LLaMA whose
    /// validation set has its labels rotated, so the first epoch is the best and early stopping must restore it) on the
    /// toy task with checkpoints in <paramref name="checkpointDir"/>, then writes the scores of fixed texts.
    /// Prints <c>step N</c> after every optimizer step, <c>validation epoch E loss L</c> after each validation, and
    /// <c>done first-step F</c> at the end.
    /// </summary>
    private static int TrainCheckpointed(string method, string modelDir, string checkpointDir, string scoresPath, int? slowMs, int? pauseAtStep)
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(ToyRows(TrainRows, seed: 1));
        var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(train);
        var keyed = mapLabel.Transform(train);
        long firstStep = -1;
        var progress = new SyncProgress(p =>
        {
            if (p.IsValidation)
            {
                Console.WriteLine($"validation epoch {p.Epoch} loss {p.ValidationLoss!.Value.ToString("R", CultureInfo.InvariantCulture)}");
                return;
            }

            if (!p.IsStep)
            {
                return; // the warm-up estimate or a warning, before the first step
            }

            if (firstStep < 0)
            {
                firstStep = p.Step;
            }

            Console.WriteLine($"step {p.Step}");
            if (p.Step == pauseAtStep)
            {
                Console.WriteLine($"paused {p.Step}");
                Thread.Sleep(Timeout.Infinite); // the test kills the process here
            }

            if (slowMs is > 0)
            {
                Thread.Sleep(slowMs.Value);
            }
        });

        T Common<T>(T o)
            where T : LabelTuningOptions
        {
            o.ModelPath = modelDir;
            o.Epochs = Epochs;
            o.BatchSize = BatchSize;
            o.LearningRate = 1e-2;
            o.WarmupRatio = 0.1;
            o.MaxSequenceLength = 32;
            o.Seed = 5;
            o.CheckpointFolder = checkpointDir;
            o.CheckpointEverySteps = CheckpointEverySteps;
            o.Progress = progress;
            return o;
        }

        ITransformer model = method switch
        {
            "ls-llama" => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(
                Common(new LabelSupervisedLlamaOptions { LoraRank = 4, LoraAlpha = 8, LoraDropout = 0.1 })).Fit(keyed),
            "ls-llama-best" => ml.MulticlassClassification.Trainers.LabelSupervisedLlama(
                Common(new LabelSupervisedLlamaOptions
                {
                    LoraRank = 4,
                    LoraAlpha = 8,
                    LoraDropout = 0.1,
                    ValidationSet = mapLabel.Transform(ml.Data.LoadFromEnumerable(RotateLabels(ToyRows(24, seed: 3)))),
                    EarlyStoppingPatience = Epochs,
                })).Fit(keyed),
            "prompt-tuning" => ml.MulticlassClassification.Trainers.PromptTuning(
                Common(new PromptTuningOptions { VirtualTokenCount = 4 })).Fit(keyed),
            _ => throw new ArgumentException($"Unknown method '{method}'; expected ls-llama, ls-llama-best or prompt-tuning.", nameof(method)),
        };

        var test = mapLabel.Transform(ml.Data.LoadFromEnumerable(ToyRows(12, seed: 2)));
        var lines = model.Transform(test).GetColumn<float[]>("Score")
            .Select(row => string.Join(' ', row.Select(s => s.ToString("R", CultureInfo.InvariantCulture))));
        AtomicFile.WriteText(scoresPath, string.Join('\n', lines) + "\n");
        Console.WriteLine($"done first-step {firstStep}");
        return 0;
    }

    /// <summary>
    /// Loads <paramref name="sourceZip"/> and then, until killed, saves it again and again. Iteration i writes, in this
    /// order, <c>weights.safetensors</c> (a 1 Mi-float tensor filled with i, and i in its metadata) through
    /// <see cref="SafeTensorsWriter"/>, <c>state.json</c> (i and a 200 KB payload) through <see cref="AtomicFile"/>,
    /// <c>model.zip</c> through <see cref="ModelSaveCatalog.SaveAtomically"/> (i is the name of an extra input-schema
    /// column), and <c>plain.zip</c> the way ML.NET's <c>Model.Save(model, schema, path)</c> does (File.Create, then
    /// save to the stream): the control, which is not atomic. Prints <c>committed i</c> after each iteration.
    /// With <paramref name="stall"/> (weights, state, model or plain), iteration <paramref name="stallAt"/> stops in
    /// the middle of that file's save (after half its bytes), prints <c>stalled</c>, and waits to be killed.
    /// </summary>
    private static int SaveLoop(string sourceZip, string folder, int first, string? stall, int? stallAt)
    {
        var ml = new MLContext(seed: 0);
        var model = ml.Model.Load(sourceZip, out var schema);
        Console.WriteLine("ready");
        for (var i = first; ; i++)
        {
            Stream Wrap(string target, Stream stream, long totalBytes)
                => stall == target && stallAt == i ? new StallingStream(stream, totalBytes / 2) : stream;

            using (var scope = torch.NewDisposeScope())
            {
                var tensors = new Dictionary<string, torch.Tensor> { ["w"] = torch.full(1 << 20, (float)i) };
                var metadata = new Dictionary<string, string> { ["iteration"] = i.ToString(CultureInfo.InvariantCulture) };
                AtomicFile.Write(Path.Combine(folder, "weights.safetensors"),
                    stream => SafeTensorsWriter.Write(Wrap("weights", stream, 4L << 20), tensors, metadata));
            }

            var state = Encoding.UTF8.GetBytes($"{{\"iteration\": {i}, \"payload\": \"{new string('x', 200_000)}\"}}");
            AtomicFile.Write(Path.Combine(folder, "state.json"), stream => Wrap("state", stream, state.Length).Write(state));

            var versioned = WithVersionColumn(schema!, i);
            long zipBytes = 0;
            if (stallAt == i && stall is "model" or "plain")
            {
                using var measure = new MemoryStream();
                ml.Model.Save(model, versioned, measure);
                zipBytes = measure.Length;
            }

            if (stall == "model" && stallAt == i)
            {
                // What SaveAtomically does, with the stream stalled half-way.
                AtomicFile.Write(Path.Combine(folder, "model.zip"), stream => ml.Model.Save(model, versioned, Wrap("model", stream, zipBytes)));
            }
            else
            {
                ml.Model.SaveAtomically(model, versioned, Path.Combine(folder, "model.zip"));
            }

            using (var plain = File.Create(Path.Combine(folder, "plain.zip")))
            {
                ml.Model.Save(model, versioned, Wrap("plain", plain, zipBytes));
            }

            Console.WriteLine($"committed {i}");
        }
    }

    /// <summary>Passes everything through to the inner stream, but stops the process for good once a number of bytes is written.</summary>
    private sealed class StallingStream(Stream inner, long stallAfter) : Stream
    {
        private long _written;

        public override bool CanRead => false;

        public override bool CanSeek => inner.CanSeek;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position
        {
            get => inner.Position;
            set => inner.Position = value;
        }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

        public override void SetLength(long value) => inner.SetLength(value);

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            var before = (int)Math.Clamp(stallAfter - _written, 0, buffer.Length);
            inner.Write(buffer[..before]);
            _written += before;
            if (before < buffer.Length)
            {
                inner.Flush(); // the half-written bytes reach the file, as they would in a long save
                Console.WriteLine("stalled");
                Thread.Sleep(Timeout.Infinite); // the test kills the process here, half-way through the save
            }
        }
    }

    /// <summary>
    /// One epoch of LS-LLaMA over <paramref name="batch"/> rows of at least <paramref name="tokens"/> tokens with the
    /// trainer's default memory settings (MemoryCheck Warn, GradientCheckpointing Auto), batch size = rows, so one
    /// optimizer step. Prints every progress report before the first step (<c>report Kind message</c>, what a console
    /// sees), then <c>steps N checkpointing B available_bytes A rss_at_start_bytes R peak_rss_bytes P</c>. A run that does not fit ends
    /// with the trainer's error on stderr and exit code 3; an out-of-memory kill shows as the process dying.
    /// </summary>
    private static int DefaultFit(string folder, int batch, int tokens)
    {
        var ml = new MLContext(seed: 1);
        var words = "the film was long and the story kept going past what anyone in the room expected of it".Split(' ');
        var rows = Enumerable.Range(0, batch)
            .Select(i => new HostCommands.TextRow
            {
                Text = string.Join(' ', Enumerable.Range(0, tokens * 2).Select(k => words[(i + k) % words.Length])),
                Label = (i % 2).ToString(CultureInfo.InvariantCulture),
            })
            .ToList();
        var train = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train).Transform(train);
        var available = MemoryBudget.AvailableBytes(torch.CPU) ?? -1;
        var rssAtStart = StatusKb("VmRSS") * 1024;
        var options = new LabelSupervisedLlamaOptions
        {
            ModelPath = folder,
            Epochs = 1,
            BatchSize = batch,
            MaxSequenceLength = tokens,
            NumberOfThreads = 2,
            Seed = 5,
            Progress = new ConsoleReports(),
        };
        try
        {
            using var model = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options).Fit(keyed);
            var checkpointing = ((Methods.LlamaSequenceClassifier)model.Runtime.Classifier).Model.GradientCheckpointing;
            Console.WriteLine($"steps {model.Runtime.LastTraining!.Steps} checkpointing {checkpointing} available_bytes {available} rss_at_start_bytes {rssAtStart} peak_rss_bytes {StatusKb("VmHWM") * 1024}");
            return 0;
        }
        catch (InvalidOperationException error)
        {
            Console.Error.WriteLine(error.Message);
            return 3;
        }
    }

    /// <summary>Writes the reports a console would show before the first step, and each step's loss.</summary>
    private sealed class ConsoleReports : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => Console.WriteLine(value.Kind == TrainingProgressKind.Step
            ? $"report Step loss {value.Loss.ToString("F4", CultureInfo.InvariantCulture)}"
            : $"report {value.Kind} {value.Message}");
    }

    /// <summary>
    /// Trains LS-LLaMA for one step of <paramref name="batch"/> examples of exactly <paramref name="sequence"/> tokens
    /// (long texts cut to MaxSequenceLength) and prints <c>estimate E measured M</c>: the memory estimate's bytes beyond
    /// the loaded model, and the growth of the process's peak resident memory during the fit (Linux: the peak is reset
    /// through /proc/self/clear_refs first). A fresh process, so that no earlier allocation is reused.
    /// </summary>
    private static int MemoryProbe(string modelDir, int batch, int sequence)
    {
        var ml = new MLContext(seed: 1);
        var words = "good bad game the film team great awful match story".Split(' ');
        var rows = Enumerable.Range(0, batch)
            .Select(i => new HostCommands.TextRow { Text = string.Join(' ', Enumerable.Range(0, sequence * 2).Select(k => words[(i + k) % words.Length])), Label = (i % 2).ToString(CultureInfo.InvariantCulture) })
            .ToList();
        var train = ml.Data.LoadFromEnumerable(rows);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(train).Transform(train);
        var options = new LabelSupervisedLlamaOptions
        {
            ModelPath = modelDir,
            Epochs = 1,
            BatchSize = batch,
            MaxSequenceLength = sequence,
            LoraRank = 4,
            LoraAlpha = 8,
            Seed = 5,
            MemoryCheck = MemoryCheck.Off,
        };
        var trainer = ml.MulticlassClassification.Trainers.LabelSupervisedLlama(options);
        var config = LlamaConfig.Load(Path.Combine(modelDir, "config.json"));
        var estimate = MemoryEstimate.For(config, parameterCount: 0, trainableCount: 0, elementBytes: 4, batch, sequence);

        GC.Collect();
        File.WriteAllText("/proc/self/clear_refs", "5");
        var before = StatusKb("VmRSS");
        trainer.Fit(keyed);
        var peak = StatusKb("VmHWM");
        Console.WriteLine($"estimate {estimate.TrainingBytes} measured {(peak - before) * 1024}");
        return 0;
    }

    private static long StatusKb(string key)
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key + ":", StringComparison.Ordinal));
        // "VmHWM:\t  123456 kB": a tab, then spaces that run out from 10 GB on ("VmHWM:\t10466172 kB").
        return long.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
    }

    /// <summary>The schema plus a Boolean column named <c>Version_i</c>: the iteration travels inside the zip.</summary>
    public static DataViewSchema WithVersionColumn(DataViewSchema schema, int version)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(schema.Where(c => !c.Name.StartsWith("Version_", StringComparison.Ordinal)));
        builder.AddColumn($"Version_{version}", BooleanDataViewType.Instance);
        return builder.ToSchema();
    }

    /// <summary>Reads the version that <see cref="WithVersionColumn"/> put in a schema; -1 when there is none.</summary>
    public static int VersionOf(DataViewSchema schema)
        => schema.Select(c => c.Name).Where(n => n.StartsWith("Version_", StringComparison.Ordinal))
            .Select(n => int.Parse(n["Version_".Length..], CultureInfo.InvariantCulture)).DefaultIfEmpty(-1).Single();

    /// <summary>The toy task: three classes, each with its own words among shared filler.</summary>
    public static List<HostCommands.TextRow> ToyRows(int count, int seed)
    {
        string[] filler = "the a this that movie film it was is really very and".Split(' ');
        string[][] classWords =
        [
            "good great excellent wonderful superb brilliant".Split(' '),
            "bad awful terrible boring dreadful poor".Split(' '),
            "sport game team player match goal".Split(' '),
        ];
        string[] names = ["positive", "negative", "sport"];
        var random = new Random(seed);
        var rows = new List<HostCommands.TextRow>();
        for (var i = 0; i < count; i++)
        {
            var label = i % 3;
            var words = Enumerable.Range(0, random.Next(1, 5)).Select(_ => filler[random.Next(filler.Length)]).ToList();
            for (var k = random.Next(1, 3); k > 0; k--)
            {
                words.Insert(random.Next(words.Count + 1), classWords[label][random.Next(classWords[label].Length)]);
            }

            rows.Add(new HostCommands.TextRow { Text = string.Join(' ', words), Label = names[label] });
        }

        return rows;
    }

    private static List<HostCommands.TextRow> RotateLabels(List<HostCommands.TextRow> rows)
    {
        string[] names = ["positive", "negative", "sport"];
        return rows.Select(r => new HostCommands.TextRow { Text = r.Text, Label = names[(Array.IndexOf(names, r.Label) + 1) % 3] }).ToList();
    }

    private static string? StringOption(string[] rest, string name)
    {
        var index = Array.IndexOf(rest, name);
        return index >= 0 && index + 1 < rest.Length ? rest[index + 1] : null;
    }

    private static int? IntOption(string[] rest, string name)
    {
        var index = Array.IndexOf(rest, name);
        return index >= 0 && index + 1 < rest.Length ? int.Parse(rest[index + 1], CultureInfo.InvariantCulture) : null;
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
