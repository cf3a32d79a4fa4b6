using System.Text.Json;

namespace DeviceGate.Messages;

/// <summary>
/// Device tags: labels to find devices by. A tag set is at most <see cref="MaxTags"/> pairs; a key follows the id
/// rule and is at most <see cref="MaxKeyLength"/> characters, a value is a string of at most
/// <see cref="MaxValueLength"/> characters without control characters.
/// </summary>
public static class Tags
{
    public const int MaxTags = 32;
    public const int MaxKeyLength = 64;
    public const int MaxValueLength = 256;

    /// <summary>Largest tags body read: the limits with every character escaped, and room for whitespace.</summary>
    public const int MaxBodyBytes = 64 * 1024;

    public static readonly IReadOnlyDictionary<string, string> None = new Dictionary<string, string>();

    public static bool IsValidKey(string key) => key.Length <= MaxKeyLength && DeviceId.IsValid(key);

    public static bool IsValidValue(string value)
    {
        if (value.Length > MaxValueLength) return false;
        foreach (var c in value)
        {
            if (char.IsControl(c)) return false;
        }
        return true;
    }

    /// <summary>A tags document: a JSON object of string values within the limits; otherwise false and why.</summary>
    public static bool TryParse(ReadOnlySpan<byte> json, out Dictionary<string, string> tags, out string? why)
    {
        tags = new Dictionary<string, string>(StringComparer.Ordinal);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException)
        {
            why = "The body is not JSON nested at most 32 deep (a JSON object of string values is expected).";
            return false;
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                why = "Tags are a JSON object of string values, such as {\"site\":\"berlin\"}.";
                return false;
            }
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (!JsonText.TryGetString(p.Value, out var value) || !IsValidValue(value))
                {
                    why = $"Each tag value is a string of at most {MaxValueLength} characters without control characters.";
                    return false;
                }
                string key;
                try
                {
                    key = p.Name;
                }
                catch (InvalidOperationException)
                {
                    key = "";
                }
                if (!IsValidKey(key))
                {
                    why = $"Each tag key follows the id rule ([A-Za-z0-9._:-], starting with a letter or digit) and is at most {MaxKeyLength} characters.";
                    return false;
                }
                if (!tags.TryAdd(key, value))
                {
                    why = "A tag key appears twice.";
                    return false;
                }
                if (tags.Count > MaxTags)
                {
                    why = $"A device has at most {MaxTags} tags.";
                    return false;
                }
            }
        }
        why = null;
        return true;
    }
}

/// <summary>
/// One <c>tag=key:value</c> of a device listing: exact match. Keys may hold ':' themselves, so every split of the
/// text into a valid key and a value is a reading, and a device matches when it has any of them.
/// </summary>
public sealed class TagFilter
{
    private TagFilter(IReadOnlyList<(string Key, string Value)> readings) => Readings = readings;

    public IReadOnlyList<(string Key, string Value)> Readings { get; }

    public static bool TryParse(string text, out TagFilter filter)
    {
        var readings = new List<(string, string)>();
        for (var i = text.IndexOf(':'); i >= 0; i = text.IndexOf(':', i + 1))
        {
            var (key, value) = (text[..i], text[(i + 1)..]);
            if (Tags.IsValidKey(key) && Tags.IsValidValue(value)) readings.Add((key, value));
        }
        filter = new TagFilter(readings);
        return readings.Count > 0;
    }

    public bool Matches(IReadOnlyDictionary<string, string> tags)
    {
        foreach (var (key, value) in Readings)
        {
            if (tags.TryGetValue(key, out var v) && v == value) return true;
        }
        return false;
    }

    public static bool MatchesAll(IReadOnlyList<TagFilter> filters, IReadOnlyDictionary<string, string> tags)
    {
        foreach (var f in filters)
        {
            if (!f.Matches(tags)) return false;
        }
        return true;
    }
}
