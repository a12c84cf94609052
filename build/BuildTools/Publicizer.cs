using Mono.Cecil;

namespace LabelTuning.BuildTools;

/// <summary>
/// Writes a copy of a reference assembly in which internal types and members are public, so the
/// library can compile against ML.NET's model save/load internals. At run time the real assembly is
/// used and <c>IgnoresAccessChecksToAttribute</c> lets the calls through.
/// </summary>
internal static class Publicizer
{
    public static int Run(string input, string output)
    {
        var tool = File.GetLastWriteTimeUtc(typeof(Publicizer).Assembly.Location);
        if (File.Exists(output) && File.GetLastWriteTimeUtc(output) >= File.GetLastWriteTimeUtc(input) && File.GetLastWriteTimeUtc(output) >= tool)
        {
            return 0;
        }

        var resolver = new DefaultAssemblyResolver();
        resolver.AddSearchDirectory(Path.GetDirectoryName(Path.GetFullPath(input))!);
        using var assembly = AssemblyDefinition.ReadAssembly(input, new ReaderParameters { AssemblyResolver = resolver });
        foreach (var type in assembly.MainModule.GetTypes())
        {
            Publicize(type);
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        var temp = output + ".tmp";
        assembly.Write(temp);
        File.Move(temp, output, overwrite: true);
        Console.WriteLine($"publicized {Path.GetFileName(input)} -> {output}");
        return 0;
    }

    private static void Publicize(TypeDefinition type)
    {
        if (type.Name.StartsWith('<'))
        {
            return; // compiler-generated
        }

        if (type.IsNested)
        {
            if (type.IsNestedAssembly || type.IsNestedFamilyOrAssembly || type.IsNestedFamilyAndAssembly)
            {
                type.IsNestedPublic = true;
            }
        }
        else if (!type.IsPublic)
        {
            type.IsPublic = true;
        }

        foreach (var method in type.Methods)
        {
            // internal and protected internal become public; private protected becomes protected, so that
            // our overrides keep C#'s accessibility rules (the runtime allows the widened override).
            if (method.IsAssembly || method.IsFamilyOrAssembly)
            {
                method.IsPublic = true;
            }
            else if (method.IsFamilyAndAssembly)
            {
                method.IsFamily = true;
            }
        }

        foreach (var field in type.Fields)
        {
            if (field.Name.Contains('<'))
            {
                continue;
            }

            if (field.IsAssembly || field.IsFamilyOrAssembly)
            {
                field.IsPublic = true;
            }
            else if (field.IsFamilyAndAssembly)
            {
                field.IsFamily = true;
            }
        }
    }
}
