using System.Text.Json;

namespace DeviceGate.Protocol;

/// <summary>One parsed device-to-server envelope. <see cref="Data"/> and <see cref="Error"/> stay valid while the document lives.</summary>
public sealed class InboundEnvelope(JsonDocument document) : IDisposable
{
    public required string Type { get; init; }
    public string? To { get; init; }
    public string? Group { get; init; }
    public string? Ref { get; init; }
    public string? Id { get; init; }
    public double? Ttl { get; init; }

    /// <summary>ValueKind Undefined when absent (a JSON null is present).</summary>
    public JsonElement Data { get; init; }
    public JsonElement Error { get; init; }

    /// <summary>A <c>report</c>'s merge patch (ValueKind Undefined when absent).</summary>
    public JsonElement State { get; init; }

    /// <summary>The W3C trace context the device sent (ValueKind Undefined when absent); read only when the gateway propagates traces.</summary>
    public JsonElement TraceParent { get; init; }

    public void Dispose() => document.Dispose();
}

/// <summary>Why an envelope was refused: the error envelope's code and text, and the ref when one could be read.</summary>
public readonly record struct EnvelopeProblem(string Code, string Message, string? Ref);

/// <summary>Parses device envelopes with System.Text.Json's reader (no reflection), depth-limited.</summary>
public static class EnvelopeReader
{
    public const int MaxDepth = 32;
    public const int MaxRefLength = 64;

    private static readonly JsonDocumentOptions Options = new() { MaxDepth = MaxDepth, AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow };

    /// <summary>Never throws: malformed input comes back as a problem.</summary>
    public static bool TryParse(ReadOnlyMemory<byte> utf8, out InboundEnvelope? envelope, out EnvelopeProblem problem)
    {
        envelope = null;
        problem = default;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(utf8, Options);
        }
        catch (JsonException e)
        {
            problem = new(ErrorCodes.BadJson, $"Not valid JSON: {Trim(e.Message)}", null);
            return false;
        }
        catch (ArgumentException)
        {
            problem = new(ErrorCodes.BadJson, "Not valid JSON.", null);
            return false;
        }

        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            problem = new(ErrorCodes.BadJson, "An envelope is a JSON object.", null);
            return false;
        }

        string? @ref = null;
        if (root.TryGetProperty("ref"u8, out var r))
        {
            if (!JsonText.TryGetString(r, out var text) || text.Length > MaxRefLength)
            {
                doc.Dispose();
                problem = new(ErrorCodes.InvalidField, $"'ref' must be a string of at most {MaxRefLength} characters of valid Unicode.", null);
                return false;
            }
            @ref = text;
        }

        if (!TryString(root, "type", out var type, out var bad) || type is null)
        {
            doc.Dispose();
            problem = bad ? new(ErrorCodes.InvalidField, "'type' must be a string of valid Unicode.", @ref) : new(ErrorCodes.MissingField, "'type' is required.", @ref);
            return false;
        }

        string? to = null, group = null, id = null;
        double? ttl = null;
        string? invalid = null;
        if (!TryString(root, "to", out to, out _)) invalid = "to";
        else if (!TryString(root, "group", out group, out _)) invalid = "group";
        else if (!TryString(root, "id", out id, out _)) invalid = "id";
        else if (root.TryGetProperty("ttl"u8, out var t))
        {
            if (t.ValueKind != JsonValueKind.Number || !t.TryGetDouble(out var seconds) || !double.IsFinite(seconds) || seconds < 0) invalid = "ttl";
            else ttl = seconds;
        }
        var data = root.TryGetProperty("data"u8, out var d) ? d : default;
        // A string data is decoded for raw recipients: one that cannot be (a lone surrogate escape) is refused here.
        if (invalid is null && data.ValueKind == JsonValueKind.String && !JsonText.TryGetString(data, out _)) invalid = "data";
        if (invalid is not null)
        {
            doc.Dispose();
            problem = new(ErrorCodes.InvalidField, $"'{invalid}' has the wrong type or value (strings must be valid Unicode: no lone surrogate escapes).", @ref);
            return false;
        }

        envelope = new InboundEnvelope(doc)
        {
            Type = type,
            To = to,
            Group = group,
            Id = id,
            Ref = @ref,
            Ttl = ttl,
            Data = data,
            Error = root.TryGetProperty("error"u8, out var error) ? error : default,
            State = root.TryGetProperty("state"u8, out var state) ? state : default,
            TraceParent = root.TryGetProperty("traceparent"u8, out var traceParent) ? traceParent : default,
        };
        return true;
    }

    /// <summary>False when the property is present but not a string; null value when absent.</summary>
    private static bool TryString(JsonElement root, string name, out string? value, out bool present)
    {
        value = null;
        present = root.TryGetProperty(name, out var e);
        if (!present) return true;
        if (!JsonText.TryGetString(e, out var text)) return false;
        value = text;
        return true;
    }

    private static string Trim(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
