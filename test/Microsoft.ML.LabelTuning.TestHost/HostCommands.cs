using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.LabelTuning.TestHost;

/// <summary>Commands the tests run in a separate process, to prove that saved models load in a fresh runtime.</summary>
public static class HostCommands
{
    public static int Run(string[] args)
    {
        switch (args)
        {
            case ["score-features", var modelPath, var featureFile]:
            {
                var mlContext = new MLContext(seed: 0);
                var model = mlContext.Model.Load(modelPath, out _);
                var rows = File.ReadAllLines(featureFile)
                    .Select(line => new FeatureRow { Features = line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray() })
                    .ToList();
                foreach (var score in model.Transform(mlContext.Data.LoadFromEnumerable(rows)).GetColumn<float>("Score"))
                {
                    Console.WriteLine(score.ToString("R", CultureInfo.InvariantCulture));
                }

                return 0;
            }

            case ["score-texts", var modelPath, var textFile]:
            {
                // Only the Text column is given: a saved pipeline that starts with MapValueToKey("Label") needs a
                // Label column too, so one is supplied, empty.
                var mlContext = new MLContext(seed: 0);
                var model = mlContext.Model.Load(modelPath, out _);
                var rows = File.ReadAllLines(textFile).Select(t => new TextRow { Text = t, Label = string.Empty }).ToList();
                foreach (var score in model.Transform(mlContext.Data.LoadFromEnumerable(rows)).GetColumn<float[]>("Score"))
                {
                    Console.WriteLine(string.Join(' ', score.Select(s => s.ToString("R", CultureInfo.InvariantCulture))));
                }

                return 0;
            }

            default:
                if (ReliabilityCommands.TryRun(args) is { } code)
                {
                    return code;
                }

                Console.Error.WriteLine("usage: TestHost score-features <model.zip> <features.txt> | score-texts <model.zip> <texts.txt>\n" +
                    "  | train-checkpointed <ls-llama|ls-llama-best|prompt-tuning> <modelDir> <checkpointDir> <scores.txt> [--slow-ms N] [--pause-at-step N]\n" +
                    "  | save-loop <source.zip> <folder> <firstIteration> [--stall weights|state|model|plain --stall-at N]\n" +
                    "  | memory-probe <modelDir> <batch> <sequenceLength>\n" +
                    "  | write-random-checkpoint <folder> <hidden> <layers> <intermediate> <vocab> [--tied] | load-rss <folder> | shared-base-rss <folder>");
                return 2;
        }
    }

    /// <summary>A row with a fixed-size feature vector.</summary>
    public sealed class FeatureRow
    {
        /// <summary>Gets or sets the features.</summary>
        [VectorType(3)]
        public float[] Features { get; set; } = [];
    }

    /// <summary>A row with a text and an (unused) label.</summary>
    public sealed class TextRow
    {
        /// <summary>Gets or sets the text.</summary>
        public string Text { get; set; } = string.Empty;

        /// <summary>Gets or sets the label.</summary>
        public string Label { get; set; } = string.Empty;
    }
}
