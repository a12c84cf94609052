using System.Text;
using System.Text.Json;

namespace Microsoft.ML.LabelTuning.IO;

/// <summary>
/// Finds JSON strings that cannot become .NET strings. <see cref="JsonDocument"/> accepts an escaped lone surrogate
/// (<c>"\ud800"</c>) and, in some positions, bytes that are not UTF-8, and only
/// <see cref="JsonElement.GetString"/> or <see cref="JsonProperty.Name"/> then throws
/// <see cref="InvalidOperationException"/>. The file readers check a parsed document once, up front, so that such a
/// file is refused with an <see cref="InvalidDataException"/> that names it instead.
/// </summary>
internal static class JsonStrings
{
    /// <summary>Gets the JSON path of the first property name or string value that is not valid Unicode, or null when there is none.</summary>
    /// <param name="root">The parsed document's root.</param>
    internal static string? FindInvalid(JsonElement root)
    {
        var path = new List<(string? Name, int Index)>();
        return Walk(root, path) ? Format(path) : null;
    }

    private static bool Walk(JsonElement element, List<(string? Name, int Index)> path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        path.Add(("(a property name)", 0));
                        return true;
                    }

                    path.Add((name, 0));
                    if (Walk(property.Value, path))
                    {
                        return true;
                    }

                    path.RemoveAt(path.Count - 1);
                }

                return false;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    path.Add((null, index++));
                    if (Walk(item, path))
                    {
                        return true;
                    }

                    path.RemoveAt(path.Count - 1);
                }

                return false;
            case JsonValueKind.String:
                try
                {
                    _ = element.GetString();
                    return false;
                }
                catch (InvalidOperationException)
                {
                    return true;
                }

            default:
                return false;
        }
    }

    private static string Format(List<(string? Name, int Index)> path)
    {
        var text = new StringBuilder("$");
        foreach (var (name, index) in path)
        {
            if (name is null)
            {
                text.Append('[').Append(index).Append(']');
            }
            else
            {
                text.Append('.').Append(name.Length > 80 ? name[..80] + "..." : name);
            }
        }

        return text.ToString();
    }
}
