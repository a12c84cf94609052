namespace LabelTuning.DataPrep.Austen;

/// <summary>
/// The gazetteer behind the SILVER NER labels: character names of the six novels and the places they mention.
/// Matching is case-sensitive and longest-first. Rules on top of the lists:
/// a capitalized word after a title (Mr., Lady, Colonel, ...) is PER even when unlisted; titles themselves are O;
/// adjacent PER names merge ("Emma Woodhouse"); a place followed by Park, Hall, Abbey, Lodge... extends the LOC;
/// a capitalized word before Street, Place, Square, Buildings... is a LOC. Labels are heuristic, not gold.
/// </summary>
internal sealed class AustenGazetteer
{
    private static readonly string[] Titles =
    [
        "Mr.", "Mr", "Mrs.", "Mrs", "Miss", "Misses", "Master", "Lady", "Sir", "Lord", "Dr.", "Dr", "Doctor",
        "Colonel", "Captain", "Admiral", "General", "Lieutenant", "Madame", "Mademoiselle", "Mistress", "Dowager", "Governor",
        "Viscount", "Viscountess", "Honourable", "Hon.", "Duke", "Duchess", "Earl", "Baronet",
    ];

    // Given names and surnames per novel (the union is used everywhere).
    private static readonly string[] People =
    [
        // Sense & Sensibility
        "Elinor", "Marianne", "Margaret", "Dashwood", "Dashwoods", "Henry", "John", "Fanny", "Harry", "Edward", "Ferrars", "Robert",
        "Brandon", "Willoughby", "Jennings", "Palmer", "Palmers", "Charlotte", "Middleton", "Middletons", "Lucy", "Anne", "Nancy",
        "Steele", "Steeles", "Eliza", "Williams", "Grey", "Sophia", "Morton", "Pratt", "Smith", "Harris", "Thomas", "Betty",
        "Biddy", "Sparks", "Donavan", "Gray", "Richardson",
        // Pride & Prejudice
        "Elizabeth", "Jane", "Lydia", "Kitty", "Catherine", "Mary", "Bennet", "Bennets", "Lizzy", "Darcy", "Fitzwilliam", "Georgiana",
        "Bingley", "Bingleys", "Caroline", "Louisa", "Hurst", "Hursts", "Wickham", "Wickhams", "Collins", "Charlotte", "Lucas",
        "Lucases", "Maria", "William", "Gardiner", "Gardiners", "Phillips", "Philips", "Forster", "Denny", "Carter", "Chamberlayne",
        "Pratt", "Reynolds", "Jenkinson", "Annesley", "Younge", "Bourgh", "Harriet", "Pen", "Metcalf", "Watson", "Goulding",
        "Robinson", "King", "George",
        // Mansfield Park
        "Bertram", "Bertrams", "Edmund", "Tom", "Julia", "Norris", "Norrises", "Price", "Prices", "Susan", "Betsey", "Sam",
        "Crawford", "Crawfords", "Grant", "Grants", "Rushworth", "Rushworths", "Yates", "Baddeley", "Chapman", "Rebecca", "Lee",
        "Fraser", "Stornaway", "Maddox", "Owen", "Owens", "Ellis", "Jackson", "Agatha", "Amelia", "Anhalt", "Cassel", "Wildenheim",
        "Campbell", "Aylmer", "Harding", "Nicholls", "Jefferies", "Ravenshaw", "Tattersall", "Dick",
        // Emma
        "Emma", "Woodhouse", "Woodhouses", "Knightley", "Knightleys", "Harriet", "Weston", "Westons", "Frank", "Churchill",
        "Churchills", "Fairfax", "Bates", "Elton", "Eltons", "Augusta", "Hawkins", "Martin", "Martins", "Perry", "Perrys", "Goddard",
        "Cole", "Coles", "Campbell", "Campbells", "Dixon", "Dixons", "Isabella", "Taylor", "Suckling", "Sucklings", "Bragge",
        "Larkins", "Patty", "Nash", "Cox", "Coxes", "Gilbert", "Gilberts", "Hodges", "Hughes", "Otway", "Otways", "Selina",
        "Smallridge", "Wingfield", "Serle", "Stokes", "Hetty", "Bella", "Anna", "Mitchell", "Hannah", "Elizabeth",
        // Northanger Abbey
        "Morland", "Morlands", "Tilney", "Tilneys", "Eleanor", "Thorpe", "Thorpes", "Allen", "Allens", "Frederick", "James",
        "Hughes", "Skinner", "Andrews", "Edward", "Emily", "Sophia", "Richard", "Sarah", "Sally",
        // Persuasion
        "Elliot", "Elliots", "Walter", "Musgrove", "Musgroves", "Charles", "Henrietta", "Wentworth", "Wentworths", "Croft",
        "Crofts", "Russell", "Harville", "Harvilles", "Benwick", "Clay", "Dalrymple", "Carteret", "Hayter", "Hayters", "Shepherd",
        "Wallis", "Wallises", "Rooke", "Atkinson", "Jemima", "Sophy", "Penelope", "Shirley", "Brigden", "Spicer", "Speed",
        "Durand", "Ibbotson", "Baldwin", "Basil", "Morley", "Harry",
    ];

