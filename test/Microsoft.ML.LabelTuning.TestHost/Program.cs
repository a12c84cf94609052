using Microsoft.ML;
using Microsoft.ML.LabelTuning.TestHost;

// Usage: TestHost score <model.zip> <input.tsv> <column>
// Loads a saved model in this fresh process and prints one score per line (round-trip tests compare them).
return HostCommands.Run(args);
