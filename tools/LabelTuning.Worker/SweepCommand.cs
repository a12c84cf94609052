using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.ML;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Orleans;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Sweep;
using Orleans.Configuration;
using Orleans.Hosting;

namespace LabelTuning.Worker;

/// <summary>Runs a random-search sweep on the cluster (or, with --local, in this process) and reports its timings.</summary>
internal static class SweepCommand
{
    public static async Task<int> RunAsync(WorkerOptions options)
    {
        TorchRuntime.EnsureInitialized();
        var ml = new MLContext(seed: options.Seed);
        var train = TextRows.Load(options.Train!, options.TrainRows);
        var validation = TextRows.Load(options.Validation!, options.ValidationRows);
        var space = LabelTuningSearchSpace.For(options.Methods.Count > 0 ? [.. options.Methods] : [TuningMethod.LabelSupervised, TuningMethod.PromptTuning]);
        if (space.Methods.Any(m => m.Method == TuningMethod.LabelSupervised))
        {
            space[TuningMethod.LabelSupervised].SetRange("LearningRate", 3e-4, 3e-3, init: 1e-3, logBase: true);
        }

        // The experiment code is the same for both; only RunOnCluster differs.
        var experiment = new LabelTuningExperiment(ml, new LabelTuningExperimentSettings
        {
            ModelPath = options.Model!,
            MaxSequenceLength = options.MaxLength,
            BatchSize = options.BatchSize,
            Seed = options.Seed,
        })
            .SetDataset(ml.Data.LoadFromEnumerable(train), ml.Data.LoadFromEnumerable(validation))
            .SetSearchSpace(space.Fix("Epochs", options.Epochs))
            .SetMaxTrials(options.Trials)
            .SetProgress(new Progress(report => Console.WriteLine($"  {report}")));
        Console.WriteLine($"sweep: {options.Trials} trial(s) of {string.Join(", ", space.Methods.Select(m => m.Method))}, {options.Epochs} epoch(s), " +
            $"{train.Count} training and {validation.Count} validation rows, seed {options.Seed}, {(options.Local ? "in this process" : "on the cluster")}");

        LabelTuningExperimentResult result;
        var clock = Stopwatch.StartNew();
        SweepSnapshot? snapshot = null;
        if (options.Local)
        {
            result = await experiment.RunAsync();
        }
        else
        {
            var builder = Host.CreateApplicationBuilder();
            Logs.Configure(builder);
            builder.UseOrleansClient(client =>
            {
                if (options.Localhost)
                {
                    client.UseLocalhostClustering(30000, options.ClusterId, options.ClusterId);
                }
                else
                {
                    client.Configure<ClusterOptions>(o =>
                    {
                        o.ClusterId = options.ClusterId;
                        o.ServiceId = options.ClusterId;
                    });
                    client.UseAdoNetClustering(o =>
                    {
                        o.Invariant = "Npgsql";
                        o.ConnectionString = WorkerOptions.ConnectionString(options.ClusterUrl!);
                    });
                }
            });
            using var host = builder.Build();
            await host.StartAsync();
            var client = host.Services.GetRequiredService<IClusterClient>();
            // The same command line names the same sweep, so running it again resumes (or returns) it.
            var sweepId = options.SweepId ?? "worker-" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('|',
                Path.GetFullPath(options.Model!), Path.GetFullPath(options.Train!), Path.GetFullPath(options.Validation!), options.TrainRows, options.ValidationRows,
                options.Trials, options.Epochs, string.Join(',', options.Methods), options.MaxLength, options.BatchSize, options.Seed)))).ToLowerInvariant()[..12];
            Console.WriteLine($"sweep id {sweepId}; shared folder {Path.GetFullPath(options.Shared!)}");
            var sweepOptions = new ClusterSweepOptions { SharedFolder = options.Shared!, SweepId = sweepId, PollInterval = TimeSpan.FromMilliseconds(200) };
            result = await experiment.RunOnCluster(client, sweepOptions).RunAsync();
            snapshot = await client.GetGrain<ISweepCoordinatorGrain>(sweepId).GetSnapshotAsync();
            await host.StopAsync();
        }

        clock.Stop();
        Console.WriteLine();
        Console.WriteLine(result.Leaderboard.ToMarkdown());
        var report = SweepReport.Describe(result, snapshot, clock.Elapsed);
        Console.WriteLine(report);
        if (options.Leaderboard is not null)
        {
            File.WriteAllText(options.Leaderboard, result.Leaderboard.ToMarkdown() + "\n" + report, Encoding.UTF8);
        }

        (result.Model as IDisposable)?.Dispose();
        return 0;
    }

    private sealed class Progress(Action<SweepProgress> report) : IProgress<SweepProgress>
    {
        public void Report(SweepProgress value)
        {
            if (value.Finished is not null)
            {
                report(value);
            }
        }
    }
}

