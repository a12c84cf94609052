using System.Globalization;
using Microsoft.ML.LabelTuning.Checkpoints;
using Microsoft.ML.LabelTuning.IO;
using Microsoft.ML.LabelTuning.Llama;
using Microsoft.ML.LabelTuning.Runtime;
using Microsoft.ML.LabelTuning.Tokenizers;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Pretraining;

/// <summary>What <see cref="PretrainedModelExport.ExportBest"/> wrote.</summary>
/// <param name="Best">The best model's step, tokens, perplexity and time, from the run.</param>
/// <param name="Config">The exported architecture.</param>
/// <param name="Parameters">The number of parameters.</param>
/// <param name="WeightsBytes">The size of <c>model.safetensors</c>.</param>
/// <param name="Dtype">The dtype the weights were saved in.</param>
public sealed record PretrainedModelExportResult(BestModelInfo Best, LlamaConfig Config, long Parameters, long WeightsBytes, string Dtype);

/// <summary>Exports the best model of a pretraining run as a Hugging Face folder, and scores model folders on text.</summary>
public static class PretrainedModelExport
{
    /// <summary>
    /// Writes the best model of the run in <paramref name="checkpointFolder"/> to <paramref name="targetFolder"/>:
    /// <c>config.json</c> and <c>model.safetensors</c> (converted to <paramref name="dtype"/>; the loader converts
    /// back to float32), each atomically. Tokenizer files already in the target folder are left alone.
    /// </summary>
    /// <param name="checkpointFolder">The run's checkpoint folder (it holds <c>best/</c>).</param>
    /// <param name="targetFolder">The model folder to write, created if needed.</param>
    /// <param name="dtype"><c>float16</c> (default), <c>bfloat16</c> or <c>float32</c>.</param>
    /// <returns>What was written.</returns>
    /// <exception cref="InvalidOperationException">The run has not written a best model yet.</exception>
    public static PretrainedModelExportResult ExportBest(string checkpointFolder, string targetFolder, string dtype = "float16")
    {
        ArgumentException.ThrowIfNullOrEmpty(checkpointFolder);
        ArgumentException.ThrowIfNullOrEmpty(targetFolder);
        var type = DeviceSelection.ParseDtype(dtype);
        var bestFolder = Path.Combine(checkpointFolder, PretrainingCheckpoint.BestFolderName);

        // The run may replace best/ while we read it: each file is replaced atomically and best.json last, so read
        // the weights, then check that they carry the step best.json names; retry if the run moved on meanwhile.
        for (var attempt = 0; ; attempt++)
        {
            var best = PretrainingCheckpoint.ReadBest(checkpointFolder)
                ?? throw new InvalidOperationException($"The run in '{checkpointFolder}' has no best model yet; it is written at the first validation.");
            var config = LlamaConfig.Load(Path.Combine(bestFolder, HfModelFolder.ConfigFileName));
            using var scope = NewDisposeScope();
            var (tensors, metadata) = SafeTensors.ReadFile(Path.Combine(bestFolder, HfModelFolder.SafeTensorsFileName));
            var step = best.Step.ToString(CultureInfo.InvariantCulture);
            if (!metadata.TryGetValue("step", out var saved) || saved != step)
            {
                if (attempt < 5)
                {
                    Thread.Sleep(2000);
                    continue;
                }

                throw new InvalidDataException($"'{bestFolder}' holds weights of step {saved ?? "?"} but best.json names step {step}.");
            }

            Directory.CreateDirectory(targetFolder);
            var weights = Path.Combine(targetFolder, HfModelFolder.SafeTensorsFileName);
            SafeTensorsWriter.Write(weights, tensors, new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["step"] = step,
                ["val_ppl"] = best.ValidationPerplexity.ToString("R", CultureInfo.InvariantCulture),
            }, type);
            var written = config with { TorchDtype = CheckpointLoader.TorchDtypeName(type), SourcePath = null };
            AtomicFile.WriteText(Path.Combine(targetFolder, HfModelFolder.ConfigFileName), written.ToJson());
            return new PretrainedModelExportResult(best, written, tensors.Values.Sum(t => t.numel()), new FileInfo(weights).Length, CheckpointLoader.TorchDtypeName(type));
        }
    }

    /// <summary>
    /// Perplexity of the causal LM in <paramref name="modelFolder"/> (weights and tokenizer) on a text file in the
    /// pretraining format (documents separated by blank lines), over consecutive packed windows.
    /// </summary>
    /// <param name="modelFolder">A Hugging Face LLaMA folder with a tokenizer.</param>
    /// <param name="textFile">The text to score.</param>
    /// <param name="sequenceLength">Tokens per window. Default 256.</param>
    /// <param name="batchSize">Windows per forward pass. Default 16.</param>
    /// <param name="maxTokens">At most this many scored tokens; 0 = the whole file. Default 0.</param>
    /// <returns>exp(mean next-token cross-entropy).</returns>
    public static double Perplexity(string modelFolder, string textFile, int sequenceLength = 256, int batchSize = 16, long maxTokens = 0)
    {
        TorchRuntime.EnsureInitialized();
        var tokenizer = LlamaTextTokenizer.FromModelFolder(modelFolder);
        var data = PackedCorpus.Build([textFile], tokenizer, sequenceLength, TorchRuntime.Threads, cacheFolder: null);
        if (data.WindowCount < 1)
        {
            throw new InvalidOperationException($"'{textFile}' holds {data.Tokens.Length} tokens, fewer than one window of {sequenceLength + 1}.");
        }

        using var model = CheckpointLoader.LoadCausalLM(modelFolder);
        return CausalLmPretrainer.Evaluate(model, data, batchSize, maxTokens, out _);
    }

    /// <summary>Counts the tokens of files in the pretraining format, BOS and EOS of every document included.</summary>
    /// <param name="files">The text files.</param>
    /// <param name="tokenizerFolder">A folder with the tokenizer.</param>
    /// <param name="cacheFolder">A token cache folder (as a run's <c>cache/</c>), or null.</param>
    /// <returns>The number of tokens and documents.</returns>
    public static (long Tokens, int Documents) CountTokens(IReadOnlyList<string> files, string tokenizerFolder, string? cacheFolder = null)
    {
        var tokenizer = LlamaTextTokenizer.FromModelFolder(tokenizerFolder);
        var corpus = PackedCorpus.Build(files, tokenizer, 1, Environment.ProcessorCount, cacheFolder);
        return (corpus.Tokens.LongLength, corpus.DocumentCount);
    }
}
