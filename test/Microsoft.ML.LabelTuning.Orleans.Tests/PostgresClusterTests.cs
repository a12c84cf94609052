using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.ML.LabelTuning.Tests;

namespace Microsoft.ML.LabelTuning.Orleans.Tests;

/// <summary>
/// The worker as a user runs it: two silo processes and a client process on a real PostgreSQL (loopback only); one silo
/// process is killed mid-sweep.
/// </summary>
[TestClass]
public sealed class PostgresClusterTests
{
    [TestMethod]
    [TestCategory("Slow")]
    public async Task TwoSiloProcessesAndAClientProcessSweepOnPostgreSqlAsOneProcessDoesEvenWhenASiloDies()
    {
        using var postgres = PrivatePostgres.TryStart(out var reason);
        if (postgres is null)
        {
            Assert.Inconclusive($"Skipped: no PostgreSQL for the multi-process test: {reason}");
            return;
        }

        var folder = ClusterFixture.TempFolder();
        try
        {
            var train = WriteTsv(Path.Combine(folder, "train.tsv"), ToyData.Rows(48, seed: 1));
            var validation = WriteTsv(Path.Combine(folder, "validation.tsv"), ToyData.Rows(30, seed: 2));
            using (var init = new WorkerProcess("init-database", "--cluster", postgres.Url))
            {
                Assert.IsTrue(await init.WaitForExitAsync(TimeSpan.FromMinutes(2)) && init.ExitCode == 0, $"init-database failed:\n{init.Output}");
            }

            string[] Silo() => ["--cluster", postgres.Url, "--cluster-id", "lt-test", "--advertise", "127.0.0.1", "--silo-port", Port(), "--gateway-port", Port(), "--threads", "1"];
            using var silo0 = new WorkerProcess(Silo());
            using var silo1 = new WorkerProcess(Silo());
            foreach (var silo in new[] { silo0, silo1 })
            {
                Assert.IsTrue(await silo.WaitForAsync("is up in cluster 'lt-test'", TimeSpan.FromMinutes(3)), $"a silo did not start:\n{silo.Output}");
            }

            string[] sweep = ["--model", AssemblySetup.Model, "--train", train, "--validation", validation, "--trials", "6", "--epochs", "4",
                "--train-rows", "48", "--validation-rows", "30", "--max-length", "32", "--methods", "LabelSupervised,PromptTuning", "--threads", "1"];
            using var client = new WorkerProcess(["sweep", "--cluster", postgres.Url, "--cluster-id", "lt-test", "--shared", Path.Combine(folder, "shared"), .. sweep]);

            // When the first trial is done, the second silo process dies (SIGKILL): membership declares it dead, its trial
            // (and the coordinator, if it held it) carry on in the other process, from the database and the shared folder.
            Assert.IsTrue(await client.WaitForAsync("trial 1 of 6", TimeSpan.FromMinutes(5)), $"no trial finished:\n{client.Output}\nsilo 0:\n{silo0.Output}\nsilo 1:\n{silo1.Output}");
            silo1.Dispose();
            Assert.IsTrue(await client.WaitForExitAsync(TimeSpan.FromMinutes(8)), $"the client did not finish:\n{client.Output}\nsilo 0:\n{silo0.Output}\nsilo 1:\n{silo1.Output}");
            Console.WriteLine(client.Output);
            Console.WriteLine(string.Join('\n', silo0.Output.Split('\n').Where(l => l.Contains("SweepCoordinatorGrain", StringComparison.Ordinal))));
            Assert.AreEqual(0, client.ExitCode, $"the client failed:\n{client.Output}\nsilo 0:\n{silo0.Output}\nsilo 1:\n{silo1.Output}");
            StringAssert.Contains(client.Output, "silos used ");

            using var local = new WorkerProcess(["sweep", "--local", .. sweep]);
            Assert.IsTrue(await local.WaitForExitAsync(TimeSpan.FromMinutes(5)) && local.ExitCode == 0, $"the local sweep failed:\n{local.Output}");
            CollectionAssert.AreEqual(Leaderboard(local.Output), Leaderboard(client.Output), $"local:\n{local.Output}\ncluster:\n{client.Output}");
        }
        finally
        {
            ClusterFixture.DeleteFolder(folder);
        }
    }

    /// <summary>The leaderboard rows without the timing and memory columns: rank, trial, method, metric, epochs, trainable, settings.</summary>
    private static string[] Leaderboard(string output)
        => output.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal) && char.IsDigit(l[2]))
            .Select(l => l.Split('|', StringSplitOptions.TrimEntries))
            .Select(c => string.Join(" | ", c[1], c[2], c[3], c[4], c[5], c[7], c[9]))
            .ToArray();

    private static string WriteTsv(string path, IEnumerable<ToyData.Row> rows)
    {
        File.WriteAllLines(path, ["Label\tText", .. rows.Select(r => $"{r.Label}\t{r.Text}")]);
        return path;
    }

    private static string Port()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture);
    }
}
