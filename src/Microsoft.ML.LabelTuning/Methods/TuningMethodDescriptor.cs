using Microsoft.ML.LabelTuning.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>
/// Everything the rest of the library needs to know about one tuning method, in one object: its name, its options
/// type (whose property initialisers are the defaults), how to build its model from saved settings, its trainers, the
/// sweep's search space, its PEFT mapping (or none), and its readable name. Each method's folder builds its own
/// descriptor; <see cref="TuningMethodRegistry"/> holds them, and the sweep, interop and persistence ask only it.
/// </summary>
internal sealed class TuningMethodDescriptor
{
    /// <summary>Gets the method's identity.</summary>
    public required TuningMethod Method { get; init; }

    /// <summary>Gets the options class its trainers take: a <see cref="LabelTuningOptions"/> with a public parameterless constructor.</summary>
    public required Type OptionsType { get; init; }

    /// <summary>Gets the factory that builds the method's model from its saved settings (training and loading alike).</summary>
    public required ITuningMethodFactory Factory { get; init; }

    /// <summary>Gets the multiclass trainer the catalog extension returns, made from options of <see cref="OptionsType"/>.</summary>
    public required Func<IHostEnvironment, LabelTuningOptions, IEstimator<ITransformer>> Multiclass { get; init; }

    /// <summary>Gets the binary trainer, or null when the method has none.</summary>
    public Func<IHostEnvironment, LabelTuningOptions, IEstimator<ITransformer>>? Binary { get; init; }

    /// <summary>Gets the settings the sweep varies, by options property name. Default none.</summary>
    public IReadOnlyList<SearchDimension> SearchSpace { get; init; } = [];

    /// <summary>Gets how the method moves to and from Hugging Face PEFT; null when PEFT has no equivalent adapter type.</summary>
    public IPeftMapping? Peft { get; init; }

    /// <summary>Gets the readable name of the method with the given options (variants such as DePT or LS-unLLaMA); null options give the plain name.</summary>
    public Func<LabelTuningOptions?, string>? DisplayName { get; init; }

    /// <summary>A fresh options object holding the defaults.</summary>
    public LabelTuningOptions CreateOptions() => (LabelTuningOptions)Activator.CreateInstance(OptionsType)!;

    /// <summary>The readable name of the method with <paramref name="options"/>.</summary>
    public string NameWith(LabelTuningOptions? options) => DisplayName?.Invoke(options) ?? Method.Name;

    /// <summary>The trainer for multiclass (Key) or binary (Boolean) labels; a method without a binary trainer says so.</summary>
    public IEstimator<ITransformer> CreateTrainer(IHostEnvironment env, LabelTuningOptions options, bool binary)
    {
        if (!OptionsType.IsInstanceOfType(options))
        {
            throw new ArgumentException($"{Method} trains with {OptionsType.Name} but was given {options.GetType().Name}.", nameof(options));
        }

        if (binary)
        {
            return Binary?.Invoke(env, options)
                ?? throw new NotSupportedException($"{Method} has no binary trainer; map the Boolean label to a key for its multiclass trainer.");
        }

        return Multiclass(env, options);
    }

    /// <summary>Checks the descriptor once, at registration, so a mistake names the method and the setting.</summary>
    internal void Validate()
    {
        if (string.IsNullOrEmpty(Method.Name))
        {
            throw new ArgumentException("A tuning method descriptor needs a named Method.");
        }

        if (!typeof(LabelTuningOptions).IsAssignableFrom(OptionsType) || OptionsType.IsAbstract || OptionsType.GetConstructor(Type.EmptyTypes) is null)
        {
            throw new ArgumentException($"{Method}'s OptionsType {OptionsType.Name} must be a concrete LabelTuningOptions with a public parameterless constructor.");
        }

        foreach (var dimension in SearchSpace)
        {
            if (OptionsType.GetProperty(dimension.Name) is not { CanWrite: true })
            {
                throw new ArgumentException($"{Method}'s search space names '{dimension.Name}', which {OptionsType.Name} has no settable property for.");
            }
        }
    }
}

/// <summary>One setting the sweep varies: a numeric range or a choice, by options property name.</summary>
/// <param name="Name">The options property.</param>
internal abstract record SearchDimension(string Name)
{
    /// <summary>Epochs 1 to 8, default 3: every method's.</summary>
    public static readonly SearchDimension Epochs = new SearchRange(nameof(LabelTuningOptions.Epochs), 1, 8, 3, IsInteger: true);

    /// <summary>The learning rate from a tenth to ten times each method's default, on a log scale: every method's.</summary>
    public static readonly SearchDimension LearningRate = new SearchRange(nameof(LabelTuningOptions.LearningRate), 0.1, 10.0, 1.0, LogBase: true, RelativeToDefault: true);

    /// <summary>Gets the dimensions every method shares.</summary>
    public static IReadOnlyList<SearchDimension> Shared { get; } = [Epochs, LearningRate];
}

/// <summary>
/// A numeric range, drawn uniformly or on a log scale (the shape of Microsoft.ML.SearchSpace's RangeAttribute). With
/// <paramref name="RelativeToDefault"/> the bounds are multiples of the option's default in each options class.
/// </summary>
internal sealed record SearchRange(string Name, double Min, double Max, double Init, bool LogBase = false, bool IsInteger = false, bool RelativeToDefault = false)
    : SearchDimension(Name);

/// <summary>A choice among candidates; the default trial takes the option's default when it is one of them, else the first.</summary>
internal sealed record SearchChoice(string Name, IReadOnlyList<object> Candidates) : SearchDimension(Name);
