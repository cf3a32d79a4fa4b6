using System.Text;
using System.Text.Json;
using DeviceGate.Connections;
using DeviceGate.Delivery;
using DeviceGate.Protocol;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Api;

/// <summary>
/// <c>POST /api/messages/batch</c>: many targeted sends in one request (a JSON array, or one JSON object per line as
/// <c>application/x-ndjson</c>), answered with one result per item, in order. Per-message HTTP requests cap a backend
/// at a few thousand messages a second; a batch costs one request, and its durable items share one store commit.
/// </summary>
internal static class BatchApi
{
    public const string NdJson = "application/x-ndjson";

    public static void Map(RouteGroupBuilder api)
    {
        var services = ((IEndpointRouteBuilder)api).ServiceProvider;
        var delivery = services.GetRequiredService<DeliveryService>();
        var outbox = services.GetRequiredService<Outbox>();
        var options = services.GetRequiredService<IOptions<GatewayOptions>>();
        api.MapPost("/messages/batch", new Func<HttpContext, Task>(context => SendBatchAsync(context, delivery, outbox, options))).WithName("SendBatch")
            .Produces(200, contentType: "application/json").ProducesProblem(400).ProducesProblem(413);
    }

    /// <summary>One parsed item: a send to make, or why it cannot be made.</summary>
    private readonly record struct Item(SendRequest Send, ApiProblem? Problem);

