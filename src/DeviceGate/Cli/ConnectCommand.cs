using System.CommandLine;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using DeviceGate.Auth;

namespace DeviceGate.Cli;

/// <summary>
/// <c>connect</c>: an interactive device. Prints every message that arrives (one per line on stdout) and sends each
/// line typed as a text message; end of input closes with 1000. Status lines go to stderr. With <c>--envelope</c> it
/// speaks devicegate.v1.json: typed JSON objects go as they are, other lines as a send to <c>server</c>, and with
/// <c>--reply</c> every rpc is answered automatically.
/// </summary>
internal static class ConnectCommand
{
    private static readonly SemaphoreSlim SendLock = new(1, 1);

    public static Command Create()
    {
        var device = new Option<string?>("--device") { Description = "Device id to connect as" };
        var token = new Option<string?>("--token") { Description = "Device token (default: $DEVICEGATE_TOKEN, else one minted from the local secret)" };
        var echo = new Option<bool>("--echo") { Description = "Connect to the echo endpoint /ws/echo instead" };
        var envelope = new Option<bool>("--envelope") { Description = "Speak the devicegate.v1.json envelope protocol (typed text goes to 'server')" };
        var reply = new Option<string?>("--reply") { Description = "Answer every rpc with this data (JSON, or text as a JSON string); implies --envelope" };
        var mqtt = new Option<bool>("--mqtt") { Description = "Connect over MQTT 5 (TCP) instead: messages from devices/<id>/messages, typed lines to devices/<id>/events" };
        var mqttPort = new Option<int>("--mqtt-port") { Description = "The gateway's MQTT TCP port (DeviceGate:Mqtt:TcpPort)", DefaultValueFactory = _ => Defaults.MqttTcpPort };
        var command = CommandLine.Client("connect", "Connect as a device: print what arrives, send each line typed.");
        command.Options.Add(device);
        command.Options.Add(token);
        command.Options.Add(echo);
        command.Options.Add(envelope);
        command.Options.Add(reply);
        command.Options.Add(mqtt);
        command.Options.Add(mqttPort);
        command.SetAction(async (parse, ct) =>
        {
            var id = parse.GetValue(device);
            var isEcho = parse.GetValue(echo);
            if (id is null && !isEcho) return CommandLine.Fail("Pass --device <id> (or --echo).");
            var server = CliConfig.ServerUrl(parse.GetValue(CommandLine.Server));
            var ws = new UriBuilder(server) { Scheme = server.Scheme == "https" ? "wss" : "ws" };
            ws.Path = ws.Path.TrimEnd('/') + (isEcho ? "/ws/echo" : "/ws");
            if (!isEcho) ws.Query = "deviceId=" + Uri.EscapeDataString(id!);

            string? jwt = null;
            if (!isEcho)
            {
                jwt = parse.GetValue(token) ?? Environment.GetEnvironmentVariable("DEVICEGATE_TOKEN");
                if (jwt is null)
                {
                    try
                    {
                        var options = CliConfig.Load(parse.UnmatchedTokens);
                        jwt = new DeviceTokens(GatewaySecrets.Load(options.Auth, options.Store.Path, withApiKeys: false), TimeProvider.System).Mint(id!, TimeSpan.FromHours(12));
                    }
                    catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
                    {
                        return CommandLine.Fail($"No token: pass --token or set DEVICEGATE_TOKEN ({e.Message}).");
                    }
                }
            }
            var replyData = parse.GetValue(reply) is { } r ? (CliConfig.IsJson(r) ? r : JsonSerializer.Serialize(r)) : null;
            if (parse.GetValue(mqtt))
            {
                if (isEcho) return CommandLine.Fail("--mqtt connects a device; there is no MQTT echo.");
                return await MqttConnect.RunAsync(server.Host, parse.GetValue(mqttPort), id!, jwt!, replyData, ct).ConfigureAwait(false);
            }
            var useEnvelope = !isEcho && (parse.GetValue(envelope) || replyData is not null);
            return await RunAsync(ws.Uri, jwt, useEnvelope, replyData, ct).ConfigureAwait(false);
        });
        return command;
    }

