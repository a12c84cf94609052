using Microsoft.ML.LabelTuning.Methods;
using Microsoft.ML.LabelTuning.Methods.LabelSupervised;
using Microsoft.ML.LabelTuning.Methods.LTuning;
using Microsoft.ML.LabelTuning.Methods.PrefixTuning;
using Microsoft.ML.LabelTuning.Methods.PromptTuning;

[assembly: BuiltInTuningMethods(typeof(Microsoft.ML.LabelTuning.BuiltInTuningMethods))]

namespace Microsoft.ML.LabelTuning;

/// <summary>
/// The registration: the library's tuning methods, one line each, in the order the sweep's default space tries them.
/// Everything else about a method is in its folder under <c>Methods/</c>. This class sits at the top of the namespace
/// tree (nothing refers to it by name); <see cref="TuningMethodRegistry"/> finds it through the assembly attribute above.
/// </summary>
internal sealed class BuiltInTuningMethods : ITuningMethodSource
{
    public IEnumerable<TuningMethodDescriptor> Methods =>
    [
        LabelSupervisedMethod.Descriptor,
        PromptTuningMethod.Descriptor,
        PrefixTuningMethod.Descriptor,
        LTuningMethod.Prefix,
        LTuningMethod.Prompt,
    ];
}
