using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Microsoft.ML.LabelTuning.Orleans.Tests;

/// <summary>
/// A throw-away PostgreSQL server on a loopback port: Debian's postgresql package (installed with apt-get when missing
/// and this process may), a fresh cluster in a temporary folder, trust authentication on 127.0.0.1 only. Disposing stops
/// it and deletes the folder.
/// </summary>
internal sealed class PrivatePostgres : IDisposable
{
    private readonly string _bin;
    private readonly string _folder;
    private readonly bool _asPostgresUser;

    private PrivatePostgres(string bin, string folder, bool asPostgresUser, int port)
    {
        _bin = bin;
        _folder = folder;
        _asPostgresUser = asPostgresUser;
        Port = port;
    }

    public int Port { get; }

    /// <summary>Gets the URL of database <c>labeltuning</c>, as the worker's --cluster takes it.</summary>
    public string Url => $"postgres://postgres@127.0.0.1:{Port}/labeltuning";

    /// <summary>Starts a server, or returns null with the reason it cannot here.</summary>
    public static PrivatePostgres? TryStart(out string reason)
    {
        if (!OperatingSystem.IsLinux())
        {
            reason = "the PostgreSQL test runs on Linux only (it uses Debian's postgresql package).";
            return null;
        }

        var bin = FindBin();
        var root = Environment.UserName == "root";
        if (bin is null)
        {
            if (!root || !File.Exists("/usr/bin/apt-get"))
            {
                reason = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb) and this process cannot apt-get install it (it needs root and apt-get).";
                return null;
            }

            var install = Run("/usr/bin/env", ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "postgresql"], TimeSpan.FromMinutes(10));
            if (install.ExitCode != 0)
            {
                Run("/usr/bin/apt-get", ["update", "-qq"], TimeSpan.FromMinutes(5));
                install = Run("/usr/bin/env", ["DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "postgresql"], TimeSpan.FromMinutes(10));
            }

            bin = FindBin();
            if (bin is null)
            {
                reason = $"'apt-get install postgresql' did not provide initdb (exit code {install.ExitCode}): {Last(install.Output)}";
                return null;
            }
        }

        // initdb refuses to run as root: as root, the cluster belongs to the package's postgres user.
        if (root && Run("/usr/bin/id", ["postgres"], TimeSpan.FromSeconds(10)).ExitCode != 0)
        {
            reason = "this process runs as root and there is no 'postgres' user to own the test's PostgreSQL cluster.";
            return null;
        }

        var folder = Directory.CreateTempSubdirectory("lt-pg-").FullName;
        var server = new PrivatePostgres(bin, folder, root, FreePort());
        if (root)
        {
            Run("/bin/chown", ["postgres", folder], TimeSpan.FromSeconds(10));
        }

        var data = Path.Combine(folder, "data");
        var steps = new (string Tool, string[] Arguments)[]
        {
            ("initdb", ["-D", data, "--auth=trust", "-U", "postgres", "--encoding=UTF8"]),
            ("pg_ctl", ["-D", data, "-l", Path.Combine(folder, "server.log"), "-w", "-t", "60", "-o", $"-p {server.Port} -k {folder} -c listen_addresses=127.0.0.1", "start"]),
            ("psql", ["-h", "127.0.0.1", "-p", server.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", "postgres", "-c", "CREATE DATABASE labeltuning"]),
        };
        foreach (var (tool, arguments) in steps)
        {
            var result = server.Tool(tool, arguments);
            if (result.ExitCode != 0)
            {
                server.Dispose();
                reason = $"{tool} failed (exit code {result.ExitCode}): {Last(result.Output)}";
                return null;
            }
        }

        reason = string.Empty;
        return server;
    }

    public void Dispose()
    {
        Tool("pg_ctl", ["-D", Path.Combine(_folder, "data"), "-m", "fast", "-w", "stop"]);
        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private (int ExitCode, string Output) Tool(string tool, string[] arguments)
    {
        var path = Path.Combine(_bin, tool);
        return _asPostgresUser
            ? Run("/usr/sbin/runuser", ["-u", "postgres", "--", path, .. arguments], TimeSpan.FromMinutes(2))
            : Run(path, arguments, TimeSpan.FromMinutes(2));
    }

    private static string? FindBin()
        => Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin"))
                .Where(b => File.Exists(Path.Combine(b, "initdb")) && File.Exists(Path.Combine(b, "pg_ctl")))
                .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var v) ? v : 0)
                .FirstOrDefault()
            : null;

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static (int ExitCode, string Output) Run(string file, string[] arguments, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        try
        {
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                return (-1, $"{file} did not finish in {timeout.TotalSeconds:F0} s");
            }

            return (process.ExitCode, stdout.Result + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, $"{file} could not start: {e.Message}");
        }
    }

    private static string Last(string text) => text.Length > 600 ? text[^600..] : text;
}
