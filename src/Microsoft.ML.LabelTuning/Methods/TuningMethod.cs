using System.Text.Json;
using Microsoft.ML.LabelTuning.Llama;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>The tuning methods the library offers.</summary>
public enum TuningMethod
{
    /// <summary>LS-LLaMA / LS-unLLaMA: LoRA on the frozen decoder plus a label head on the pooled state.</summary>
    LabelSupervised,

    /// <summary>Soft prompt tuning, DePT and EPT: trainable virtual-token embeddings before the text.</summary>
    PromptTuning,

    /// <summary>Prefix tuning / P-tuning v2: trainable key and value prefixes in every layer.</summary>
    PrefixTuning,

    /// <summary>L-Tuning prefix: label-specific prefixes computed from the label texts.</summary>
    LTuningPrefix,

    /// <summary>L-Tuning prompt: label-specific prompts computed from the label texts.</summary>
    LTuningPrompt,
}

/// <summary>Builds a method's classifier around a loaded base decoder, from the method's saved settings.</summary>
internal interface ITuningMethodFactory
{
    /// <summary>Gets the method this factory builds.</summary>
    TuningMethod Method { get; }

    /// <summary>
    /// Completes the method's settings once the tokenizer and the classes are known (L-Tuning stores its label
    /// texts' token ids here, so a saved model rebuilds without re-tokenizing). Most methods need nothing.
    /// </summary>
    JsonElement Prepare(JsonElement settings, Checkpoints.LlamaTextTokenizer tokenizer, IReadOnlyList<string> classNames) => settings;

    /// <summary>Adapts <paramref name="model"/> in place and wraps it with the method's adapter and a head.</summary>
    IClassifierModel Build(LlamaModel model, int classCount, JsonElement settings, bool tokenLevel);
}

/// <summary>
/// The one place that maps <see cref="TuningMethod"/> values to their factories. Registration is explicit and a
/// duplicate is an error; saved models and the sweep resolve methods only through here.
/// </summary>
internal static class TuningMethodRegistry
{
    private static readonly Dictionary<TuningMethod, ITuningMethodFactory> _factories = new();
    private static readonly object _gate = new();

    static TuningMethodRegistry()
    {
        Register(new LabelSupervised.LabelSupervisedFactory());
        Register(new PromptTuning.PromptTuningFactory());
        Register(new PrefixTuning.PrefixTuningFactory());
        Register(new LTuning.LTuningFactory(LTuning.LTuningVariant.Prefix));
        Register(new LTuning.LTuningFactory(LTuning.LTuningVariant.Prompt));
    }

    public static void Register(ITuningMethodFactory factory)
    {
        lock (_gate)
        {
            if (!_factories.TryAdd(factory.Method, factory))
            {
                throw new InvalidOperationException($"Tuning method {factory.Method} is already registered.");
            }
        }
    }

    public static ITuningMethodFactory Get(TuningMethod method)
    {
        lock (_gate)
        {
            return _factories.TryGetValue(method, out var factory)
                ? factory
                : throw new InvalidOperationException($"Tuning method {method} is not available in this version of the library.");
        }
    }

    public static IReadOnlyCollection<TuningMethod> Registered
    {
        get
        {
            lock (_gate)
            {
                return _factories.Keys.ToArray();
            }
        }
    }
}
