using System.Diagnostics;
using Microsoft.ML.LabelTuning.Tokenizers;

namespace Microsoft.ML.LabelTuning.Benchmarks;

/// <summary>Tokenizer throughput on short texts, through tokenizer.model (the LLaMA-2 vocabulary).</summary>
internal static class TokenizerBench
{
    public static object Run()
    {
        var folder = Path.Combine(TrainerBench.RepoRoot(), "test", "Microsoft.ML.LabelTuning.Tests", "Fixtures", "llama2-tokenizer");
        var tokenizer = LlamaTextTokenizer.FromModelFolder(folder);
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
        return new { bench = "tokenizer_encode", texts = texts.Length, tokens, texts_per_s = Math.Round(texts.Length / seconds), tokens_per_s = Math.Round(tokens / seconds) };
    }
}
