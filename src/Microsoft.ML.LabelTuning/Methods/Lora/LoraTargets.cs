namespace Microsoft.ML.LabelTuning.Methods.Lora;

/// <summary>The linear layers of each decoder layer that LoRA adapts.</summary>
[Flags]
public enum LoraTargets
{
    /// <summary>The query projection (q_proj).</summary>
    Query = 1,

    /// <summary>The key projection (k_proj).</summary>
    Key = 2,

    /// <summary>The value projection (v_proj).</summary>
    Value = 4,

    /// <summary>The attention output projection (o_proj).</summary>
    Output = 8,

    /// <summary>The MLP gate projection (gate_proj).</summary>
    Gate = 16,

    /// <summary>The MLP up projection (up_proj).</summary>
    Up = 32,

    /// <summary>The MLP down projection (down_proj).</summary>
    Down = 64,

    /// <summary>q_proj and v_proj: the LoRA paper's and LS-LLaMA's default.</summary>
    QueryValue = Query | Value,

    /// <summary>All four attention projections.</summary>
    Attention = Query | Key | Value | Output,

    /// <summary>Every linear layer of the decoder.</summary>
    AllLinear = Attention | Gate | Up | Down,
}

/// <summary>Maps <see cref="LoraTargets"/> to Hugging Face module names and back.</summary>
internal static class LoraTargetNames
{
    private static readonly (LoraTargets Flag, string Name)[] _names =
    [
        (LoraTargets.Query, "q_proj"), (LoraTargets.Key, "k_proj"), (LoraTargets.Value, "v_proj"), (LoraTargets.Output, "o_proj"),
        (LoraTargets.Gate, "gate_proj"), (LoraTargets.Up, "up_proj"), (LoraTargets.Down, "down_proj"),
    ];

    public static IEnumerable<string> ToNames(LoraTargets targets)
        => _names.Where(n => targets.HasFlag(n.Flag)).Select(n => n.Name);

    /// <summary>Parses PEFT's target_modules (a set; names match by suffix, e.g. "self_attn.q_proj").</summary>
    public static LoraTargets FromNames(IEnumerable<string> names, string source)
    {
        LoraTargets targets = 0;
        foreach (var name in names)
        {
            var match = _names.Where(n => name == n.Name || name.EndsWith("." + n.Name, StringComparison.Ordinal)).ToList();
            if (match.Count == 0)
            {
                throw new InvalidDataException(
                    $"target_modules entry '{name}' in '{source}' is not a LLaMA linear layer; expected one of {string.Join(", ", _names.Select(n => n.Name))}.");
            }

            targets |= match[0].Flag;
        }

        return targets;
    }
}
