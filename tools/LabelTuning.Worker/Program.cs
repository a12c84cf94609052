// A silo for distributed label-tuning sweeps (one per machine), and a client that runs a sweep on the cluster.
// Run: dotnet run --project tools/LabelTuning.Worker -- --localhost          (see docs/distributed.md)
using System.Globalization;
using System.Net;
using LabelTuning.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.ML.LabelTuning.Orleans;
using Microsoft.ML.LabelTuning.Runtime;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
WorkerOptions options;
try
{
    options = WorkerOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine($"LabelTuning.Worker: {e.Message}");
    Console.Error.WriteLine(WorkerOptions.Usage);
    return 2;
}

if (options.Help)
{
    Console.WriteLine(WorkerOptions.Usage);
    return 0;
}

if (options.Threads is { } threads)
{
    Environment.SetEnvironmentVariable("LABELTUNING_THREADS", threads.ToString(CultureInfo.InvariantCulture));
}

try
{
    return options.Command switch
    {
        "sweep" => await SweepCommand.RunAsync(options),
        "init-database" => await PostgresSchema.InitializeAsync(WorkerOptions.ConnectionString(options.ClusterUrl!)),
        _ => await RunSiloAsync(options),
    };
}
catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or InvalidDataException or TimeoutException or OrleansException)
{
    Console.Error.WriteLine($"LabelTuning.Worker: {e.GetType().Name}: {e.Message}");
    return 1;
}

static async Task<int> RunSiloAsync(WorkerOptions options)
{
    TorchRuntime.EnsureInitialized();
    var builder = Host.CreateApplicationBuilder();
    Logs.Configure(builder);
    string mode;
    if (options.Localhost)
    {
        var siloPort = 11111 + options.Instance;
        var gatewayPort = 30000 + options.Instance;
        mode = $"localhost development clustering, instance {options.Instance} (silo port {siloPort}, gateway {gatewayPort})";
        builder.UseOrleans(silo => silo
            .UseLocalhostClustering(siloPort, gatewayPort, options.Instance == 0 ? null : new IPEndPoint(IPAddress.Loopback, 11111), options.ClusterId, options.ClusterId)
            .AddMemoryGrainStorage(LabelTuningCluster.StorageName)
            .AddLabelTuning(o => o.GpuDeviceId = options.Gpu));
    }
    else
    {
        var connection = WorkerOptions.ConnectionString(options.ClusterUrl!);
        var advertise = options.Advertise ?? Network.DefaultAddress();
        mode = $"PostgreSQL membership and state, advertised as {advertise}:{options.SiloPort} (gateway {options.GatewayPort})";
        builder.UseOrleans(silo => silo
            .Configure<ClusterOptions>(o =>
            {
                o.ClusterId = options.ClusterId;
                o.ServiceId = options.ClusterId;
            })
            .ConfigureEndpoints(advertise, options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: true)
            .UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = connection;
            })
            .AddAdoNetGrainStorage(LabelTuningCluster.StorageName, o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = connection;
            })
            .AddLabelTuning(o => o.GpuDeviceId = options.Gpu));
    }

    using var host = builder.Build();
    await host.StartAsync();
    var silo = host.Services.GetRequiredService<ILocalSiloDetails>();
    Console.WriteLine($"LabelTuning.Worker: silo {silo.SiloAddress} is up in cluster '{options.ClusterId}' ({mode}); " +
        $"it trains 1 trial at a time on {(options.Gpu is { } gpu ? $"CUDA device {gpu}" : "the CPU")} with {TorchRuntime.Threads} torch thread(s). " +
        "Ctrl+C stops it: its running trial is cancelled and re-runs on another silo.");
    await host.WaitForShutdownAsync();
    return 0;
}

internal static class Logs
{
    /// <summary>One line per event: the sweep's own at Information, Orleans' at Warning.</summary>
    public static void Configure(HostApplicationBuilder builder)
    {
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.ML.LabelTuning", LogLevel.Information);

        // Start-up notes that do not apply here: server GC (trials use torch's threads, not the GC's) and the watchdog's
        // first check, which reports the time since process start on a busy machine.
        builder.Logging.AddFilter("Orleans.Runtime.Silo", LogLevel.Error);
        builder.Logging.AddFilter("Orleans.Runtime.Watchdog", LogLevel.Error);
    }
}

internal static class Network
{
    /// <summary>The first IPv4 address of this host that is not loopback, or loopback.</summary>
    public static IPAddress DefaultAddress()
        => Dns.GetHostAddresses(Dns.GetHostName()).FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && !IPAddress.IsLoopback(a))
            ?? IPAddress.Loopback;
}
