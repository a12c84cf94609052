using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Microsoft.ML.LabelTuning.Sweep;

namespace Microsoft.ML.LabelTuning.Orleans;

/// <summary>
/// The client side of a cluster sweep: writes the data to shared storage, starts (or resumes) the sweep's coordinator,
/// follows it until it ends, and returns what the local sweep returns.
/// </summary>
internal sealed class ClusterSweepBackend(IClusterClient client, ClusterSweepOptions options) : ISweepBackend
{
    public async Task<LabelTuningExperimentResult> RunAsync(LabelTuningExperiment experiment, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var description = experiment.Describe();
        var (train, validation) = experiment.Dataset();
        var ml = experiment.Context;
        Directory.CreateDirectory(options.SharedFolder);
        var (trainPath, trainSha) = SaveData(ml, train, "train");
        var (validationPath, validationSha) = SaveData(ml, validation, "validation");
        var modelSha = ContentHash.OfModelFolder(description.ModelPath);
        var json = description.ToJson();
        var sweepId = options.SweepId ?? "sweep-" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{json}\n{trainSha}\n{validationSha}\n{modelSha}"))).ToLowerInvariant()[..16];
        var spec = new ClusterSweepSpec
        {
            DescriptionJson = json,
            TrainDataPath = trainPath,
            TrainDataSha256 = trainSha,
            ValidationDataPath = validationPath,
            ValidationDataSha256 = validationSha,
            ModelSha256 = modelSha,
            SweepFolder = Path.GetFullPath(Path.Combine(options.SharedFolder, sweepId)),
            TrialCheckpoints = options.TrialCheckpoints,
            CheckpointEverySteps = options.CheckpointEverySteps,
            PollInterval = options.PollInterval,
            MaxSilosPerTrial = options.MaxSilosPerTrial,
            UnresponsiveAfter = options.UnresponsiveAfter,
        };
        Directory.CreateDirectory(spec.SweepFolder);

        var coordinator = client.GetGrain<ISweepCoordinatorGrain>(sweepId);
        var snapshot = await CallAsync(() => coordinator.StartAsync(spec), sweepId);
        var progress = experiment.ProgressReceiver;
        var reported = new HashSet<int>();
        var cancelSent = false;
        while (true)
        {
            Report(snapshot);
            if (snapshot.Finished)
            {
                break;
            }

            if (cancellationToken.IsCancellationRequested && !cancelSent)
            {
                await CallAsync(coordinator.CancelAsync, sweepId);
                cancelSent = true;
            }

            await Task.Delay(options.PollInterval, CancellationToken.None);
            snapshot = await CallAsync(coordinator.GetSnapshotAsync, sweepId);
        }

        if (snapshot.Error is not null)
        {
            throw new InvalidOperationException($"Sweep '{sweepId}' stopped: {snapshot.Error}");
        }

        var results = snapshot.Results.Select(r => r.ToResult()).ToList();
        var stop = Enum.Parse<SweepStopReason>(snapshot.StopReason ?? nameof(SweepStopReason.SearchFinished));
        var best = results.FirstOrDefault(r => r.Id == snapshot.BestTrialId);
        if (best is null)
        {
            var failures = results.Where(r => r.Status == TrialStatus.Failed).Select(r => $"#{r.Id} {r.MethodName}: {r.Error}").ToList();
            throw stop switch
            {
                SweepStopReason.Cancelled => new OperationCanceledException("The sweep was cancelled before any trial completed.", cancellationToken),
                SweepStopReason.TimeBudget when failures.Count == 0 => new TimeoutException(
                    $"The training time budget of {description.TimeBudgetSeconds:F0} s ran out before any trial completed; raise SetTrainingTimeInSeconds or shrink the data."),
                _ => new InvalidOperationException(
                    $"No trial completed ({results.Count} ran). {(failures.Count > 0 ? "Errors: " + string.Join(" | ", failures) : string.Empty)}"),
            };
        }

        if (snapshot.BestModelPath is null || !File.Exists(snapshot.BestModelPath))
        {
            throw new FileNotFoundException(
                $"Sweep '{sweepId}' finished with trial #{best.Id} best, but its model '{snapshot.BestModelPath}' is not on shared storage; " +
                $"check that '{options.SharedFolder}' is the same folder on every machine.", snapshot.BestModelPath);
        }

        best.Model = ml.Model.Load(snapshot.BestModelPath, out _);
        var leaderboard = new SweepLeaderboard(TrialResult.Rank(results, description.Metric).ToList(), description.Metric);
        return new LabelTuningExperimentResult(best, leaderboard, stop, clock.Elapsed, results.Count);

        void Report(SweepSnapshot s)
        {
            if (progress is null)
            {
                return;
            }

            var all = s.Results.Select(r => r.ToResult()).ToList();
            foreach (var finished in all.Where(r => !reported.Contains(r.Id)).OrderBy(r => r.Id))
            {
                reported.Add(finished.Id);
                var bestSoFar = TrialResult.Rank(all.Where(r => r.Id <= finished.Id && r.Status == TrialStatus.Completed), description.Metric).FirstOrDefault();
                progress.Report(new SweepProgress(finished.Id, description.MaxTrials, finished.MethodName, finished, bestSoFar, clock.Elapsed, null));
            }
        }
    }