    // Names that are also ordinary words: PER only right after a title.
    private static readonly string[] TitleOnlyPeople = ["Long", "Hill", "Brown", "Jones", "Bird", "Wood", "Green", "Wise", "Ward", "Young", "Rose"];

    private static readonly string[] MultiWordPeople = ["de Bourgh", "Fitzwilliam Darcy"];

    private static readonly string[] Places =
    [
        // estates, villages and towns of the novels
        "Norland", "Barton", "Cleveland", "Delaford", "Allenham", "Combe Magna", "Longstaple", "Whitwell", "Stanhill", "Honiton",
        "Dawlish", "Longbourn", "Netherfield", "Meryton", "Pemberley", "Rosings", "Hunsford", "Lambton", "Lucas Lodge", "Kympton",
        "Matlock", "Chatsworth", "Dovedale", "Blenheim", "Kenilworth", "Gretna Green", "Cheapside", "Clapham", "Barnet", "Hatfield",
        "Epsom", "Ramsgate", "Westerham", "Mansfield", "Sotherton", "Everingham", "Thornton Lacey", "Ecclesford", "Stanwix Lodge",
        "Twickenham", "Lessingby", "Compton", "Spithead", "Portsmouth", "Hartfield", "Highbury", "Randalls", "Donwell", "Donwell Abbey",
        "Enscombe", "Maple Grove", "Box Hill", "Abbey-Mill", "Abbey Mill", "Langham", "Richmond", "Kingston", "Weymouth", "Southend",
        "Cromer", "Balycraig", "Swisserland", "Fullerton", "Northanger", "Northanger Abbey", "Woodston", "Clifton", "Blaize Castle",
        "Beechen Cliff", "Lansdown", "Tetbury", "Devizes", "Salisbury", "Kingsweston", "Putney", "Kellynch", "Uppercross", "Lyme",
        "Up Lyme", "Charmouth", "Pinny", "Winthrop", "Monkford", "Crewkherne", "Taunton", "Minehead", "Cobb", "Belmont", "Thornberry",
        "Shropshire", "Gibraltar",
        // cities, counties, countries
        "Bath", "London", "Bristol", "Oxford", "Cambridge", "Exeter", "Plymouth", "Brighton", "Liverpool", "Birmingham", "Newcastle",
        "Windsor", "Westminster", "Kensington", "Holborn", "Chichester", "Northampton", "Cork", "Dublin", "Edinburgh", "Lisbon",
        "Paris", "Avignon", "Devonshire", "Devon", "Sussex", "Somersetshire", "Dorsetshire", "Derbyshire", "Hertfordshire", "Kent",
        "Surry", "Surrey", "Yorkshire", "Norfolk", "Northamptonshire", "Wiltshire", "Gloucestershire", "Hampshire", "Berkshire",
        "Staffordshire", "Cornwall", "Wales", "England", "Scotland", "Ireland", "Britain", "Great Britain", "France", "Italy",
        "Spain", "Portugal", "Germany", "Holland", "Switzerland", "Europe", "America", "India", "East Indies", "West Indies",
        "Antigua", "Jamaica", "Bengal", "Madras", "Mediterranean",
    ];

    // A listed place followed by one of these grows into a longer place name ("Kellynch Hall", "Mansfield Parsonage").
    private static readonly HashSet<string> PlaceExtensions =
    [
        "Park", "Hall", "Abbey", "Lodge", "Cottage", "Court", "Castle", "Common", "Parsonage", "House", "Place", "Street", "Square",
        "Buildings", "Farm", "Mill", "Lane", "Row", "Grove", "Wood", "Church", "Vicarage", "Crescent", "Road",
    ];

    // A capitalized word followed by one of these is an address ("Harley Street", "Camden Place").
    private static readonly HashSet<string> StreetWords = ["Street", "Place", "Square", "Buildings", "Lane", "Row", "Crescent", "Road"];

    // Capitalized words that start sentences and must never open a name.
    private static readonly HashSet<string> NotNames =
    [
        "The", "A", "An", "This", "That", "These", "Those", "It", "He", "She", "They", "We", "I", "You", "His", "Her", "Their",
        "Our", "My", "Your", "In", "On", "At", "To", "From", "By", "With", "For", "Of", "And", "But", "Or", "As", "If", "When",
        "What", "Which", "Who", "Where", "There", "Here", "Now", "Then", "Oh", "Ah", "Yes", "No", "Not", "Very", "Such", "Every",
        "Some", "Any", "All", "One", "Upper", "Lower", "Great", "Old", "New", "Good", "Poor", "Dear", "God", "Heaven",
    ];