/// <summary>Label/Text rows from a TSV file with a header (the repository's data/ format), balanced across labels.</summary>
internal static class TextRows
{
    public sealed class Row
    {
        public string Label { get; set; } = string.Empty;

        public string Text { get; set; } = string.Empty;
    }

    public static List<Row> Load(string path, int count)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"The data file '{path}' was not found.", path);
        }

        var lines = File.ReadAllLines(path, Encoding.UTF8);
        var header = lines.Length > 0 ? lines[0].Split('\t') : [];
        var label = Array.IndexOf(header, "Label");
        var text = Array.IndexOf(header, "Text");
        if (label < 0 || text < 0)
        {
            throw new InvalidDataException($"'{path}' must be a TSV file with a header naming the columns Label and Text, but its header is '{(lines.Length > 0 ? lines[0] : string.Empty)}'.");
        }

        var rows = new List<Row>();
        for (var i = 1; i < lines.Length; i++)
        {
            if (lines[i].Length == 0)
            {
                continue;
            }

            var fields = lines[i].Split('\t');
            if (fields.Length <= Math.Max(label, text))
            {
                throw new InvalidDataException($"Line {i + 1} of '{path}' has {fields.Length} tab-separated field(s); the header names {header.Length}.");
            }

            rows.Add(new Row { Label = fields[label], Text = fields[text] });
        }

        var byLabel = rows.GroupBy(r => r.Label).Select(g => new Queue<Row>(g)).ToList();
        var picked = new List<Row>();
        while (picked.Count < count && byLabel.Any(q => q.Count > 0))
        {
            foreach (var queue in byLabel.Where(q => q.Count > 0))
            {
                if (picked.Count < count)
                {
                    picked.Add(queue.Dequeue());
                }
            }
        }

        return picked;
    }
}

/// <summary>Scheduling overhead per trial, and the time N machines would take for the measured trials.</summary>
internal static class SweepReport
{
    public static string Describe(LabelTuningExperimentResult result, SweepSnapshot? snapshot, TimeSpan wall)
    {
        var text = new StringBuilder();
        var trials = result.Leaderboard.OrderBy(t => t.Id).ToList();
        var training = trials.Sum(t => t.TrainingTime.TotalSeconds);
        text.AppendLine(CultureInfo.InvariantCulture, $"wall time {wall.TotalSeconds:F1} s for {trials.Count} trial(s); fitting time (model load + training) summed over trials {training:F1} s");
        if (snapshot is null)
        {
            return text.ToString();
        }

        var silos = snapshot.Results.Select(r => r.Silo).Distinct().Count();
        var overheads = new List<double>();
        var siloTimes = new List<double>();
        foreach (var record in snapshot.Results.Where(r => r.Silo.Length > 0))
        {
            var timing = snapshot.Timings.FirstOrDefault(t => t.TrialId == record.Id && t.Attempt == record.Attempt);
            if (timing?.RecordedUtc is { } recorded)
            {
                overheads.Add((recorded - timing.AssignedUtc).TotalSeconds - record.SiloSeconds);
                siloTimes.Add(record.SiloSeconds);
            }
        }

        if (overheads.Count == 0)
        {
            return text.ToString();
        }

        var overhead = overheads.Average();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"silos used {silos}; per trial: silo time (hash checks, data, training, evaluation, saving) mean {siloTimes.Average():F2} s, " +
            $"scheduling overhead (assignment to recorded result, minus silo time) mean {overhead:F3} s, max {overheads.Max():F3} s");
        var first = snapshot.StartedUtc;
        var last = snapshot.FinishedUtc ?? DateTime.UtcNow;
        text.AppendLine(CultureInfo.InvariantCulture, $"coordinator: sweep start to finish {(last - first).TotalSeconds:F1} s");
        text.Append("simulated time on N machines (measured silo time + mean overhead per trial, list-scheduled in trial order):");
        foreach (var machines in new[] { 1, 2, 3, 4, 8 })
        {
            text.Append(CultureInfo.InvariantCulture, $" N={machines}: {Simulate(siloTimes.Select(s => s + overhead).ToList(), machines):F1} s;");
        }

        return text.AppendLine().ToString();
    }

    /// <summary>Each trial goes to the machine that frees up first; the makespan.</summary>
    public static double Simulate(IReadOnlyList<double> trialSeconds, int machines)
    {
        var free = new double[machines];
        foreach (var seconds in trialSeconds)
        {
            var next = Array.IndexOf(free, free.Min());
            free[next] += seconds;
        }

        return free.Max();
    }
}