    private static async Task SendBatchAsync(HttpContext context, DeliveryService delivery, Outbox outbox, IOptions<GatewayOptions> options)
    {
        var o = options.Value;
        // Every item may carry a full message, base64 makes it a third bigger, and JSON adds its punctuation.
        var maxBody = Math.Min(64L * 1024 * 1024, (long)o.Limits.MaxBatchItems * (o.Limits.MaxMessageBytes * 4L / 3 + 512));
        var body = await MessageBody.ReadBytesAsync(context.Request, maxBody).ConfigureAwait(false);
        if (body is null)
        {
            await Results.Problem(statusCode: 413, title: "Batch too large", type: "too_large",
                detail: $"A batch body is at most {maxBody} bytes.").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }
        var ndjson = MessageBody.MediaType(context.Request.ContentType).Equals(NdJson, StringComparison.OrdinalIgnoreCase);
        var (items, problem) = ndjson ? ParseLines(body, o) : ParseArray(body, o);
        if (problem is not null)
        {
            await problem.ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        // A key narrowed to some devices (messages:send:kiosk-*) sends only to them; each other item fails alone.
        var caller = ApiAccess.CallerOf(context);
        if (!caller.Allows(Auth.ApiScopes.MessagesSend))
        {
            for (var i = 0; i < items.Count; i++)
            {
                if (items[i].Problem is null && !caller.Allows(Auth.ApiScopes.MessagesSend, items[i].Send.Target))
                {
                    items[i] = items[i] with { Problem = ApiProblem.InsufficientScope(Auth.ApiScopes.MessagesSend, items[i].Send.Target) };
                }
            }
        }

        // Durable items first join the store's next group commit together; then every item is sent in array order,
        // so messages for one device arrive in the order the batch lists them.
        var pending = new Outbox.PendingDurable?[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (item.Problem is null && item.Send.Ttl > TimeSpan.Zero) pending[i] = outbox.BeginDurable(item.Send, DeviceId.Server, null);
        }
        var results = new object[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (item.Problem is { } p)
            {
                results[i] = p;
                continue;
            }
            var result = pending[i] is { } d
                ? await outbox.FinishDurableAsync(d).ConfigureAwait(false)
                : await delivery.SendAsync(item.Send, DeviceId.Server).ConfigureAwait(false);
            // The same refusals as a single send's, as one item of the results.
            results[i] = (object?)SendOptions.Refusal(result.Outcome, item.Send.Target, o.Delivery.MaxQueuedPerDevice, result.Cause) ?? result;
        }
        await WriteAsync(context, results).ConfigureAwait(false);
    }

    private static async Task WriteAsync(HttpContext context, object[] results)
    {
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json; charset=utf-8";
        int sent = 0, queued = 0, failed = 0;
        await using (var json = new Utf8JsonWriter(context.Response.BodyWriter))
        {
            json.WriteStartObject();
            json.WriteStartArray("results");
            foreach (var r in results)
            {
                json.WriteStartObject();
                if (r is SendResult s)
                {
                    json.WriteString("id", s.Id);
                    json.WriteString("status", s.Status);
                    if (s.Status == MessageStatus.Queued) queued++;
                    else sent++;
                }
                else
                {
                    var p = (ApiProblem)r;
                    json.WriteString("type", p.Type);
                    json.WriteString("title", p.Title);
                    json.WriteNumber("status", p.Status);
                    json.WriteString("detail", p.Detail);
                    if (p.Scope is not null) json.WriteString("scope", p.Scope);
                    failed++;
                }
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteNumber("sent", sent);
            json.WriteNumber("queued", queued);
            json.WriteNumber("failed", failed);
            json.WriteEndObject();
        }
        await context.Response.BodyWriter.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private static (List<Item> Items, IResult? Problem) ParseArray(byte[] body, GatewayOptions o)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = EnvelopeReader.MaxDepth + 2 });
        }
        catch (JsonException e)
        {
            return ([], BadBatch($"The body is not valid JSON: {e.Message}"));
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
            {
                return ([], BadBatch("The body is a JSON array of items (or application/x-ndjson: one item per line)."));
            }
            var count = doc.RootElement.GetArrayLength();
            if (count > o.Limits.MaxBatchItems) return ([], TooMany(count, o));
            var items = new List<Item>(count);
            foreach (var element in doc.RootElement.EnumerateArray()) items.Add(ParseItem(element, o));
            return (items, null);
        }
    }

    private static (List<Item> Items, IResult? Problem) ParseLines(byte[] body, GatewayOptions o)
    {
        var items = new List<Item>();
        var rest = body.AsMemory();
        while (!rest.IsEmpty)
        {
            var end = rest.Span.IndexOf((byte)'\n');
            var line = end < 0 ? rest : rest[..end];
            rest = end < 0 ? default : rest[(end + 1)..];
            if (line.Span.Trim(" \t\r"u8).IsEmpty) continue;
            if (items.Count == o.Limits.MaxBatchItems) return ([], TooMany(items.Count + 1, o, ndjson: true));
            try
            {
                using var doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = EnvelopeReader.MaxDepth + 1 });
                items.Add(ParseItem(doc.RootElement, o));
            }
            catch (JsonException e)
            {
                items.Add(Invalid($"Line {items.Count + 1} is not valid JSON: {e.Message}"));
            }
        }
        return (items, null);
    }

    private static Item ParseItem(JsonElement e, GatewayOptions o)
    {
        if (e.ValueKind != JsonValueKind.Object) return Invalid("An item is a JSON object.");
        if (!e.TryGetProperty("device", out var d) || !JsonText.TryGetString(d, out var device)) return Invalid("An item needs \"device\", a device id.");
        if (!DeviceId.IsValid(device) || device == DeviceId.Server) return Invalid($"'{device}' is not a valid device id.");

        MessageData? data = null;
        var forms = 0;
        if (e.TryGetProperty("data", out var json))
        {
            forms++;
            data = MessageData.Json(System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(json).ToArray());
        }
        if (e.TryGetProperty("text", out var text))
        {
            forms++;
            if (!JsonText.TryGetString(text, out var value)) return Invalid("\"text\" is a string of valid Unicode (no lone surrogate escapes).");
            data = MessageData.Text(Encoding.UTF8.GetBytes(value));
        }
        if (e.TryGetProperty("dataBase64", out var b64))
        {
            forms++;
            if (b64.ValueKind != JsonValueKind.String || !b64.TryGetBytesFromBase64(out var bytes)) return Invalid("\"dataBase64\" is a base64 string.");
            data = MessageData.Binary(bytes);
        }
        if (forms != 1) return Invalid("An item carries exactly one of \"data\" (JSON), \"text\" (a string) or \"dataBase64\" (binary).");
        if (data!.Bytes.Length > o.Limits.MaxMessageBytes)
        {
            return new Item(default, new ApiProblem(413, "too_large", "Message too large",
                $"The message exceeds DeviceGate:Limits:MaxMessageBytes ({o.Limits.MaxMessageBytes} bytes)."));
        }

        var ttl = o.Delivery.DefaultTtl;
        if (e.TryGetProperty("ttl", out var t))
        {
            var seconds = t.ValueKind == JsonValueKind.Number && t.TryGetDouble(out var n) ? n : double.NaN;
            if (SendRules.CheckTtl(seconds, o.Delivery.MaxTtl, out ttl) is { } why) return Invalid($"\"ttl\": {why}");
        }
        string? key = null;
        if (e.TryGetProperty("idempotencyKey", out var k))
        {
            if (!JsonText.TryGetString(k, out var value) || SendRules.CheckIdempotencyKey(value) is not null) return Invalid("\"idempotencyKey\" is a string of 1 to 255 characters.");
            key = value;
        }
        return new Item(new SendRequest(device, data, ttl, key), null);
    }

    private static Item Invalid(string detail) => new(default, new ApiProblem(400, "invalid_item", "Invalid batch item", detail));

    private static IResult BadBatch(string detail) => Results.Problem(statusCode: 400, title: "Invalid batch", detail: detail, type: "invalid_batch");

    private static IResult TooMany(int count, GatewayOptions o, bool ndjson = false) => Results.Problem(statusCode: 400, title: "Too many items", type: "too_many_items",
        detail: $"A batch carries at most DeviceGate:Limits:MaxBatchItems ({o.Limits.MaxBatchItems}) items; this one has {(ndjson ? "more" : count.ToString(System.Globalization.CultureInfo.InvariantCulture))}. Nothing was sent.");
}
