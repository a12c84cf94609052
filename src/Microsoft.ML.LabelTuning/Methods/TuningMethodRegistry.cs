using System.Reflection;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>
/// The one place that knows which tuning methods exist: saved models, the sweep, PEFT interop and the catalog resolve
/// methods only through here. Registration is explicit and a duplicate is an error. The library's own methods are
/// listed in one file (<c>Methods/BuiltInTuningMethods.cs</c>), which this class finds through an assembly attribute
/// rather than by name, so the registry depends on no method and no method's folder is reached from below.
/// </summary>
internal static class TuningMethodRegistry
{
    private static readonly List<TuningMethodDescriptor> _methods = [];
    private static readonly object _gate = new();

    static TuningMethodRegistry()
    {
        var source = typeof(TuningMethodRegistry).Assembly.GetCustomAttribute<BuiltInTuningMethodsAttribute>()?.Source;
        if (source is not null)
        {
            foreach (var descriptor in ((ITuningMethodSource)Activator.CreateInstance(source)!).Methods)
            {
                Register(descriptor);
            }
        }
    }

    /// <summary>Adds a method; its name must be new.</summary>
    /// <param name="descriptor">The method's descriptor.</param>
    public static void Register(TuningMethodDescriptor descriptor)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        descriptor.Validate();
        lock (_gate)
        {
            if (_methods.Any(m => m.Method == descriptor.Method))
            {
                throw new InvalidOperationException($"Tuning method {descriptor.Method} is already registered.");
            }

            if (descriptor.Peft is { } peft && _methods.FirstOrDefault(m => m.Peft?.PeftType == peft.PeftType) is { } owner)
            {
                throw new InvalidOperationException($"PEFT type {peft.PeftType} is already mapped by {owner.Method}; {descriptor.Method} cannot map it too.");
            }

            _methods.Add(descriptor);
        }
    }

    /// <summary>Removes a method registered by <see cref="Register"/> (tests register their own and remove them after).</summary>
    /// <param name="method">The method.</param>
    /// <returns>True when it was registered.</returns>
    public static bool Unregister(TuningMethod method)
    {
        lock (_gate)
        {
            return _methods.RemoveAll(m => m.Method == method) > 0;
        }
    }

    /// <summary>The descriptor of <paramref name="method"/>; an unknown method is an error that lists the known ones.</summary>
    /// <param name="method">The method.</param>
    public static TuningMethodDescriptor Get(TuningMethod method)
    {
        lock (_gate)
        {
            return _methods.FirstOrDefault(m => m.Method == method)
                ?? throw new InvalidOperationException(
                    $"Tuning method {method} is not available in this version of the library (it has {string.Join(", ", _methods.Select(m => m.Method))}).");
        }
    }

    /// <summary>The method that maps PEFT's <paramref name="peftType"/> (for example LORA), or null.</summary>
    /// <param name="peftType">PEFT's <c>peft_type</c>.</param>
    public static TuningMethodDescriptor? ForPeftType(string peftType)
    {
        lock (_gate)
        {
            return _methods.FirstOrDefault(m => m.Peft?.PeftType == peftType);
        }
    }

    /// <summary>Gets the registered methods, in registration order (the order the sweep's default space visits them).</summary>
    public static IReadOnlyList<TuningMethod> Registered
    {
        get
        {
            lock (_gate)
            {
                return _methods.Select(m => m.Method).ToArray();
            }
        }
    }

    /// <summary>Gets the PEFT types some registered method maps, in registration order.</summary>
    public static IReadOnlyList<string> PeftTypes
    {
        get
        {
            lock (_gate)
            {
                return _methods.Where(m => m.Peft is not null).Select(m => m.Peft!.PeftType).ToArray();
            }
        }
    }
}

/// <summary>Lists tuning methods for the registry to register, in order.</summary>
internal interface ITuningMethodSource
{
    /// <summary>Gets the methods.</summary>
    IEnumerable<TuningMethodDescriptor> Methods { get; }
}

/// <summary>Names the assembly's list of built-in methods, which <see cref="TuningMethodRegistry"/> registers first.</summary>
/// <param name="source">An <see cref="ITuningMethodSource"/> with a parameterless constructor.</param>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = false)]
internal sealed class BuiltInTuningMethodsAttribute(Type source) : Attribute
{
    /// <summary>Gets the source type.</summary>
    public Type Source { get; } = source;
}