    private static async Task<int> RunAsync(Uri uri, string? token, bool envelope, string? replyData, CancellationToken ct)
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        if (envelope) socket.Options.AddSubProtocol(Protocol.Subprotocols.EnvelopeJson);
        if (token is not null) socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        try
        {
            await socket.ConnectAsync(uri, ct).ConfigureAwait(false);
        }
        catch (WebSocketException e)
        {
            var status = socket.HttpStatusCode != 0 ? $"HTTP {(int)socket.HttpStatusCode}" : e.Message;
            return CommandLine.Fail($"Could not connect to {uri.GetLeftPart(UriPartial.Path)}: {status}");
        }
        Console.Error.WriteLine($"connected to {uri.GetLeftPart(UriPartial.Path)}; type a line to send it, end input (Ctrl-D) to close");

        var receiving = ReceiveAsync(socket, envelope, replyData);
        var input = Task.Run(() => SendLinesAsync(socket, envelope, ct), CancellationToken.None);
        var first = await Task.WhenAny(receiving, input).ConfigureAwait(false);
        if (first == input && socket.State == WebSocketState.Open)
        {
            // End of input: close politely and wait (bounded) for the server's answer.
            try
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", CancellationToken.None).ConfigureAwait(false);
                await receiving.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is WebSocketException or TimeoutException)
            {
                socket.Abort();
            }
        }
        await receiving.ConfigureAwait(false);
        Console.Error.WriteLine($"closed: {(int?)socket.CloseStatus ?? 1006} {socket.CloseStatusDescription}");
        return 0;
    }

    private static async Task SendAsync(ClientWebSocket socket, string text, CancellationToken ct)
    {
        // The receive loop (rpc replies) and the input loop both send; a WebSocket takes one send at a time.
        await SendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, ct).ConfigureAwait(false);
        }
        finally
        {
            SendLock.Release();
        }
    }

    private static (string? Type, string? Id) TypeAndId(string envelope)
    {
        try
        {
            using var doc = JsonDocument.Parse(envelope);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return (null, null);
            var type = root.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            var id = root.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.String ? i.GetString() : null;
            return (type, id);
        }
        catch (JsonException)
        {
            return (null, null);
        }
    }


    private static async Task ReceiveAsync(ClientWebSocket socket, bool envelope, string? replyData)
    {
        var buffer = new byte[16 * 1024];
        using var message = new MemoryStream();
        try
        {
            while (true)
            {
                var r = await socket.ReceiveAsync(buffer, CancellationToken.None).ConfigureAwait(false);
                if (r.MessageType == WebSocketMessageType.Close) return;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                var text = r.MessageType == WebSocketMessageType.Text ? Encoding.UTF8.GetString(message.GetBuffer(), 0, (int)message.Length) : null;
                Console.WriteLine(text ?? $"[binary {message.Length} bytes] {Convert.ToBase64String(message.GetBuffer(), 0, (int)message.Length)}");
                message.SetLength(0);
                if (envelope && text is not null && TypeAndId(text) is ({ } type, { } id))
                {
                    // Like an SDK would: ack every message and desired state once printed, answer rpcs when --reply is given.
                    if (type is "message" or "state") await SendAsync(socket, $"{{\"type\":\"ack\",\"id\":{JsonSerializer.Serialize(id)}}}", CancellationToken.None).ConfigureAwait(false);
                    else if (type == "rpc" && replyData is not null) await SendAsync(socket, $"{{\"type\":\"reply\",\"id\":{JsonSerializer.Serialize(id)},\"data\":{replyData}}}", CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
        catch (WebSocketException)
        {
        }
    }

    private static async Task SendLinesAsync(ClientWebSocket socket, bool envelope, CancellationToken ct)
    {
        try
        {
            while (await Console.In.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
            {
                if (socket.State != WebSocketState.Open) return;
                // In envelope mode a typed JSON object is an envelope; anything else is sent to the server (the event stream).
                if (envelope && !line.TrimStart().StartsWith('{')) line = $"{{\"type\":\"send\",\"to\":\"server\",\"data\":{JsonSerializer.Serialize(line)}}}";
                await SendAsync(socket, line, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
        }
    }
}
