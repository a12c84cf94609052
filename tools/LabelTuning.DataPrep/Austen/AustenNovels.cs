using LabelTuning.DataPrep.R;

namespace LabelTuning.DataPrep.Austen;

/// <summary>One novel: its janeaustenr variable name, its title (the label) and its lines as printed.</summary>
internal sealed record Novel(string Variable, string Title, string[] Lines);

/// <summary>Loads the six novels from janeaustenr's lazy-load data (data/Rdata.rdb/.rdx).</summary>
internal static class AustenNovels
{
    /// <summary>janeaustenr's variables and the titles its austen_books() uses, in that function's order.</summary>
    public static readonly (string Variable, string Title)[] Catalog =
    [
        ("sensesensibility", "Sense & Sensibility"),
        ("prideprejudice", "Pride & Prejudice"),
        ("mansfieldpark", "Mansfield Park"),
        ("emma", "Emma"),
        ("northangerabbey", "Northanger Abbey"),
        ("persuasion", "Persuasion"),
    ];

    public static IReadOnlyList<Novel> Load(RepoPaths paths)
    {
        var db = RLazyLoadDb.Open(paths.RequireCached(Path.Combine("janeaustenr", "Rdata.rdb")));
        var novels = new List<Novel>();
        foreach (var (variable, title) in Catalog)
        {
            var value = db.Read(variable);
            if (value is not RStringVector text)
            {
                throw new InvalidDataException($"janeaustenr variable '{variable}': expected a character vector of lines, found {value}.");
            }

            var lines = text.Values.Select(line => line ?? "").ToArray();
            novels.Add(new Novel(variable, title, lines));
        }

        return novels;
    }
}
