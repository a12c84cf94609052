using static TorchSharp.torch;

namespace Microsoft.ML.LabelTuning.Llama;

/// <summary>
/// Handle bookkeeping for custom autograd functions' backward calls. TorchSharp wraps the incoming gradient in a
/// managed handle registered on the step's dispose scope, and the gradients a backward call returns are handles too;
/// the autograd engine copies each native reference as the call returns, so none of those handles is needed after
/// that. Left to the step's scope they would keep one activation-sized gradient per call alive until the step ends.
/// </summary>
internal static class AutogradHandles
{
    /// <summary>Disposes the gradients a previous backward call handed back (kept in a thread-static field of the caller).</summary>
    public static void Release(ref List<Tensor>? handedBack)
    {
        if (handedBack is { } previous)
        {
            handedBack = null;
            foreach (var gradient in previous)
            {
                gradient.Dispose();
            }
        }
    }

    /// <summary>
    /// Disposes the incoming gradient's handle and remembers <paramref name="gradients"/> (null where an input gets
    /// none) for the next <see cref="Release"/>; returns <paramref name="gradients"/>.
    /// </summary>
    public static List<Tensor> HandBack(List<Tensor> gradients, Tensor gradOutput, ref List<Tensor>? handedBack)
    {
        gradOutput.Dispose();
        handedBack = gradients.Where(g => g is not null).ToList();
        return gradients;
    }
}
