using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DeviceGate.Client;

/// <summary>A problem-details answer from the gateway (RFC 9457), as an exception.</summary>
public sealed class GatewayException(HttpStatusCode status, string? type, string? title, string? detail)
    : Exception($"{(int)status} {title}: {detail}")
{
    /// <summary>The HTTP status.</summary>
    public HttpStatusCode Status { get; } = status;

    /// <summary>The stable problem type (<c>outbox_full</c>, <c>not_connected</c>, ...).</summary>
    public string? Type { get; } = type;

    /// <summary>The problem's title.</summary>
    public string? Title { get; } = title;

    /// <summary>The problem's detail.</summary>
    public string? Detail { get; } = detail;
}

/// <summary>What a send came to.</summary>
public sealed record SendResult(string Id, string Status);

/// <summary>How many connected members got a group message, and for how many offline ones it was stored.</summary>
public sealed record PublishResult(int Recipients, int Queued);

/// <summary>One event from <c>/api/events</c>: its number, type and the whole JSON object.</summary>
public sealed record GatewayEvent(long Seq, string Type, string? Device, JsonElement Json);

/// <summary>One message of a <see cref="GatewayClient.SendBatchAsync"/>: exactly one of text, JSON data or bytes.</summary>
public sealed record BatchItem
{
    /// <summary>The target device.</summary>
    public required string Device { get; init; }

    /// <summary>A text message.</summary>
    public string? Text { get; init; }

    /// <summary>A JSON value (serialized with System.Text.Json); envelope devices get it as <c>data</c>.</summary>
    public object? Data { get; init; }

    /// <summary>A binary message.</summary>
    public byte[]? Bytes { get; init; }

    /// <summary>Store it until delivered, for at most this long.</summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>A retried batch answers this item with the first message's id instead of storing a second copy.</summary>
    public string? IdempotencyKey { get; init; }
}

/// <summary>One item's outcome: an id and status, or the problem that kept it from being sent.</summary>
/// <param name="Id">The message id, when it was sent or queued.</param>
/// <param name="Status"><c>sent</c> or <c>queued</c>, when it was.</param>
/// <param name="Error">Why not (problem type, status, title, detail), when it was not.</param>
public sealed record BatchResult(string? Id, string? Status, GatewayException? Error)
{
    /// <summary>True when the gateway took the message (sent or queued).</summary>
    public bool Succeeded => Id is not null;
}

/// <summary>
/// The backend side: typed calls for the DeviceGate HTTP API. Give it an <see cref="HttpClient"/> whose
/// BaseAddress is the gateway and which sends the API key (<see cref="ServiceCollectionExtensions.AddDeviceGateClient"/> does both).
/// </summary>
public sealed class GatewayClient(HttpClient http, ILogger<GatewayClient>? logger = null)
{
    /// <summary>Sends text (or JSON with <paramref name="asJson"/>) to one device; with a ttl it is stored until delivered.</summary>
    public Task<SendResult> SendAsync(string deviceId, string text, TimeSpan? ttl = null, string? idempotencyKey = null, bool asJson = false, CancellationToken ct = default) =>
        SendContentAsync(deviceId, new StringContent(text, Encoding.UTF8, asJson ? "application/json" : "text/plain"), ttl, idempotencyKey, ct);

    /// <summary>Sends bytes (a binary message) to one device.</summary>
    public Task<SendResult> SendAsync(string deviceId, byte[] bytes, TimeSpan? ttl = null, string? idempotencyKey = null, CancellationToken ct = default) =>
        SendContentAsync(deviceId, Binary(bytes), ttl, idempotencyKey, ct);

    private async Task<SendResult> SendContentAsync(string deviceId, HttpContent content, TimeSpan? ttl, string? key, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/devices/{Esc(deviceId)}/messages{Ttl(ttl)}") { Content = content };
        if (key is not null) request.Headers.Add("Idempotency-Key", key);
        var json = await SendAsync(request, ct).ConfigureAwait(false);
        return new SendResult(json.GetProperty("id").GetString()!, json.GetProperty("status").GetString()!);
    }

