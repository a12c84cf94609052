using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.LabelTuning.Pretraining;
using Microsoft.ML.LabelTuning.Reporting;

namespace LabelTuning.Pretrain;

/// <summary>Reports on a run and exports its best checkpoint with the model card.</summary>
internal static class Export
{
    public static string Status(string runDir)
    {
        var text = new StringBuilder();
        var metrics = PretrainingMetrics.Read(Path.Combine(runDir, "metrics.jsonl"));
        var last = metrics.LastOrDefault();
        if (last is null)
        {
            return $"No metrics in '{runDir}' yet.";
        }

        var recent = metrics.Where(m => m.TokensPerSecond is not null).TakeLast(20).ToList();
        text.AppendLine(CultureInfo.InvariantCulture,
            $"step {last.Step}, {last.Tokens:N0} tokens, {last.ElapsedSeconds / 3600:F2} h, lr {last.LearningRate:G3}, recent loss {recent.Average(m => m.Loss ?? double.NaN):F4}, {recent.Average(m => m.TokensPerSecond ?? 0):F0} tok/s");
        foreach (var m in metrics.Where(m => m.ValidationPerplexity is not null).TakeLast(5))
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"  val_ppl {m.ValidationPerplexity:F2} at step {m.Step} ({m.Tokens:N0} tokens)");
        }

        return text.ToString().TrimEnd();
    }

    /// <summary>Exports best/ to the model folder, checks the exported weights' perplexity, and writes the card and its chart.</summary>
    public static string Run(string runDir, string outDir, string cardPath, string dtype, string root, string? validFile, IReadOnlyList<string> corpusFiles)
    {
        var clock = Stopwatch.StartNew();
        var export = PretrainedModelExport.ExportBest(runDir, outDir, dtype);
        Console.WriteLine($"exported step {export.Best.Step} ({export.Best.Tokens:N0} tokens, val ppl {export.Best.ValidationPerplexity:F2}) to {outDir} as {export.Dtype}, {export.WeightsBytes / 1e6:F1} MB");

        double? exportedPerplexity = null;
        if (validFile is not null && File.Exists(validFile) && File.Exists(Path.Combine(outDir, "tokenizer.model")))
        {
            exportedPerplexity = PretrainedModelExport.Perplexity(outDir, validFile);
            Console.WriteLine($"validation perplexity of the exported {export.Dtype} weights: {exportedPerplexity:F2}");
        }

        (long Tokens, int Documents)? corpus = corpusFiles.All(File.Exists) && corpusFiles.Count > 0
            ? PretrainedModelExport.CountTokens(corpusFiles, outDir, Path.Combine(runDir, "cache"))
            : null;

        var metrics = PretrainingMetrics.Read(Path.Combine(runDir, "metrics.jsonl"));
        var chartName = Path.GetFileNameWithoutExtension(cardPath) + "-loss.png";
        var chartPath = Path.Combine(Path.GetDirectoryName(cardPath)!, chartName);
        WriteLossChart(metrics, chartPath);
        var statePath = Path.Combine(outDir, "pretraining", "pretraining-state.json");
        var history = File.Exists(statePath)
            ? JsonDocument.Parse(File.ReadAllText(statePath)).RootElement.GetProperty("history").EnumerateArray().Select(e => e.GetString() ?? string.Empty).ToList()
            : [];
        File.WriteAllText(cardPath, Card(export, exportedPerplexity, corpus, metrics, chartName, Relative(root, outDir), history));
        return $"wrote {Relative(root, outDir)}/{{config.json, model.safetensors}}, {Relative(root, cardPath)} and {Relative(root, chartPath)} in {clock.Elapsed.TotalSeconds:F0} s";
    }

    private static void WriteLossChart(IReadOnlyList<PretrainingMetric> metrics, string path)
    {
        // Average the training loss over windows of ~1/200 of the run so the curve reads at a glance.
        var train = metrics.Where(m => m.Loss is not null).ToList();
        var bucket = Math.Max(1, train.Count / 200);
        var chunks = train.Chunk(bucket).ToList();
        var chart = new LineChart
        {
            Title = "labeltuning-default pretraining",
            XLabel = "training tokens",
            YLabel = "loss (nats per token)",
        };
        chart.AddSeries("train loss", chunks.Select(c => (double)c[^1].Tokens).ToArray(), chunks.Select(c => c.Average(m => m.Loss!.Value)).ToArray());
        var valid = metrics.Where(m => m.ValidationPerplexity is not null).ToList();
        if (valid.Count > 0)
        {
            chart.AddSeries("validation loss", valid.Select(m => (double)m.Tokens).ToArray(), valid.Select(m => Math.Log(m.ValidationPerplexity!.Value)).ToArray(), markers: true);
        }

        chart.Save(path);
    }

    private static string Card(
        PretrainedModelExportResult export,
        double? exportedPerplexity,
        (long Tokens, int Documents)? corpus,
        IReadOnlyList<PretrainingMetric> metrics,
        string chartName,
        string modelFolder,
        IReadOnlyList<string> history)
    {
        var c = export.Config;
        var best = export.Best;
        var embedding = (long)c.VocabSize * c.HiddenSize;
        var nonEmbedding = export.Parameters - (c.TieWordEmbeddings ? embedding : 2 * embedding);
        var last = metrics.LastOrDefault();
        var speed = metrics.Where(m => m.TokensPerSecond is not null).TakeLast(50).Select(m => m.TokensPerSecond!.Value).DefaultIfEmpty(0).Average();
        var validPoints = metrics.Where(m => m.ValidationPerplexity is not null).ToList();
        var inv = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine("# Model card: labeltuning-default");
        text.AppendLine();
        text.AppendLine(inv, $"The small LLaMA model shipped in `{modelFolder}/`. The library pretrained it with its own code (`CausalLmPretrainer`) on a CPU, so that the samples and tests run anywhere with nothing to download. It is a **toy-sized base model**. It shows that the whole pipeline works: pretraining, tokenizer, checkpoints, fine-tuning and saving. For real accuracy, point the same code at a real pretrained model (TinyLlama, Llama 3.2 1B, Mistral) with `--model <folder>`.");
        text.AppendLine();
        text.AppendLine("## Architecture");
        text.AppendLine();
        text.AppendLine("| field | value |");
        text.AppendLine("|---|---|");
        text.AppendLine(inv, $"| layers | {c.NumHiddenLayers} |");
        text.AppendLine(inv, $"| hidden size | {c.HiddenSize} |");
        text.AppendLine(inv, $"| attention heads (key/value heads) | {c.NumAttentionHeads} ({c.KeyValueHeadCount}) |");
        text.AppendLine(inv, $"| MLP (SwiGLU) intermediate size | {c.IntermediateSize} |");
        text.AppendLine(inv, $"| vocabulary | {c.VocabSize} (SentencePiece BPE, `tokenizer.model`; see data/README.md) |");
        text.AppendLine(inv, $"| tied input/output embeddings | {(c.TieWordEmbeddings ? "yes" : "no")} |");
        text.AppendLine(inv, $"| RoPE θ, RMSNorm ε | {c.RopeTheta:G}, {c.RmsNormEps:G} |");
        text.AppendLine(inv, $"| parameters | {export.Parameters:N0} ({nonEmbedding:N0} outside the two embedding matrices) |");
        text.AppendLine(inv, $"| weights file | `model.safetensors`, {export.Dtype}, {export.WeightsBytes / 1e6:F1} MB (the loader converts to float32) |");
        text.AppendLine();
        text.AppendLine("## Pretraining");
        text.AppendLine();
        text.AppendLine("| figure | value |");
        text.AppendLine("|---|---|");
        text.AppendLine(inv, $"| checkpoint shipped | step {best.Step:N0}, the lowest validation perplexity so far |");
        text.AppendLine(inv, $"| training tokens seen | {best.Tokens:N0}{(corpus is { } cc ? string.Create(inv, $" ({(double)best.Tokens / cc.Tokens:F2} passes over the corpus)") : string.Empty)} |");
        if (corpus is { } cp)
        {
            text.AppendLine(inv, $"| corpus | {cp.Tokens:N0} tokens in {cp.Documents:N0} documents (`data/.cache/pretrain/corpus.txt`) |");
        }

        text.AppendLine(inv, $"| wall time to this checkpoint | {best.TrainSeconds / 3600:F2} h on {best.Threads} CPU thread(s), float32 |");
        text.AppendLine(inv, $"| throughput | about {speed:N0} tokens/s (the last logged intervals) |");
        text.AppendLine(inv, $"| validation perplexity (float32, at save) | {best.ValidationPerplexity:F2} on {best.ValidationTokens:N0} tokens of `valid.txt` |");
        if (exportedPerplexity is { } ep)
        {
            text.AppendLine(inv, $"| validation perplexity of the shipped {export.Dtype} weights | {ep:F2} |");
        }

        text.AppendLine(inv, $"| training loss near the checkpoint | {best.TrainLoss:F3} nats/token |");
        if (last is not null && last.Step > best.Step)
        {
            text.AppendLine(inv, $"| run position at export | step {last.Step:N0}, {last.Tokens:N0} tokens, {last.ElapsedSeconds / 3600:F2} h (the run continues in the background) |");
        }

        text.AppendLine();
        text.AppendLine(inv, $"![loss curve]({chartName})");
        text.AppendLine();
        text.AppendLine("The training loss is averaged over short windows; the validation loss is ln(perplexity) on the held-out `valid.txt`.");
        if (validPoints.Count > 1)
        {
            text.AppendLine();
            text.AppendLine("| tokens | validation perplexity |");
            text.AppendLine("|---|---|");
            var shown = validPoints.Count <= 12 ? validPoints : validPoints.Where((_, i) => i % (int)Math.Ceiling(validPoints.Count / 12.0) == 0).Append(validPoints[^1]).Distinct().ToList();
            foreach (var m in shown)
            {
                text.AppendLine(inv, $"| {m.Tokens:N0} | {m.ValidationPerplexity:F1} |");
            }
        }

        text.AppendLine();
        text.AppendLine("## Data");
        text.AppendLine();
        text.AppendLine("Real text only, built by `tools/LabelTuning.DataPrep` with seed 0 (see [data/README.md](../../data/README.md)):");
        text.AppendLine("the IMDB official **train** reviews (never the test split), the SpamAssassin message bodies except the spam test");
        text.AppendLine("split, and the Jane Austen novels except the held-out test chunks. So no review, mail or passage the samples evaluate");
        text.AppendLine("on was seen in pretraining. `valid.txt` is a seeded 1% of each source, held out of the corpus.");
        text.AppendLine();
        text.AppendLine("## Recipe");
        text.AppendLine();
        text.AppendLine("Next-token cross-entropy on packed windows: each document is encoded as BOS + tokens + EOS; the documents are");
        text.AppendLine("concatenated and cut into windows of 256 tokens (+1 for the shifted targets). Each pass visits every window once,");
        text.AppendLine("in a seeded order. Every parameter is trained from random initialisation (normal, σ = 0.02) with AdamW");
        text.AppendLine(inv, $"(β = 0.9, 0.95; weight decay 0.1 on matrices; gradient clipping at 1.0). The learning rate warms up linearly over");
        text.AppendLine(inv, $"{DefaultModel.WarmupSteps} steps to {DefaultModel.LearningRate:G}, holds there, and decays linearly to {DefaultModel.MinLearningRateRatio:G} of that over the last {DefaultModel.DecayFraction:P0} of");
        text.AppendLine(inv, $"the steps, ending at {DefaultModel.MaxTokens:N0} tokens (warmup-stable-decay: the budget can be raised before the decay starts). The batch is 16 × 256 = 4,096 tokens.");
        text.AppendLine("Validation runs every 250 steps and the best checkpoint is kept. Checkpoints are written atomically every 8 minutes");
        text.AppendLine("and resume exactly on the same machine: weights, AdamW moments and step, data position, and random state. At every");
        text.AppendLine("checkpoint the run also writes a portable state to `models/labeltuning-default/pretraining/` (float32 weights, step,");
        text.AppendLine("data position, the hashes of corpus, validation file and tokenizer, the recipe and the curve; 29 MB), which is");
        text.AppendLine("committed, so that a fresh clone continues the run. The AdamW moments are not in it: a start from it resets them");
        text.AppendLine("(bias correction restarts) and re-warms the learning rate linearly over 50 steps.");
        if (history.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("## History of the run");
            text.AppendLine();
            foreach (var line in history)
            {
                text.AppendLine(inv, $"- {line}");
            }

            text.AppendLine("- Validation points before step 4,000 come from the model card of 2026-11-24 (perplexity rounded to 0.1); that run's");
            text.AppendLine("  metrics file was lost with its machine.");
        }
        text.AppendLine();
        text.AppendLine("## Reproduce");
        text.AppendLine();
        text.AppendLine("```bash");
        text.AppendLine("./build.sh pretrain   # = bash tools/LabelTuning.Pretrain/reproduce.sh: corpus, pretraining (resumable; hours), export and this card");
        text.AppendLine("```");
        text.AppendLine();
        text.AppendLine("It runs `bash data/fetch.sh`, `tools/LabelTuning.DataPrep build-all`, then `LabelTuning.Pretrain train` (stop it at any");
        text.AppendLine("time; the same command resumes, from `artifacts/pretrain-run` on the same machine or from the committed portable state");
        text.AppendLine("on a fresh clone, and refuses with what differs when the rebuilt corpus or the tokenizer hash is not the run's), then");
        text.AppendLine("`LabelTuning.Pretrain export`. `LABELTUNING_THREADS` sets the CPU threads.");
        text.AppendLine("A resumed run gives exactly the weights of an uninterrupted one on the same thread count and libtorch build;");
        text.AppendLine("other thread counts change the float rounding, not the recipe.");
        text.AppendLine();
        text.AppendLine("## Limits");
        text.AppendLine();
        text.AppendLine("- Minutes to hours of CPU pretraining give a weak language model. `docs/getting-started.md` and the samples compare");
        text.AppendLine("  it honestly with ML.NET's classical text pipeline, which beats it on IMDB. With a real pretrained model the same");
        text.AppendLine("  code does far better.");
        text.AppendLine("- English movie reviews, old e-mail and Austen's novels only. It knows nothing else, and the reviews and mail carry");
        text.AppendLine("  their authors' biases.");
        text.AppendLine("- It is not instruction-tuned and it is not meant for generating text.");
        return text.ToString();
    }

    private static string Relative(string root, string path) => Path.GetRelativePath(root, path).Replace('\\', '/');
}
