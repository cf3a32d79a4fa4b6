using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace DeviceGate.Cli;

/// <summary><c>send</c>, <c>broadcast</c>, <c>devices</c> and <c>state</c>: thin wrappers over the HTTP API.</summary>
internal static class ApiCommands
{
    public static IEnumerable<Command> Create()
    {
        var id = new Argument<string>("id") { Description = "Device id" };
        var payload = new Argument<string>("payload") { Description = "Message text" };
        var binary = new Option<bool>("--binary") { Description = "Send the payload's UTF-8 bytes as a binary message" };

        var send = CommandLine.Client("send", "Send a message to one device.");
        send.Arguments.Add(id);
        send.Arguments.Add(payload);
        send.Options.Add(binary);
        send.SetAction((parse, ct) => PostAsync(parse, $"api/devices/{Uri.EscapeDataString(parse.GetValue(id)!)}/messages",
            parse.GetValue(payload)!, parse.GetValue(binary), ct));

        var broadcastPayload = new Argument<string>("payload") { Description = "Message text" };
        var broadcast = CommandLine.Client("broadcast", "Send a message to every connected device.");
        broadcast.Arguments.Add(broadcastPayload);
        broadcast.Options.Add(binary);
        broadcast.SetAction((parse, ct) => PostAsync(parse, "api/broadcast", parse.GetValue(broadcastPayload)!, parse.GetValue(binary), ct));

        var devices = CommandLine.Client("devices", "List connected devices.");
        devices.SetAction(ListDevicesAsync);

        var stateId = new Argument<string>("id") { Description = "Device id" };
        var desired = new Option<string?>("--desired") { Description = "A JSON merge patch for the desired state (prints the document after it)" };
        var state = CommandLine.Client("state", "Print a device's state document (desired, reported, delta, versions), or patch its desired state.");
        state.Arguments.Add(stateId);
        state.Options.Add(desired);
        state.SetAction((parse, ct) => StateAsync(parse, parse.GetValue(stateId)!, parse.GetValue(desired), ct));

        return [send, broadcast, devices, state];
    }

    private static async Task<int> StateAsync(ParseResult parse, string id, string? patch, CancellationToken ct)
    {
        using var http = CreateClient(parse);
        if (http is null) return CommandLine.Fail(NoKey);
        var path = $"api/devices/{Uri.EscapeDataString(id)}/state";
        return await RunAsync(() =>
        {
            if (patch is null) return http.GetAsync(path, ct);
            var request = new HttpRequestMessage(HttpMethod.Patch, path + "/desired") { Content = new StringContent(patch, Encoding.UTF8) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/merge-patch+json");
            return http.SendAsync(request, ct);
        }, async r => Console.WriteLine(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false))).ConfigureAwait(false);
    }

    private static async Task<int> PostAsync(ParseResult parse, string path, string payload, bool binary, CancellationToken ct)
    {
        using var http = CreateClient(parse);
        if (http is null) return CommandLine.Fail(NoKey);
        var bytes = Encoding.UTF8.GetBytes(payload);
        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue(binary ? "application/octet-stream" : "text/plain") { CharSet = binary ? null : "utf-8" };
        return await RunAsync(() => http.PostAsync(path, content, ct), async r => Console.WriteLine(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false))).ConfigureAwait(false);
    }

    private static async Task<int> ListDevicesAsync(ParseResult parse, CancellationToken ct)
    {
        using var http = CreateClient(parse);
        if (http is null) return CommandLine.Fail(NoKey);
        string? after = null;
        var first = true;
        do
        {
            var path = after is null ? "api/devices" : $"api/devices?after={Uri.EscapeDataString(after)}";
            var code = await RunAsync(() => http.GetAsync(path, ct), async r =>
            {
                using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false));
                if (first) Console.WriteLine($"{"DEVICE",-40} {"CONNECTED AT",-28} NODE");
                first = false;
                foreach (var d in doc.RootElement.GetProperty("devices").EnumerateArray())
                {
                    Console.WriteLine($"{d.GetProperty("id").GetString(),-40} {d.GetProperty("connectedAt").GetString(),-28} {d.GetProperty("node").GetString()}");
                }
                var next = doc.RootElement.GetProperty("next");
                after = next.ValueKind == JsonValueKind.String ? next.GetString() : null;
            }).ConfigureAwait(false);
            if (code != 0) return code;
        }
        while (after is not null);
        return 0;
    }

    /// <summary>An HttpClient for the server with the API key set, or null when no key is known.</summary>
    internal static HttpClient? CreateClient(ParseResult parse)
    {
        var options = CliConfig.Load(parse.UnmatchedTokens);
        var key = CliConfig.ApiKey(parse.GetValue(CommandLine.ApiKey), options);
        if (key is null) return null;
        var http = new HttpClient { BaseAddress = CliConfig.ServerUrl(parse.GetValue(CommandLine.Server)), Timeout = TimeSpan.FromSeconds(100) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    internal const string NoKey = "No API key: pass --api-key, set DEVICEGATE_API_KEY, or start the server once to generate one.";

    internal static async Task<int> RunAsync(Func<Task<HttpResponseMessage>> call, Func<HttpResponseMessage, Task> onSuccess)
    {
        try
        {
            using var response = await call().ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                var body = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
                return CommandLine.Fail($"{(int)response.StatusCode} {response.ReasonPhrase}: {Describe(body)}");
            }
            await onSuccess(response).ConfigureAwait(false);
            return 0;
        }
        catch (HttpRequestException e)
        {
            return CommandLine.Fail($"Cannot reach the server: {e.Message}");
        }
    }

    /// <summary>A problem-details body as one readable line.</summary>
    private static string Describe(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            var title = doc.RootElement.TryGetProperty("title", out var t) ? t.GetString() : null;
            var detail = doc.RootElement.TryGetProperty("detail", out var d) ? d.GetString() : null;
            return string.Join(": ", new[] { title, detail }.Where(s => !string.IsNullOrEmpty(s)));
        }
        catch (JsonException)
        {
            return body;
        }
    }
}
