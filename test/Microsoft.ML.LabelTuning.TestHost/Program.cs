using Microsoft.ML;
using Microsoft.ML.LabelTuning.TestHost;

// Commands the tests run in a fresh process (see HostCommands and ReliabilityCommands for the list): scoring a saved
// model (round-trip tests), and checkpointed training, save loops and memory probes that reliability tests kill.
return HostCommands.Run(args);
