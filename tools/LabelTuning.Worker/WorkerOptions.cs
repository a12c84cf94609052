using System.Globalization;
using System.Net;
using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Sweep;

namespace LabelTuning.Worker;

/// <summary>The command line: a silo (the default) or a client that runs a sweep, on localhost or a PostgreSQL cluster.</summary>
internal sealed class WorkerOptions
{
    public const string Usage = """
        LabelTuning.Worker: a silo for distributed label-tuning sweeps, one per machine (docs/distributed.md).

          silo (the default command):
            LabelTuning.Worker [silo] --localhost [--instance N]
            LabelTuning.Worker [silo] --cluster postgres://user:password@host:5432/database [--advertise IP] [--silo-port P] [--gateway-port G]
          a sweep on the cluster, from any machine that can reach it:
            LabelTuning.Worker sweep (--localhost | --cluster postgres://...) --model FOLDER --train FILE.tsv --validation FILE.tsv --shared FOLDER
                [--trials 6] [--epochs 1] [--methods LabelSupervised,PromptTuning] [--train-rows 200] [--validation-rows 100]
                [--max-length 64] [--batch-size 16] [--seed 0] [--sweep-id ID] [--leaderboard FILE.md] [--local]
          set up the PostgreSQL tables (once per database):
            LabelTuning.Worker init-database --cluster postgres://...

          --localhost        development clustering on this machine: instance 0 is the primary (silo port 11111, gateway 30000),
                             instance N uses ports 11111+N and 30000+N; the coordinator's state is kept in memory
          --cluster URL      membership and the coordinator's state in PostgreSQL (ADO.NET providers)
          --cluster-id ID    the cluster and service id; every silo and client of one cluster uses the same. Default labeltuning
          --threads N        torch threads per trial (sets LABELTUNING_THREADS). Default: every core
          --gpu N            (silo) train on CUDA device N (a CUDA build, -p:TorchBackend=cuda). Default: the CPU
          --local            (sweep) run the same sweep in this process instead, to compare
        A silo trains one trial at a time (torch's random generator and thread pool are per process); to train two at once
        on one machine, start two silos with --threads set to half the cores each.
        """;

    public string Command { get; private set; } = "silo";

    public bool Localhost { get; private set; }

    public string? ClusterUrl { get; private set; }

    public string ClusterId { get; private set; } = "labeltuning";

    public int Instance { get; private set; }

    public IPAddress? Advertise { get; private set; }

    public int SiloPort { get; private set; } = 11111;

    public int GatewayPort { get; private set; } = 30000;

    public int? Threads { get; private set; }

    public int? Gpu { get; private set; }

    public string? Model { get; private set; }

    public string? Train { get; private set; }

    public string? Validation { get; private set; }

    public string? Shared { get; private set; }

    public int Trials { get; private set; } = 6;

    public int Epochs { get; private set; } = 1;

    public List<TuningMethod> Methods { get; } = [];

    public int TrainRows { get; private set; } = 200;

    public int ValidationRows { get; private set; } = 100;

    public int MaxLength { get; private set; } = 64;

    public int BatchSize { get; private set; } = 16;

    public int Seed { get; private set; }

    public string? SweepId { get; private set; }

    public string? Leaderboard { get; private set; }

    public bool Local { get; private set; }

    public bool Help { get; private set; }

