using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;

namespace Microsoft.ML.LabelTuning.TestHost;

/// <summary>Commands the tests run in a separate process.</summary>
public static class HostCommands
{
    public static int Run(string[] args)
    {
        if (args is not ["score-features", var modelPath, var featureFile])
        {
            Console.Error.WriteLine("usage: TestHost score-features <model.zip> <features.txt>");
            return 2;
        }

        var mlContext = new MLContext(seed: 0);
        var model = mlContext.Model.Load(modelPath, out _);
        var rows = File.ReadAllLines(featureFile)
            .Select(line => new FeatureRow { Features = line.Split(' ').Select(v => float.Parse(v, CultureInfo.InvariantCulture)).ToArray() })
            .ToList();
        var scored = model.Transform(mlContext.Data.LoadFromEnumerable(rows));
        foreach (var score in scored.GetColumn<float>("Score"))
        {
            Console.WriteLine(score.ToString("R", CultureInfo.InvariantCulture));
        }

        return 0;
    }

    /// <summary>A row with a fixed-size feature vector.</summary>
    public sealed class FeatureRow
    {
        /// <summary>Gets or sets the features.</summary>
        [VectorType(3)]
        public float[] Features { get; set; } = [];
    }
}