    /// <summary>
    /// Sends many messages in one request (<c>POST /api/messages/batch</c>, at most <c>DeviceGate:Limits:MaxBatchItems</c>,
    /// 1,000 by default): one result per item, in order. An item that fails costs only itself.
    /// </summary>
    public async Task<IReadOnlyList<BatchResult>> SendBatchAsync(IEnumerable<BatchItem> items, CancellationToken ct = default)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartArray();
            foreach (var item in items)
            {
                w.WriteStartObject();
                w.WriteString("device", item.Device);
                if (item.Bytes is not null) w.WriteBase64String("dataBase64", item.Bytes);
                else if (item.Text is not null) w.WriteString("text", item.Text);
                else
                {
                    w.WritePropertyName("data");
                    JsonSerializer.Serialize(w, item.Data);
                }
                if (item.Ttl is { } ttl) w.WriteNumber("ttl", ttl.TotalSeconds);
                if (item.IdempotencyKey is not null) w.WriteString("idempotencyKey", item.IdempotencyKey);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        var content = new ByteArrayContent(buffer.WrittenSpan.ToArray());
        content.Headers.ContentType = new("application/json");
        var json = await PostAsync("api/messages/batch", content, ct).ConfigureAwait(false);
        return json.GetProperty("results").EnumerateArray().Select(r => r.TryGetProperty("id", out var id)
            ? new BatchResult(id.GetString(), r.GetProperty("status").GetString(), null)
            : new BatchResult(null, null, FromProblem((HttpStatusCode)r.GetProperty("status").GetInt32(), r))).ToList();
    }

    /// <summary>Sends text to every connected device; returns how many it was written to.</summary>
    public async Task<int> BroadcastAsync(string text, CancellationToken ct = default) =>
        (await PostAsync("api/broadcast", new StringContent(text, Encoding.UTF8, "text/plain"), ct).ConfigureAwait(false)).GetProperty("recipients").GetInt32();

    /// <summary>Sends text to every member of a group (stored for offline ones with a ttl).</summary>
    public async Task<PublishResult> PublishAsync(string group, string text, TimeSpan? ttl = null, CancellationToken ct = default)
    {
        var json = await PostAsync($"api/groups/{Esc(group)}/messages{Ttl(ttl)}", new StringContent(text, Encoding.UTF8, "text/plain"), ct).ConfigureAwait(false);
        return new PublishResult(json.GetProperty("recipients").GetInt32(), json.GetProperty("queued").GetInt32());
    }

