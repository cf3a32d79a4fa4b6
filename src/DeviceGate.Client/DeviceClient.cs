using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeviceGate.Client;

/// <summary>Connection state of a <see cref="DeviceClient"/>.</summary>
public enum DeviceClientState
{
    /// <summary>Opening the first connection.</summary>
    Connecting,

    /// <summary>Open: messages and rpcs flow.</summary>
    Connected,

    /// <summary>The connection dropped; waiting (backoff) or trying again.</summary>
    Reconnecting,

    /// <summary>Closed with 4000: another connection took this device id over. The client stops.</summary>
    Replaced,

    /// <summary>Disposed, or the first connection was refused.</summary>
    Closed,
}

/// <summary>A message delivered to this device.</summary>
/// <param name="Id">The message id (redeliveries carry the same one; the client drops duplicates).</param>
/// <param name="From">A device id, or <c>server</c>.</param>
/// <param name="Group">The group it was published to, if any.</param>
/// <param name="Data">The JSON data, when it was sent as JSON or text.</param>
/// <param name="Binary">The bytes, when it was sent as binary (<c>dataBase64</c>).</param>
public sealed record DeviceMessage(string Id, string From, string? Group, JsonElement? Data, byte[]? Binary);

/// <summary>The device's desired state, as the gateway delivers it (a <c>state</c> message).</summary>
/// <param name="Version">The desired version; acking the message makes it the document's <c>ackedVersion</c>.</param>
/// <param name="Desired">The whole desired document (a JSON object).</param>
/// <param name="Delta">The members of desired that differ from reported, when this version was written.</param>
/// <param name="MessageId">The state message's id.</param>
public sealed record DesiredState(long Version, JsonElement Desired, JsonElement Delta, string MessageId);

/// <summary>An rpc the device must answer; the handler's return value is the reply's data.</summary>
public sealed record RpcRequest(string Id, JsonElement Data);

/// <summary>Thrown by an rpc handler to answer with <c>error</c> (a 502 for the caller).</summary>
public sealed class RpcException(string code, string message) : Exception(message)
{
    /// <summary>The error code the caller sees in the problem details.</summary>
    public string Code { get; } = code;
}

/// <summary>
/// A device connected to DeviceGate in envelope mode (<c>devicegate.v1.json</c>). It reconnects by itself with
/// exponential backoff and full jitter, honours <c>Retry-After</c>, follows the close-code rules of
/// docs/protocol.md (a 4000 takeover is not fought), acks each message after its handler returns, never hands a
/// redelivered id to the handler twice, and answers rpcs with the rpc handler's result.
/// </summary>
public sealed class DeviceClient : IAsyncDisposable
{
    /// <summary>The envelope subprotocol this client speaks.</summary>
    public const string Subprotocol = "devicegate.v1.json";

