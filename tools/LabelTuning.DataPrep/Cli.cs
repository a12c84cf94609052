using System.Diagnostics;
using LabelTuning.DataPrep.Austen;
using LabelTuning.DataPrep.Imdb;
using LabelTuning.DataPrep.Pretrain;
using LabelTuning.DataPrep.Spam;

namespace LabelTuning.DataPrep;

/// <summary>Command-line entry: `dotnet run --project tools/LabelTuning.DataPrep -- &lt;command&gt; [--root DIR]`.</summary>
internal static class Cli
{
    private const string Usage = """
        Usage: LabelTuning.DataPrep <command> [--root <repo root>]
          build-all        the three below, then data/.cache/pretrain/{corpus,valid,imdb}.txt (run `bash data/fetch.sh` first)
          imdb             data/imdb/{train,test}.tsv and data/.cache/imdb/full-{train,test}.tsv
          spam             data/spam/{train,test}.tsv
          austen           data/austen/{train,test}.tsv and data/austen-ner/{train,test}.tsv (silver NER)
          dump-austen      writes the decoded novels to data/.cache/austen-text/<novel>.txt
          r-dump <file>    prints the structure of an .rds file or an R lazy-load database (.rdb/.rdx)
          selftest         checks the R lazy-load decoder on synthetic bytes and on the real janeaustenr files
          check-tokenizer  compares Microsoft.ML.Tokenizers' LlamaTokenizer with SentencePiece's ids (see data/train_tokenizer.sh)
        """;

    public const int Seed = 0;

    public static int Run(string[] args)
    {
        string? root = null;
        var commands = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == "--root" && i + 1 < args.Length)
            {
                root = args[++i];
            }
            else
            {
                commands.Add(args[i]);
            }
        }

        if (commands.Count == 2 && commands[0] == "r-dump")
        {
            R.RDump.Run(commands[1], Console.Out);
            return 0;
        }

        if (commands.Count != 1)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }

        var paths = RepoPaths.Find(root);
        var clock = Stopwatch.StartNew();
        switch (commands[0])
        {
            case "build-all":
                {
                    var imdb = ImdbBuilder.Build(paths, Seed);
                    var spam = SpamBuilder.Build(paths, Seed);
                    var austen = AustenBuilder.Build(paths, Seed);
                    PretrainCorpus.Write(paths, Seed, imdb, austen, spam);
                    break;
                }

            case "imdb":
                ImdbBuilder.Build(paths, Seed);
                break;
            case "spam":
                SpamBuilder.Build(paths, Seed);
                break;
            case "austen":
                AustenBuilder.Build(paths, Seed);
                break;
            case "check-tokenizer":
                return TokenizerCheck.Run(paths);
            case "selftest":
                return SelfTest.Run(paths);
            case "dump-austen":
                foreach (var novel in AustenNovels.Load(paths))
                {
                    string file = Path.Combine(paths.Cache, "austen-text", novel.Variable + ".txt");
                    TextFile.Write(file, writer =>
                    {
                        foreach (var line in novel.Lines)
                        {
                            writer.WriteLine(line);
                        }
                    });
                    Console.WriteLine($"{novel.Title}: {novel.Lines.Length} lines -> {file}");
                }

                break;
            default:
                Console.Error.WriteLine($"Unknown command '{commands[0]}'.");
                Console.Error.WriteLine(Usage);
                return 2;
        }

        Console.WriteLine($"done in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}