    /// <summary>Adds a device (connected or not) to a group.</summary>
    public Task AddToGroupAsync(string group, string deviceId, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Put, $"api/groups/{Esc(group)}/devices/{Esc(deviceId)}"), ct);

    /// <summary>Removes a device from a group.</summary>
    public Task RemoveFromGroupAsync(string group, string deviceId, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"api/groups/{Esc(group)}/devices/{Esc(deviceId)}"), ct);

    /// <summary>A group's members.</summary>
    public async Task<IReadOnlyList<string>> GetGroupAsync(string group, CancellationToken ct = default) =>
        (await GetAsync($"api/groups/{Esc(group)}", ct).ConfigureAwait(false)).GetProperty("devices").EnumerateArray().Select(e => e.GetString()!).ToList();

    /// <summary>Every group with its member count.</summary>
    public async Task<IReadOnlyDictionary<string, int>> ListGroupsAsync(CancellationToken ct = default) =>
        (await GetAsync("api/groups", ct).ConfigureAwait(false)).GetProperty("groups").EnumerateArray()
            .ToDictionary(g => g.GetProperty("group").GetString()!, g => g.GetProperty("members").GetInt32());

    /// <summary>
    /// One page of devices (connected only, unless <paramref name="includeOffline"/>); with <paramref name="tags"/>,
    /// only those having every one of these tags (exact values).
    /// </summary>
    public Task<JsonElement> ListDevicesAsync(bool includeOffline = false, string? search = null, string? after = null, int limit = 1000,
        IReadOnlyDictionary<string, string>? tags = null, CancellationToken ct = default)
    {
        var q = $"api/devices?limit={limit}" + (includeOffline ? "&online=false" : "") + (search is null ? "" : "&search=" + Esc(search)) + (after is null ? "" : "&after=" + Esc(after));
        foreach (var (key, value) in tags ?? new Dictionary<string, string>()) q += "&tag=" + Esc(key + ":" + value);
        return GetAsync(q, ct);
    }

    /// <summary>Replaces the device's tags (an empty set removes them); a refused set is a <see cref="GatewayException"/> 400 <c>invalid_tags</c>.</summary>
    public Task SetTagsAsync(string deviceId, IReadOnlyDictionary<string, string> tags, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Put, $"api/devices/{Esc(deviceId)}/tags") { Content = JsonContent.Create(tags) }, ct);

    /// <summary>A device's presence, groups, queued count and tags.</summary>
    public Task<JsonElement> GetDeviceAsync(string deviceId, CancellationToken ct = default) => GetAsync($"api/devices/{Esc(deviceId)}", ct);

    /// <summary>The device's state document: desired, reported, delta, their versions and when each changed.</summary>
    public Task<JsonElement> GetStateAsync(string deviceId, CancellationToken ct = default) => GetAsync($"api/devices/{Esc(deviceId)}/state", ct);

    /// <summary>
    /// Merges <paramref name="patch"/> (a JSON merge patch: members set, null removes) into the desired state and
    /// returns the document. With <paramref name="ifMatch"/> it is written only if desired is still at that version;
    /// otherwise a <see cref="GatewayException"/> with status 412 and type <c>version_mismatch</c>.
    /// </summary>
    public Task<JsonElement> PatchDesiredAsync(string deviceId, object patch, long? ifMatch = null, CancellationToken ct = default) =>
        ChangeStateAsync(HttpMethod.Patch, deviceId, "desired", patch, ifMatch, ct);

    /// <summary>Merges <paramref name="patch"/> into the reported state (for a backend reporting on a device's behalf).</summary>
    public Task<JsonElement> PatchReportedAsync(string deviceId, object patch, long? ifMatch = null, CancellationToken ct = default) =>
        ChangeStateAsync(HttpMethod.Patch, deviceId, "reported", patch, ifMatch, ct);

    private Task<JsonElement> ChangeStateAsync(HttpMethod method, string deviceId, string part, object patch, long? ifMatch, CancellationToken ct)
    {
        var request = new HttpRequestMessage(method, $"api/devices/{Esc(deviceId)}/state/{part}") { Content = JsonContent.Create(patch) };
        if (ifMatch is { } version) request.Headers.TryAddWithoutValidation("If-Match", $"\"{version.ToString(System.Globalization.CultureInfo.InvariantCulture)}\"");
        return SendAsync(request, ct);
    }

    /// <summary>A device's recent messages with their status.</summary>
    public Task<JsonElement> GetDeviceMessagesAsync(string deviceId, CancellationToken ct = default) => GetAsync($"api/devices/{Esc(deviceId)}/messages", ct);

    /// <summary>Closes the device's connection (4001).</summary>
    public Task DisconnectAsync(string deviceId, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"api/devices/{Esc(deviceId)}/connection"), ct);

    /// <summary>Forgets the device: closes it, cancels its outbox, drops memberships and last-seen.</summary>
    public Task ForgetAsync(string deviceId, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"api/devices/{Esc(deviceId)}"), ct);

    /// <summary>Refuses the device's tokens issued until now and closes it (1008 token_revoked).</summary>
    public Task RevokeTokensAsync(string deviceId, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Post, $"api/devices/{Esc(deviceId)}/revoke-tokens"), ct);

    /// <summary>A message's status and history.</summary>
    public Task<JsonElement> GetMessageAsync(string id, CancellationToken ct = default) => GetAsync($"api/messages/{Esc(id)}", ct);

    /// <summary>Cancels a queued message.</summary>
    public Task CancelMessageAsync(string id, CancellationToken ct = default) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"api/messages/{Esc(id)}"), ct);

    /// <summary>Calls the device and returns its reply's data; a device error is a <see cref="GatewayException"/> with status 502.</summary>
    public Task<JsonElement> RpcAsync(string deviceId, object? data, TimeSpan? timeout = null, CancellationToken ct = default) =>
        PostAsync($"api/devices/{Esc(deviceId)}/rpc" + (timeout is { } t ? $"?timeout={t.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : ""),
            JsonContent.Create(data), ct);

    /// <summary>Per-node counters.</summary>
    public Task<JsonElement> GetStatsAsync(CancellationToken ct = default) => GetAsync("api/stats", ct);

    /// <summary>The live event stream; resumes with Last-Event-ID after a dropped connection until cancelled.</summary>
    public async IAsyncEnumerable<GatewayEvent> EventsAsync(string? types = null, string? device = null, [EnumeratorCancellation] CancellationToken ct = default)
    {
        string? last = null;
        var path = "api/events?" + (types is null ? "" : "types=" + Esc(types) + "&") + (device is null ? "" : "device=" + Esc(device));
        while (!ct.IsCancellationRequested)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
            if (last is not null) request.Headers.Add("Last-Event-ID", last);
            HttpResponseMessage response;
            try
            {
                response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            }
            catch (HttpRequestException)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
                continue;
            }
            using (response)
            {
                if (!response.IsSuccessStatusCode) throw await ProblemAsync(response).ConfigureAwait(false);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false));
                var data = new StringBuilder();
                while (true)
                {
                    string? line;
                    try
                    {
                        line = await reader.ReadLineAsync(ct).ConfigureAwait(false);
                    }
                    catch (IOException)
                    {
                        break;
                    }
                    if (line is null) break;
                    if (line.StartsWith("id: ", StringComparison.Ordinal)) last = line[4..];
                    else if (line.StartsWith("data: ", StringComparison.Ordinal)) (data.Length > 0 ? data.Append('\n') : data).Append(line, 6, line.Length - 6);
                    else if (line.Length == 0 && data.Length > 0)
                    {
                        // One event ends at a blank line (its data may span lines). One that cannot be read is logged
                        // and skipped: the stream, and the resume position (its id), go on.
                        var e = ParseEvent(data.ToString());
                        data.Clear();
                        if (e is not null) yield return e;
                    }
                }
            }
        }
    }

    private GatewayEvent? ParseEvent(string data)
    {
        try
        {
            var json = JsonDocument.Parse(data).RootElement.Clone();
            return new GatewayEvent(json.GetProperty("seq").GetInt64(), json.GetProperty("type").GetString()!,
                json.TryGetProperty("device", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null, json);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            if (logger is not null) Log.MalformedEvent(logger, data.Length, e.Message);
            return null;
        }
    }

    private static string Esc(string s) => Uri.EscapeDataString(s);

    private static string Ttl(TimeSpan? ttl) => ttl is { } t ? "?ttl=" + t.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture) : "";

    private static ByteArrayContent Binary(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        return content;
    }

    private Task<JsonElement> GetAsync(string path, CancellationToken ct) => SendAsync(new HttpRequestMessage(HttpMethod.Get, path), ct);

    private Task<JsonElement> PostAsync(string path, HttpContent content, CancellationToken ct) =>
        SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = content }, ct);

    private async Task<JsonElement> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        using (request)
        using (var response = await http.SendAsync(request, ct).ConfigureAwait(false))
        {
            if (!response.IsSuccessStatusCode) throw await ProblemAsync(response).ConfigureAwait(false);
            if (response.Content.Headers.ContentLength == 0 || response.StatusCode == HttpStatusCode.NoContent) return default;
            return (await response.Content.ReadFromJsonAsync<JsonElement>(ct).ConfigureAwait(false)).Clone();
        }
    }

    /// <summary>Problem details (a whole answer, or one batch item's result) as an exception.</summary>
    private static GatewayException FromProblem(HttpStatusCode status, JsonElement p)
    {
        string? S(string name) => p.ValueKind == JsonValueKind.Object && p.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        return new GatewayException(status, S("type"), S("title"), S("detail") ?? S("message"));
    }

    private static async Task<GatewayException> ProblemAsync(HttpResponseMessage response)
    {
        try
        {
            return FromProblem(response.StatusCode, await response.Content.ReadFromJsonAsync<JsonElement>().ConfigureAwait(false));
        }
        catch (JsonException)
        {
            return new GatewayException(response.StatusCode, null, response.ReasonPhrase, null);
        }
    }
}

/// <summary>Registration for <see cref="IHttpClientFactory"/>-based apps.</summary>
public static class ServiceCollectionExtensions
{
    /// <summary>Registers <see cref="GatewayClient"/> as a typed HttpClient for <paramref name="server"/> with <paramref name="apiKey"/>.</summary>
    public static IHttpClientBuilder AddDeviceGateClient(this IServiceCollection services, Uri server, string apiKey) =>
        services.AddHttpClient<GatewayClient>(http =>
        {
            http.BaseAddress = new Uri(server.ToString().TrimEnd('/') + "/");
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        });
}

internal static partial class Log
{
    [LoggerMessage(2100, LogLevel.Warning, "Skipped an event stream entry that is not a readable event ({Length} characters): {Error}")]
    public static partial void MalformedEvent(ILogger logger, int length, string error);
}
