using System.Reflection;
using Npgsql;

namespace LabelTuning.Worker;

/// <summary>Creates, once per database, the tables and queries Orleans' ADO.NET clustering and persistence providers use (PostgresSchema.sql).</summary>
internal static class PostgresSchema
{
    public static async Task<int> InitializeAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        try
        {
            await connection.OpenAsync();
        }
        catch (NpgsqlException e)
        {
            throw new InvalidOperationException($"Cannot connect to PostgreSQL ({Redacted(connectionString)}): {e.Message}", e);
        }

        await using (var exists = new NpgsqlCommand("SELECT to_regclass('orleansquery') IS NOT NULL", connection))
        {
            if ((bool)(await exists.ExecuteScalarAsync())!)
            {
                Console.WriteLine($"LabelTuning.Worker: the database ({Redacted(connectionString)}) already has the Orleans tables; nothing to do.");
                return 0;
            }
        }

        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("LabelTuning.Worker.PostgresSchema.sql")
            ?? throw new InvalidOperationException("The worker was built without its PostgresSchema.sql resource.");
        using var reader = new StreamReader(stream);
        var script = await reader.ReadToEndAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var create = new NpgsqlCommand(script, connection, transaction))
        {
            await create.ExecuteNonQueryAsync();
        }

        await transaction.CommitAsync();
        Console.WriteLine($"LabelTuning.Worker: created the Orleans clustering and persistence tables in {Redacted(connectionString)}.");
        return 0;
    }

    private static string Redacted(string connectionString)
        => string.Join(';', connectionString.Split(';').Where(p => !p.StartsWith("Password=", StringComparison.OrdinalIgnoreCase)));
}
