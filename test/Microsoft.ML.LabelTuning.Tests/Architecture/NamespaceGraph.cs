using System.Reflection;
using System.Reflection.Emit;

namespace Microsoft.ML.LabelTuning.Tests.Architecture;

/// <summary>
/// The namespaces of an assembly and which reach which: a namespace depends on another when one of its types names a
/// type of the other in its base type, interfaces, fields, properties, events, method signatures, attributes, generic
/// arguments or method bodies (every type, method and field token in the IL). Compiler-made types (lambdas, iterators,
/// async state machines) count for the namespace they are nested in.
/// </summary>
internal sealed class NamespaceGraph
{
    private static readonly Dictionary<short, OpCode> _opCodes = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value);

    private const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    private readonly Dictionary<string, Dictionary<string, string>> _edges = new(StringComparer.Ordinal);

    private NamespaceGraph(string prefix)
    {
        Prefix = prefix;
    }

    /// <summary>Gets the namespace prefix whose namespaces are nodes (types elsewhere are ignored).</summary>
    public string Prefix { get; }

    /// <summary>Gets every namespace with a type, and each dependency as (from, to) with one example of why.</summary>
    public IReadOnlyDictionary<string, Dictionary<string, string>> Edges => _edges;

    /// <summary>Builds the graph of <paramref name="assembly"/>'s namespaces that start with <paramref name="prefix"/>.</summary>
    public static NamespaceGraph Of(Assembly assembly, string prefix)
    {
        var graph = new NamespaceGraph(prefix);
        foreach (var type in assembly.GetTypes())
        {
            if (type.Namespace is { } ns && graph.Owns(ns))
            {
                graph.Node(ns);
                graph.AddType(type);
            }
        }

        return graph;
    }

    /// <summary>The strongly connected groups of more than one namespace: each is a dependency cycle.</summary>
    public List<List<string>> Cycles()
    {
        // Tarjan's algorithm over the namespace graph.
        var index = new Dictionary<string, int>();
        var low = new Dictionary<string, int>();
        var onStack = new HashSet<string>();
        var stack = new Stack<string>();
        var groups = new List<List<string>>();
        var next = 0;

        void Visit(string v)
        {
            index[v] = low[v] = next++;
            stack.Push(v);
            onStack.Add(v);
            foreach (var w in _edges[v].Keys)
            {
                if (!index.ContainsKey(w))
                {
                    Visit(w);
                    low[v] = Math.Min(low[v], low[w]);
                }
                else if (onStack.Contains(w))
                {
                    low[v] = Math.Min(low[v], index[w]);
                }
            }

            if (low[v] == index[v])
            {
                var group = new List<string>();
                string w;
                do
                {
                    w = stack.Pop();
                    onStack.Remove(w);
                    group.Add(w);
                }
                while (w != v);
                if (group.Count > 1)
                {
                    group.Sort(StringComparer.Ordinal);
                    groups.Add(group);
                }
            }
        }

        foreach (var v in _edges.Keys.OrderBy(k => k, StringComparer.Ordinal))
        {
            if (!index.ContainsKey(v))
            {
                Visit(v);
            }
        }

        return groups;
    }

    /// <summary>The dependencies inside <paramref name="group"/>, each with the reference that makes it.</summary>
    public IEnumerable<string> Explain(IReadOnlyCollection<string> group)
        => group.SelectMany(from => _edges[from].Where(e => group.Contains(e.Key)).Select(e => $"{Short(from)} -> {Short(e.Key)} ({e.Value})"));

    public string Short(string ns) => ns == Prefix ? "(root)" : ns[(Prefix.Length + 1)..];

    private bool Owns(string ns) => ns == Prefix || ns.StartsWith(Prefix + ".", StringComparison.Ordinal);

    private void Node(string ns) => _edges.TryAdd(ns, new Dictionary<string, string>(StringComparer.Ordinal));

    private void AddType(Type type)
    {
        var from = type.Namespace!;
        void Uses(Type? used, string why) => Reference(from, used, why);

        Uses(type.BaseType, $"{type.Name} derives from it");
        foreach (var i in type.GetInterfaces())
        {
            Uses(i, $"{type.Name} implements it");
        }

        foreach (var attribute in type.GetCustomAttributesData())
        {
            Uses(attribute.AttributeType, $"{type.Name} has the attribute");
        }

        foreach (var field in type.GetFields(Everything))
        {
            Uses(field.FieldType, $"field {type.Name}.{field.Name}");
        }

        foreach (var property in type.GetProperties(Everything))
        {
            Uses(property.PropertyType, $"property {type.Name}.{property.Name}");
        }

        foreach (var e in type.GetEvents(Everything))
        {
            Uses(e.EventHandlerType, $"event {type.Name}.{e.Name}");
        }

        foreach (var method in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
        {
            var where = $"{type.Name}.{method.Name}";
            if (method is MethodInfo info)
            {
                Uses(info.ReturnType, $"{where} returns it");
            }

            foreach (var parameter in method.GetParameters())
            {
                Uses(parameter.ParameterType, $"{where} takes it");
            }

            foreach (var attribute in method.GetCustomAttributesData())
            {
                Uses(attribute.AttributeType, $"{where} has the attribute");
            }

            AddBody(from, type, method, where);
        }
    }

    private void AddBody(string from, Type type, MethodBase method, string where)
    {
        var body = method.GetMethodBody();
        if (body is null)
        {
            return;
        }

        foreach (var local in body.LocalVariables)
        {
            Reference(from, local.LocalType, $"{where} has a local of it");
        }

        var il = body.GetILAsByteArray() ?? [];
        var typeArguments = type.IsGenericType ? type.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (var i = 0; i < il.Length;)
        {
            var code = il[i] == 0xFE ? _opCodes[(short)(0xFE00 | il[i + 1])] : _opCodes[il[i]];
            i += code.Size;
            switch (code.OperandType)
            {
                case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok:
                    var member = method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArguments, methodArguments);
                    Reference(from, member as Type ?? member?.DeclaringType, $"{where} uses {member?.Name}");
                    if (member is MethodInfo called)
                    {
                        Reference(from, called.ReturnType, $"{where} calls {called.Name}");
                    }
                    else if (member is FieldInfo field)
                    {
                        Reference(from, field.FieldType, $"{where} reads {field.Name}");
                    }

                    i += 4;
                    break;
                case OperandType.InlineSwitch:
                    i += 4 + (4 * BitConverter.ToInt32(il, i));
                    break;
                case OperandType.InlineNone:
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    i += 1;
                    break;
                case OperandType.InlineVar:
                    i += 2;
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    i += 8;
                    break;
                default: // InlineBrTarget, InlineI, InlineSig, InlineString, ShortInlineR
                    i += 4;
                    break;
            }
        }
    }

    private void Reference(string from, Type? used, string why)
    {
        if (used is null)
        {
            return;
        }

        if (used.HasElementType)
        {
            Reference(from, used.GetElementType(), why);
            return;
        }

        if (used.IsGenericType && !used.IsGenericTypeDefinition)
        {
            foreach (var argument in used.GetGenericArguments())
            {
                Reference(from, argument, why);
            }
        }

        if (used.IsGenericParameter || used.Namespace is not { } to || to == from || !Owns(to))
        {
            return;
        }

        Node(to);
        _edges[from].TryAdd(to, $"{why}: {used.Name}");
    }
}
