using System.Diagnostics;
using System.IO.Compression;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>
/// Tokenizer throughput: short texts through tokenizer.model (the LLaMA-2 vocabulary), and the 2,000 IMDB reviews of
/// data/imdb/train.tsv through the LLaMA-2 tokenizer.model (this library's SentencePiece BPE, and
/// Microsoft.ML.Tokenizers' LlamaTokenizer on the same file) and the LLaMA-3 tokenizer.json (Microsoft.ML.Tokenizers'
/// byte-level BpeTokenizer behind LlamaTextTokenizer).
/// </summary>
internal static class TokenizerBench
{
    public static object Run()
    {
        var fixtures = Path.Combine(TrainerBench.RepoRoot(), "test", "Microsoft.ML.LabelTuning.Tests", "Fixtures");
        var llama2Folder = Path.Combine(fixtures, "llama2-tokenizer");
        var tokenizer = LlamaTextTokenizer.FromModelFolder(llama2Folder);
        var texts = Enumerable.Range(0, 5000)
            .Select(i => $"Review {i}: the delivery was {(i % 3 == 0 ? "late" : "quick")} and the product works great, five stars!")
            .ToArray();
        foreach (var text in texts.Take(200))
        {
            tokenizer.Encode(text);
        }

        var clock = Stopwatch.StartNew();
        var tokens = texts.Sum(t => tokenizer.Encode(t).Count);
        var seconds = clock.Elapsed.TotalSeconds;

        var reviews = File.ReadLines(Path.Combine(TrainerBench.RepoRoot(), "data", "imdb", "train.tsv")).Skip(1)
            .Where(line => line.Length > 0)
            .Select(line => line[(line.IndexOf('\t', StringComparison.Ordinal) + 1)..])
            .ToArray();
        using var modelStream = File.OpenRead(Path.Combine(llama2Folder, LlamaTextTokenizer.SentencePieceFileName));
        var package = Microsoft.ML.Tokenizers.LlamaTokenizer.Create(modelStream, addBeginOfSentence: true, addEndOfSentence: false);
        var llama3Folder = Directory.CreateTempSubdirectory("lt-bench-llama3-").FullName;
        try
        {
            using (var input = new GZipStream(File.OpenRead(Path.Combine(fixtures, "llama3-tokenizer", "tokenizer.json.gz")), CompressionMode.Decompress))
            using (var output = File.Create(Path.Combine(llama3Folder, LlamaTextTokenizer.HuggingFaceFileName)))
            {
                input.CopyTo(output);
            }

            File.Copy(Path.Combine(fixtures, "llama3-tokenizer", "tokenizer_config.json"), Path.Combine(llama3Folder, "tokenizer_config.json"));
            var loadClock = Stopwatch.StartNew();
            var llama3 = LlamaTextTokenizer.FromModelFolder(llama3Folder);
            var llama3LoadMs = loadClock.ElapsedMilliseconds;
            return new
            {
                bench = "tokenizer_encode",
                texts = texts.Length,
                tokens,
                texts_per_s = Math.Round(texts.Length / seconds),
                tokens_per_s = Math.Round(tokens / seconds),
                imdb_reviews = reviews.Length,
                llama2_ours = Measure(reviews, r => tokenizer.Encode(r).Count),
                llama2_package = Measure(reviews, r => package.EncodeToIds(r).Count),
                llama3_package = Measure(reviews, r => llama3.Encode(r).Count),
                llama3_load_ms = llama3LoadMs,
            };
        }
        finally
        {
            Directory.Delete(llama3Folder, recursive: true);
        }
    }

    /// <summary>Encodes every text once to warm up, then once timed.</summary>
    private static object Measure(string[] texts, Func<string, int> encode)
    {
        foreach (var text in texts.Take(100))
        {
            encode(text);
        }

        var clock = Stopwatch.StartNew();
        var tokens = texts.Sum(encode);
        var seconds = clock.Elapsed.TotalSeconds;
        return new { ms = Math.Round(seconds * 1000), tokens, tokens_per_s = Math.Round(tokens / seconds) };
    }
}
