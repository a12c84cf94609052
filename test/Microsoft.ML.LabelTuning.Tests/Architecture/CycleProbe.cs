// Two namespaces that reach each other only through method bodies: NamespaceCycleTests checks that the graph sees it.
namespace Microsoft.ML.LabelTuning.Tests.Architecture.Probe
{
    internal static class Forth
    {
        public static readonly int Depth = 1;

        public static int Go() => Back.Return.Value();
    }
}

namespace Microsoft.ML.LabelTuning.Tests.Architecture.Probe.Back
{
    internal static class Return
    {
        public static int Value() => Probe.Forth.Depth;
    }
}
