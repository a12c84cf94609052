// The ML.NET internals seam: see build/MLNetInternals.targets.
using System.Runtime.CompilerServices;

// Each assembly that uses the seam compiles its own copy of the attribute; CS0436 is expected where one sees another's.
#pragma warning disable CS0436

[assembly: IgnoresAccessChecksTo("Microsoft.ML.Core")]
[assembly: IgnoresAccessChecksTo("Microsoft.ML.Data")]

namespace System.Runtime.CompilerServices
{
    /// <summary>
    /// Tells the runtime to skip access checks from this assembly into the named one. The runtime honours it;
    /// the compiler does not, which is why compilation uses publicized reference copies.
    /// </summary>
    [AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
    internal sealed class IgnoresAccessChecksToAttribute : Attribute
    {
        public IgnoresAccessChecksToAttribute(string assemblyName)
        {
            AssemblyName = assemblyName;
        }

        public string AssemblyName { get; }
    }
}
