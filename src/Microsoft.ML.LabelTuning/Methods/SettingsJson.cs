using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.LabelTuning.Methods;

/// <summary>The JSON options used for method settings saved inside models and checkpoints.</summary>
internal static class SettingsJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        Converters = { new JsonStringEnumConverter() },
        WriteIndented = false,
        MaxDepth = 32,
    };
}