    private readonly Dictionary<string, List<(string[] Tokens, string Type)>> _byFirstToken = new(StringComparer.Ordinal);
    private readonly HashSet<string> _titles = new(Titles, StringComparer.Ordinal);
    private readonly HashSet<string> _titleOnly = new(TitleOnlyPeople, StringComparer.Ordinal);

    private AustenGazetteer()
    {
        foreach (var name in People.Concat(MultiWordPeople))
        {
            Add(name, "PER");
        }

        foreach (var name in Places)
        {
            Add(name, "LOC");
        }

        foreach (var list in _byFirstToken.Values)
        {
            list.Sort((a, b) => b.Tokens.Length.CompareTo(a.Tokens.Length)); // longest first
        }
    }

    public static AustenGazetteer Create() => new();

    /// <summary>Number of distinct gazetteer entries (for the README).</summary>
    public int Count => _byFirstToken.Values.Sum(l => l.Count);

    private void Add(string name, string type)
    {
        var tokens = AustenNer.Tokenize(name).Select(t => t.Text).ToArray();
        if (!_byFirstToken.TryGetValue(tokens[0], out var list))
        {
            list = [];
            _byFirstToken[tokens[0]] = list;
        }

        if (!list.Any(e => e.Tokens.SequenceEqual(tokens)))
        {
            list.Add((tokens, type));
        }
    }

    /// <summary>BIO tags for one tokenized sentence.</summary>
    public string[] Tag(string[] tokens)
    {
        var tags = Enumerable.Repeat("O", tokens.Length).ToArray();
        int i = 0;
        while (i < tokens.Length)
        {
            var (length, type) = Match(tokens, i);
            if (length == 0)
            {
                i++;
                continue;
            }

            // Adjacent names are one person: "Emma Woodhouse", "Catherine de Bourgh".
            bool continues = type == "PER" && i > 0 && tags[i - 1] is "B-PER" or "I-PER";
            for (int k = 0; k < length; k++)
            {
                tags[i + k] = (k == 0 && !continues ? "B-" : "I-") + type;
            }

            i += length;
        }

        return tags;
    }

    private (int Length, string Type) Match(string[] tokens, int i)
    {
        string token = tokens[i];
        bool particle = token is "de" && i + 1 < tokens.Length; // "de Bourgh" is listed; other lowercase words never open a name
        if (token.Length == 0 || (!char.IsUpper(token[0]) && !particle) || _titles.Contains(token) || NotNames.Contains(token))
        {
            return (0, "");
        }

        bool afterTitle = i > 0 && _titles.Contains(tokens[i - 1]);
        int length = 0;
        string type = "";
        if (_byFirstToken.TryGetValue(token, out var entries))
        {
            foreach (var (entry, entryType) in entries)
            {
                if (i + entry.Length <= tokens.Length && entry.AsSpan().SequenceEqual(tokens.AsSpan(i, entry.Length)))
                {
                    (length, type) = (entry.Length, entryType);
                    break;
                }
            }
        }

        bool family = token.Length > 3 && token[^1] == 's'
            && (IsListedPerson(token[..^1]) || (token.EndsWith("es", StringComparison.Ordinal) && IsListedPerson(token[..^2])));
        if (length == 0 && family)
        {
            (length, type) = (1, "PER"); // a family: "the Bateses", "the Frasers"
        }

        if (length == 0 && _titleOnly.Contains(token) && afterTitle)
        {
            (length, type) = (1, "PER");
        }

        // "Harley Street", "Camden Place": an address beats a one-word name ("Edward Street").
        if (length <= 1 && i + 1 < tokens.Length && StreetWords.Contains(tokens[i + 1]) && !afterTitle && token.All(char.IsLetter))
        {
            (length, type) = (2, "LOC");
        }

        // "Edgar's Buildings": a possessive address.
        if (length <= 1 && !afterTitle && i + 2 < tokens.Length && tokens[i + 1] == "'s" && StreetWords.Contains(tokens[i + 2]))
        {
            (length, type) = (3, "LOC");
        }

        if (particle && length == 0)
        {
            return (0, "");
        }

        if (length == 0 && afterTitle && token.All(c => char.IsLetter(c) || c == '-'))
        {
            (length, type) = (1, "PER"); // "Mr. Jones": an unlisted surname after a title
        }

        if (type == "LOC")
        {
            while (i + length < tokens.Length && PlaceExtensions.Contains(tokens[i + length]))
            {
                length++;
            }
        }

        if (length == 0 && token.Contains('-') && StreetWords.Contains(Capitalize(token[(token.LastIndexOf('-') + 1)..])))
        {
            (length, type) = (1, "LOC"); // "Bond-street"
        }

        return (length, type);
    }

    private bool IsListedPerson(string token)
        => token.Length > 0 && _byFirstToken.TryGetValue(token, out var entries) && entries.Any(e => e.Type == "PER" && e.Tokens.Length == 1);

    private static string Capitalize(string word) => word.Length == 0 ? word : char.ToUpperInvariant(word[0]) + word[1..];
}
