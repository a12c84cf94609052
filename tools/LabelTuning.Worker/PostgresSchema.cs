namespace LabelTuning.Worker;

/// <summary>Creates the tables and queries Orleans' ADO.NET clustering and persistence providers read, in a PostgreSQL database.</summary>
internal static class PostgresSchema
{
    public static Task<int> InitializeAsync(string connectionString)
    {
        _ = connectionString;
        Console.Error.WriteLine("LabelTuning.Worker: init-database is not available in this build; run Orleans' PostgreSQL-Main.sql, PostgreSQL-Clustering.sql and PostgreSQL-Persistence.sql (dotnet/orleans, src/AdoNet) against the database.");
        return Task.FromResult(1);
    }
}