    private readonly DeviceClientOptions _options;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);
    private readonly Queue<string> _seenOrder = new();
    private readonly CancellationTokenSource _stop = new();
    private ClientWebSocket? _socket;
    private Task? _loop;
    private int _refs;

    /// <summary>Creates the client; nothing happens until <see cref="StartAsync"/>.</summary>
    public DeviceClient(DeviceClientOptions options, ILogger<DeviceClient>? logger = null)
    {
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>Handles a message; it is acked when this returns (an exception leaves it unacked, so it comes again).</summary>
    public Func<DeviceMessage, CancellationToken, Task>? OnMessage { get; set; }

    /// <summary>
    /// Handles the device's desired state (sent on connect when the device has not acked the latest version, and on
    /// every change while connected; only the latest version is delivered). Acked when this returns, like a message:
    /// an exception leaves it unacked, so it comes again. Without a handler, state messages are acked unseen.
    /// </summary>
    public Func<DesiredState, CancellationToken, Task>? OnDesiredState { get; set; }

    /// <summary>Answers an rpc: the return value becomes the reply's data; throw <see cref="RpcException"/> to reply with an error.</summary>
    public Func<RpcRequest, CancellationToken, Task<object?>>? OnRpc { get; set; }

    /// <summary>The current connection state.</summary>
    public DeviceClientState State { get; private set; } = DeviceClientState.Connecting;

    /// <summary>Raised on every state change (on the receive loop: keep it short).</summary>
    public event Action<DeviceClientState>? StateChanged;

    /// <summary>The close code and reason of the last connection, when the gateway closed it.</summary>
    public (int Code, string? Reason)? LastClose { get; private set; }

    /// <summary>Starts connecting; returns once the first connection is open (or throws if the token is refused).</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _loop = Task.Run(() => RunAsync(first), CancellationToken.None);
        await first.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends <paramref name="data"/> (serialized as JSON) to another device, or to <c>server</c> (the event stream).</summary>
    public Task SendAsync(string to, object? data, CancellationToken cancellationToken = default) =>
        SendEnvelopeAsync(new Dictionary<string, object?> { ["type"] = "send", ["to"] = to, ["data"] = data }, cancellationToken);

    /// <summary>Publishes to every other member of a group.</summary>
    public Task PublishAsync(string group, object? data, CancellationToken cancellationToken = default) =>
        SendEnvelopeAsync(new Dictionary<string, object?> { ["type"] = "publish", ["group"] = group, ["data"] = data }, cancellationToken);

    /// <summary>
    /// Reports this device's own state: <paramref name="patch"/> (a JSON merge patch: members set, null removes) is
    /// merged into its reported state. The gateway answers with the new version; refusals arrive as errors.
    /// </summary>
    public Task ReportStateAsync(object patch, CancellationToken cancellationToken = default) =>
        SendEnvelopeAsync(new Dictionary<string, object?> { ["type"] = "report", ["state"] = patch }, cancellationToken);

    /// <summary>Joins a group.</summary>
    public Task JoinAsync(string group, CancellationToken cancellationToken = default) =>
        SendEnvelopeAsync(new Dictionary<string, object?> { ["type"] = "join", ["group"] = group }, cancellationToken);

    /// <summary>Leaves a group.</summary>
    public Task LeaveAsync(string group, CancellationToken cancellationToken = default) =>
        SendEnvelopeAsync(new Dictionary<string, object?> { ["type"] = "leave", ["group"] = group }, cancellationToken);

    private async Task RunAsync(TaskCompletionSource first)
    {
        var attempt = 0;
        while (!_stop.IsCancellationRequested)
        {
            SetState(attempt == 0 ? DeviceClientState.Connecting : DeviceClientState.Reconnecting);
            TimeSpan? retryAfter = null;
            var immediate = false;
            try
            {
                var token = await _options.TokenProvider(_stop.Token).ConfigureAwait(false);
                var socket = new ClientWebSocket();
                socket.Options.AddSubProtocol(Subprotocol);
                socket.Options.CollectHttpResponseDetails = true;
                socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
                try
                {
                    await socket.ConnectAsync(Endpoint(), _stop.Token).ConfigureAwait(false);
                }
                catch (WebSocketException) when (socket.HttpStatusCode != 0)
                {
                    var status = socket.HttpStatusCode;
                    if (socket.HttpResponseHeaders?.TryGetValue("Retry-After", out var values) == true
                        && int.TryParse(values.FirstOrDefault(), out var seconds)) retryAfter = TimeSpan.FromSeconds(seconds);
                    socket.Dispose();
                    if (status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden or HttpStatusCode.BadRequest)
                    {
                        // Not something waiting fixes; the first start reports it, later ones keep trying with fresh tokens.
                        var error = new InvalidOperationException($"DeviceGate refused the connection: HTTP {(int)status}");
                        if (first.TrySetException(error)) { SetState(DeviceClientState.Closed); return; }
                    }
                    throw;
                }
                _socket = socket;
                attempt = 0;
                SetState(DeviceClientState.Connected);
                first.TrySetResult();
                await ReceiveAsync(socket).ConfigureAwait(false);
                LastClose = socket.CloseStatus is { } code ? ((int)code, socket.CloseStatusDescription) : null;
                if (LastClose is { } close)
                {
                    var (action, minDelay) = CloseRules.For(close.Code, close.Reason);
                    switch (action)
                    {
                        case ReconnectAction.Stop:
                            // Another connection took this id over: fighting it would only bounce both.
                            SetState(DeviceClientState.Replaced);
                            return;
                        case ReconnectAction.Now:
                            // The token provider runs before every attempt: the next one gets a fresh token.
                            immediate = true;
                            break;
                        case ReconnectAction.Long:
                            retryAfter = minDelay;
                            break;
                    }
                }
            }
            catch (Exception e) when (e is WebSocketException or IOException or HttpRequestException)
            {
                _logger.LogDebug("DeviceGate connection failed: {Error}", e.Message);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                break;
            }
            if (_stop.IsCancellationRequested) break;
            attempt++;
            var cap = Math.Min(_options.MaxBackoff.TotalMilliseconds, _options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 20)));
            var delay = immediate ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap);
            if (retryAfter is { } ra && ra > delay) delay = ra;
            try
            {
                await Task.Delay(delay, _stop.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        SetState(DeviceClientState.Closed);
        first.TrySetCanceled();
    }

    private Uri Endpoint()
    {
        var b = new UriBuilder(_options.Server);
        b.Scheme = b.Scheme switch { "https" => "wss", "http" => "ws", var s => s };
        b.Path = b.Path.TrimEnd('/') + "/ws";
        b.Query = "deviceId=" + Uri.EscapeDataString(_options.DeviceId);
        return b.Uri;
    }

    private async Task ReceiveAsync(ClientWebSocket socket)
    {
        var buffer = new byte[16 * 1024];
        using var message = new MemoryStream();
        try
        {
            while (true)
            {
                var r = await socket.ReceiveAsync(buffer, _stop.Token).ConfigureAwait(false);
                if (r.MessageType == WebSocketMessageType.Close) return;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                var bytes = message.ToArray();
                message.SetLength(0);
                await HandleAsync(socket, bytes).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
        }
    }

    private async Task HandleAsync(ClientWebSocket socket, byte[] bytes)
    {
        using var doc = JsonDocument.Parse(bytes);
        var root = doc.RootElement;
        var type = root.GetProperty("type").GetString();
        if (type is "message" or "state")
        {
            var id = root.GetProperty("id").GetString()!;
            if (!_seen.Contains(id))
            {
                Task? handled = null;
                if (type == "message" && OnMessage is { } onMessage)
                {
                    handled = onMessage(new DeviceMessage(id, root.GetProperty("from").GetString()!,
                        root.TryGetProperty("group", out var g) ? g.GetString() : null,
                        root.TryGetProperty("data", out var d) ? d.Clone() : null,
                        root.TryGetProperty("dataBase64", out var b) ? Convert.FromBase64String(b.GetString()!) : null), _stop.Token);
                }
                else if (type == "state" && OnDesiredState is { } onState)
                {
                    handled = onState(new DesiredState(root.GetProperty("version").GetInt64(), root.GetProperty("desired").Clone(), root.GetProperty("delta").Clone(), id), _stop.Token);
                }
                if (handled is not null)
                {
                    try
                    {
                        await handled.ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        _logger.LogWarning(e, "Handler failed for {MessageType} {MessageId}; it stays unacked", type, id);
                        return;
                    }
                }
                Remember(id);
            }
            // Acked after the handler returned; a duplicate is acked again so the gateway stops resending it.
            await WriteAsync(socket, JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, object?> { ["type"] = "ack", ["id"] = id })).ConfigureAwait(false);
        }
        else if (type == "rpc")
        {
            var id = root.GetProperty("id").GetString()!;
            var request = new RpcRequest(id, root.TryGetProperty("data", out var d) ? d.Clone() : default);
            _ = Task.Run(() => AnswerAsync(socket, request));
        }
    }

    private async Task AnswerAsync(ClientWebSocket socket, RpcRequest request)
    {
        Dictionary<string, object?> reply;
        try
        {
            var data = OnRpc is { } handler ? await handler(request, _stop.Token).ConfigureAwait(false) : null;
            reply = new() { ["type"] = "reply", ["id"] = request.Id, ["data"] = data };
        }
        catch (RpcException e)
        {
            reply = new() { ["type"] = "reply", ["id"] = request.Id, ["error"] = new Dictionary<string, string> { ["code"] = e.Code, ["message"] = e.Message } };
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            reply = new() { ["type"] = "reply", ["id"] = request.Id, ["error"] = new Dictionary<string, string> { ["code"] = "handler_failed", ["message"] = e.Message } };
        }
        await WriteAsync(socket, JsonSerializer.SerializeToUtf8Bytes(reply)).ConfigureAwait(false);
    }

    private void Remember(string id)
    {
        if (!_seen.Add(id)) return;
        _seenOrder.Enqueue(id);
        while (_seenOrder.Count > _options.DeduplicationWindow) _seen.Remove(_seenOrder.Dequeue());
    }

    private async Task SendEnvelopeAsync(Dictionary<string, object?> envelope, CancellationToken cancellationToken)
    {
        var socket = _socket ?? throw new InvalidOperationException("Not connected yet: call StartAsync first.");
        await WriteAsync(socket, JsonSerializer.SerializeToUtf8Bytes(envelope), cancellationToken).ConfigureAwait(false);
    }

    private async Task WriteAsync(ClientWebSocket socket, byte[] bytes, CancellationToken cancellationToken = default)
    {
        await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (socket.State == WebSocketState.Open) await socket.SendAsync(bytes, WebSocketMessageType.Text, true, cancellationToken).ConfigureAwait(false);
        }
        catch (WebSocketException)
        {
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private void SetState(DeviceClientState state)
    {
        if (State == state) return;
        State = state;
        StateChanged?.Invoke(state);
    }

    /// <summary>Closes the connection (1000) and stops reconnecting.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Increment(ref _refs) != 1) return;
        if (_socket is { State: WebSocketState.Open } s)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await s.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }
        }
        _stop.Cancel();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _socket?.Dispose();
        _stop.Dispose();
    }
}
