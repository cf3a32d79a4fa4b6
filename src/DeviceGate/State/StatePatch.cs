using System.Text.Json;
using System.Text.Json.Nodes;

namespace DeviceGate.State;

/// <summary>
/// The pure core of device state (issue 15): JSON merge patch (RFC 7396) on a state part, the delta between desired
/// and reported, and the checks a part must pass (an object, nesting at most <see cref="MaxDepth"/>, valid Unicode,
/// a size in compact UTF-8). No I/O: the store and the API build on it.
/// </summary>
internal static class StatePatch
{
    public const int MaxDepth = 32;

    private static readonly JsonDocumentOptions ParseOptions = new() { MaxDepth = MaxDepth + 1 };

    /// <summary>Parses a JSON object; false (with why) for anything else, deeper nesting, or a string that does not decode.</summary>
    public static bool TryParseObject(ReadOnlySpan<byte> utf8, out JsonObject? value, out string? error)
    {
        value = null;
        error = null;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8.ToArray(), ParseOptions);
        }
        catch (JsonException)
        {
            error = $"The body is not JSON (or nests deeper than {MaxDepth}).";
            return false;
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                error = "A state part is a JSON object.";
                return false;
            }
            if (!Decodes(doc.RootElement, 1))
            {
                error = $"Strings must be valid Unicode (no lone surrogate escapes) and nesting at most {MaxDepth} deep.";
                return false;
            }
            value = JsonNode.Parse(doc.RootElement.GetRawText())!.AsObject();
            return true;
        }
    }

    /// <summary>RFC 7396: members of <paramref name="patch"/> set, <c>null</c> removes, objects merge recursively. Returns a new object.</summary>
    public static JsonObject Apply(JsonObject target, JsonObject patch)
    {
        var result = (JsonObject)target.DeepClone();
        Merge(result, patch);
        return result;
    }

    /// <summary>
    /// The members of <paramref name="desired"/> whose value differs from <paramref name="reported"/>: recursively for
    /// objects on both sides, whole JSON values otherwise; a member absent from reported is in the delta.
    /// </summary>
    public static JsonObject Delta(JsonObject desired, JsonObject reported)
    {
        var delta = new JsonObject();
        foreach (var (name, want) in desired)
        {
            reported.TryGetPropertyValue(name, out var have);
            if (want is JsonObject wantObject && have is JsonObject haveObject)
            {
                var inner = Delta(wantObject, haveObject);
                if (inner.Count > 0) delta[name] = inner;
            }
            else if (!reported.ContainsKey(name) || !JsonNode.DeepEquals(want, have))
            {
                delta[name] = want?.DeepClone();
            }
        }
        return delta;
    }

    /// <summary>The part as compact JSON, and its size in UTF-8 bytes (what <c>DeviceGate:State:MaxBytes</c> limits).</summary>
    public static string ToCompactJson(JsonObject value, out int bytes)
    {
        var json = value.ToJsonString();
        bytes = System.Text.Encoding.UTF8.GetByteCount(json);
        return json;
    }

    private static void Merge(JsonObject target, JsonObject patch)
    {
        foreach (var (name, value) in patch)
        {
            if (value is null)
            {
                target.Remove(name);
            }
            else if (value is JsonObject patchObject)
            {
                if (target[name] is not JsonObject targetObject)
                {
                    targetObject = new JsonObject();
                    target[name] = targetObject;
                }
                Merge(targetObject, patchObject);
            }
            else
            {
                target[name] = value.DeepClone();
            }
        }
    }

    private static bool Decodes(JsonElement e, int depth)
    {
        if (depth > MaxDepth) return false;
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                return JsonText.TryGetString(e, out _);
            case JsonValueKind.Array:
                foreach (var item in e.EnumerateArray())
                {
                    if (!Decodes(item, depth + 1)) return false;
                }
                return true;
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    try
                    {
                        _ = p.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return false;
                    }
                    if (!Decodes(p.Value, depth + 1)) return false;
                }
                return true;
            default:
                return true;
        }
    }
}
