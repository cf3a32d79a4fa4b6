using System.CommandLine;
using System.Net.Http.Headers;
using System.Text;

namespace DeviceGate.Cli;

/// <summary><c>rpc</c> (request/reply to a device) and <c>events</c> (the live event stream).</summary>
internal static class StreamCommands
{
    public static IEnumerable<Command> Create()
    {
        var id = new Argument<string>("id") { Description = "Device id" };
        var payload = new Argument<string>("payload") { Description = "Request data: JSON, or text (sent as a JSON string)" };
        var timeout = new Option<double?>("--timeout") { Description = "Seconds to wait for the reply (default 10, at most 60)" };
        var rpc = CommandLine.Client("rpc", "Call a device (envelope mode) and print its reply.");
        rpc.Arguments.Add(id);
        rpc.Arguments.Add(payload);
        rpc.Options.Add(timeout);
        rpc.SetAction((parse, ct) => RpcAsync(parse, parse.GetValue(id)!, parse.GetValue(payload)!, parse.GetValue(timeout), ct));

        var types = new Option<string?>("--types") { Description = "Only these event types, comma-separated (connected,disconnected,message)" };
        var device = new Option<string?>("--device") { Description = "Only events of this device" };
        var events = CommandLine.Client("events", "Print the event stream live (one JSON event per line) until Ctrl-C.");
        events.Options.Add(types);
        events.Options.Add(device);
        events.SetAction((parse, ct) => EventsAsync(parse, parse.GetValue(types), parse.GetValue(device), ct));
        return [rpc, events];
    }

    private static async Task<int> RpcAsync(ParseResult parse, string id, string payload, double? timeout, CancellationToken ct)
    {
        using var http = ApiCommands.CreateClient(parse);
        if (http is null) return CommandLine.Fail(ApiCommands.NoKey);
        if (timeout is { } t) http.Timeout = TimeSpan.FromSeconds(t + 30);
        var isJson = CliConfig.IsJson(payload);
        using var content = new StringContent(payload, Encoding.UTF8, isJson ? "application/json" : "text/plain");
        var path = $"api/devices/{Uri.EscapeDataString(id)}/rpc" + (timeout is { } s ? $"?timeout={s.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "");
        return await ApiCommands.RunAsync(() => http.PostAsync(path, content, ct),
            async r => Console.WriteLine(await r.Content.ReadAsStringAsync(ct).ConfigureAwait(false))).ConfigureAwait(false);
    }

    private static async Task<int> EventsAsync(ParseResult parse, string? types, string? device, CancellationToken ct)
    {
        using var http = ApiCommands.CreateClient(parse);
        if (http is null) return CommandLine.Fail(ApiCommands.NoKey);
        http.Timeout = Timeout.InfiniteTimeSpan;
        var query = new List<string>();
        if (types is not null) query.Add("types=" + Uri.EscapeDataString(types));
        if (device is not null) query.Add("device=" + Uri.EscapeDataString(device));
        var path = "api/events" + (query.Count > 0 ? "?" + string.Join("&", query) : "");
        string? lastId = null;
        while (!ct.IsCancellationRequested)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, path);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
            if (lastId is not null) request.Headers.Add("Last-Event-ID", lastId);
            try
            {
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode) return CommandLine.Fail($"{(int)response.StatusCode} {response.ReasonPhrase}");
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false));
                while (await reader.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
                {
                    if (line.StartsWith("id: ", StringComparison.Ordinal)) lastId = line[4..];
                    else if (line.StartsWith("data: ", StringComparison.Ordinal)) Console.WriteLine(line[6..]);
                }
            }
            catch (OperationCanceledException)
            {
                return 0;
            }
            catch (Exception e) when (e is HttpRequestException or IOException)
            {
                Console.Error.WriteLine($"stream interrupted ({e.Message}); reconnecting");
                await Task.Delay(TimeSpan.FromSeconds(2), ct).ConfigureAwait(false);
            }
        }
        return 0;
    }

}
