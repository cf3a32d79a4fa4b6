using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace DeviceGate.Cli;

/// <summary><c>send</c>, <c>broadcast</c>, <c>devices</c>, <c>state</c> and <c>tags</c>: thin wrappers over the HTTP API.</summary>
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

        var tagFilter = new Option<string[]>("--tag") { Description = "Only devices with this tag (key:value; repeat for several)", AllowMultipleArgumentsPerToken = false };
        var all = new Option<bool>("--all") { Description = "Every known device, connected or not" };
        var devices = CommandLine.Client("devices", "List connected devices (with --all every known one).");
        devices.Options.Add(tagFilter);
        devices.Options.Add(all);
        devices.SetAction((parse, ct) => ListDevicesAsync(parse, parse.GetValue(tagFilter) ?? [], parse.GetValue(all), ct));

        var stateId = new Argument<string>("id") { Description = "Device id" };
        var desired = new Option<string?>("--desired") { Description = "A JSON merge patch for the desired state (prints the document after it)" };
        var state = CommandLine.Client("state", "Print a device's state document (desired, reported, delta, versions), or patch its desired state.");
        state.Arguments.Add(stateId);
        state.Options.Add(desired);
        state.SetAction((parse, ct) => StateAsync(parse, parse.GetValue(stateId)!, parse.GetValue(desired), ct));

        var tagsId = new Argument<string>("id") { Description = "Device id" };
        var pairs = new Argument<string[]>("pairs") { Description = "key=value pairs (none: removes every tag)", Arity = ArgumentArity.ZeroOrMore };
        var tags = CommandLine.Client("tags", "Set a device's tags (replacing the ones it has), then print the device.");
        tags.Arguments.Add(tagsId);
        tags.Arguments.Add(pairs);
        tags.SetAction((parse, ct) => TagsAsync(parse, parse.GetValue(tagsId)!, parse.GetValue(pairs) ?? [], ct));

        return [send, broadcast, devices, state, tags];
    }

    private static async Task<int> TagsAsync(ParseResult parse, string id, string[] pairs, CancellationToken ct)
    {
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var eq = pair.IndexOf('=');
            if (eq <= 0) return CommandLine.Fail($"'{pair}' is not key=value.");
            tags[pair[..eq]] = pair[(eq + 1)..];
        }
        using var http = CreateClient(parse);
        if (http is null) return CommandLine.Fail(NoKey);
        var path = $"api/devices/{Uri.EscapeDataString(id)}";
        var set = await RunAsync(() => http.PutAsync(path + "/tags", new StringContent(JsonSerializer.Serialize(tags), Encoding.UTF8, "application/json"), ct),
            _ => Task.CompletedTask).ConfigureAwait(false);
        if (set != 0) return set;
        return await RunAsync(() => http.GetAsync(path, ct), async r => Console.WriteLine(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false))).ConfigureAwait(false);
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

    private static async Task<int> ListDevicesAsync(ParseResult parse, string[] tags, bool all, CancellationToken ct)
    {
        using var http = CreateClient(parse);
        if (http is null) return CommandLine.Fail(NoKey);
        string? after = null;
        var first = true;
        var filter = string.Concat(tags.Select(t => "&tag=" + Uri.EscapeDataString(t))) + (all ? "&online=false" : "");
        do
        {
            var path = "api/devices?limit=1000" + filter + (after is null ? "" : $"&after={Uri.EscapeDataString(after)}");
            var code = await RunAsync(() => http.GetAsync(path, ct), async r =>
            {
                using var doc = JsonDocument.Parse(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false));
                if (first) Console.WriteLine($"{"DEVICE",-40} {"CONNECTED AT",-28} NODE");
                first = false;
                foreach (var d in doc.RootElement.GetProperty("devices").EnumerateArray())
                {
                    var at = d.GetProperty("connectedAt");
                    Console.WriteLine($"{d.GetProperty("id").GetString(),-40} {(at.ValueKind == JsonValueKind.String ? at.GetString() : "offline"),-28} {(d.TryGetProperty("node", out var n) ? n.GetString() : "")}");
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