    public static WorkerOptions Parse(string[] args)
    {
        var o = new WorkerOptions();
        var i = 0;
        if (args.Length > 0 && args[0] is "silo" or "sweep" or "init-database")
        {
            o.Command = args[0];
            i = 1;
        }

        for (; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            int Int(int min) => int.TryParse(Value(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min
                ? v
                : throw new ArgumentException($"{args[i - 1]} must be an integer of at least {min} but is '{args[i]}'.");
            switch (args[i])
            {
                case "--localhost": o.Localhost = true; break;
                case "--cluster": o.ClusterUrl = Value(); break;
                case "--cluster-id": o.ClusterId = Value(); break;
                case "--instance": o.Instance = Int(0); break;
                case "--advertise":
                    o.Advertise = IPAddress.TryParse(Value(), out var ip) ? ip : throw new ArgumentException($"--advertise must be an IP address but is '{args[i]}'.");
                    break;
                case "--silo-port": o.SiloPort = Int(1); break;
                case "--gateway-port": o.GatewayPort = Int(1); break;
                case "--threads": o.Threads = Int(1); break;
                case "--gpu": o.Gpu = Int(0); break;
                case "--model": o.Model = Value(); break;
                case "--train": o.Train = Value(); break;
                case "--validation": o.Validation = Value(); break;
                case "--shared": o.Shared = Value(); break;
                case "--trials": o.Trials = Int(1); break;
                case "--epochs": o.Epochs = Int(1); break;
                case "--methods":
                    foreach (var name in Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        var registered = LabelTuningSearchSpace.Default().Methods.Select(space => space.Method).ToList();
                        o.Methods.Add(registered.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase)) is { Name.Length: > 0 } found
                            ? found
                            : throw new ArgumentException($"--methods: '{name}' is not a tuning method; use {string.Join(", ", registered.Select(m => m.Name))}."));
                    }

                    break;
                case "--train-rows": o.TrainRows = Int(2); break;
                case "--validation-rows": o.ValidationRows = Int(2); break;
                case "--max-length": o.MaxLength = Int(8); break;
                case "--batch-size": o.BatchSize = Int(1); break;
                case "--seed": o.Seed = Int(0); break;
                case "--sweep-id": o.SweepId = Value(); break;
                case "--leaderboard": o.Leaderboard = Value(); break;
                case "--local": o.Local = true; break;
                case "-h" or "--help": o.Help = true; break;
                default: throw new ArgumentException($"Unknown argument '{args[i]}'.");
            }
        }

        if (o.Help)
        {
            return o;
        }

        if (o.Localhost == (o.ClusterUrl is not null) && !(o.Command == "sweep" && o.Local))
        {
            throw new ArgumentException("Give exactly one of --localhost and --cluster postgres://...");
        }

        if (o.Command == "init-database" && o.ClusterUrl is null)
        {
            throw new ArgumentException("init-database needs --cluster postgres://...");
        }

        if (o.Command == "sweep")
        {
            foreach (var (name, value) in new[] { ("--model", o.Model), ("--train", o.Train), ("--validation", o.Validation) })
            {
                if (value is null)
                {
                    throw new ArgumentException($"sweep needs {name}.");
                }
            }

            if (o.Shared is null && !o.Local)
            {
                throw new ArgumentException("sweep needs --shared: a folder every silo reads and writes at the same path.");
            }
        }

        return o;
    }

    /// <summary>An Npgsql connection string from <c>postgres://user:password@host:port/database</c>.</summary>
    public static string ConnectionString(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("postgres" or "postgresql"))
        {
            throw new ArgumentException($"--cluster must be a URL like postgres://user:password@host:5432/database but is '{url}'.");
        }

        var database = uri.AbsolutePath.Trim('/');
        if (database.Length == 0)
        {
            throw new ArgumentException($"--cluster '{url}' names no database (postgres://user:password@host:5432/database).");
        }

        var userInfo = uri.UserInfo.Split(':', 2);
        var parts = new List<string>
        {
            $"Host={uri.Host}",
            $"Port={(uri.Port > 0 ? uri.Port : 5432)}",
            $"Database={Uri.UnescapeDataString(database)}",
        };
        if (userInfo[0].Length > 0)
        {
            parts.Add($"Username={Uri.UnescapeDataString(userInfo[0])}");
        }

        if (userInfo.Length > 1)
        {
            parts.Add($"Password={Uri.UnescapeDataString(userInfo[1])}");
        }

        return string.Join(';', parts);
    }
}