    /// <summary>
    /// Writes a data view once to shared storage as an ML.NET binary file named by the hash of its rows (the binary
    /// format's bytes are not the same from one save to the next, the rows are), and returns the file and the SHA-256 of
    /// its bytes, which every silo checks. The same rows again reuse the file, so the sweep keeps its id and its spec.
    /// </summary>
    private (string Path, string Sha256) SaveData(MLContext ml, IDataView data, string name)
    {
        string rows;
        using (var hashing = new HashingStream())
        {
            ml.Data.SaveAsText(data, hashing, separatorChar: '\t', headerRow: true, schema: true);
            rows = hashing.Hash();
        }

        var path = Path.GetFullPath(Path.Combine(options.SharedFolder, $"{name}-{rows[..16]}.idv"));
        if (!File.Exists(path))
        {
            var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
            try
            {
                using (var stream = File.Create(temporary))
                {
                    ml.Data.SaveAsBinary(data, stream, keepHidden: false);
                }

                File.Move(temporary, path, overwrite: false);
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another client wrote the same rows first.
            }
            finally
            {
                File.Delete(temporary);
            }
        }

        return (path, ContentHash.OfFile(path));
    }

    /// <summary>A write-only stream that hashes what is written.</summary>
    private sealed class HashingStream : Stream
    {
        private readonly IncrementalHash _sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public string Hash() => Convert.ToHexString(_sha.GetHashAndReset()).ToLowerInvariant();

        public override void Write(byte[] buffer, int offset, int count) => _sha.AppendData(buffer, offset, count);

        public override void Write(ReadOnlySpan<byte> buffer) => _sha.AppendData(buffer);

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _sha.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>Calls the coordinator, retrying while it reactivates on another silo (its silo died).</summary>
    private async Task<T> CallAsync<T>(Func<Task<T>> call, string sweepId)
    {
        var since = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception e) when (e is TimeoutException or OrleansException && since.Elapsed < options.CoordinatorTimeout)
            {
                await Task.Delay(options.PollInterval, CancellationToken.None);
            }
            catch (Exception e) when (e is TimeoutException or OrleansException)
            {
                throw new TimeoutException($"The coordinator of sweep '{sweepId}' did not answer for {options.CoordinatorTimeout.TotalSeconds:F0} s: {e.Message}", e);
            }
        }
    }

    private async Task CallAsync(Func<Task> call, string sweepId)
        => await CallAsync(async () =>
        {
            await call();
            return true;
        }, sweepId);
}
