using System.Collections.Concurrent;
using System.Text.Json;

namespace DeviceGate.Rpc;

/// <summary>A device's answer to an rpc: its data as JSON text, or its error.</summary>
public sealed record RpcReply(byte[]? Json, string? ErrorCode, string? ErrorMessage);

/// <summary>Pending rpcs by id, each waiting for the reply of the one device it was sent to.</summary>
internal sealed class RpcCoordinator(GatewayMetrics metrics) : Sessions.ISessionObserver
{
    private readonly ConcurrentDictionary<string, Pending> _pending = new(StringComparer.Ordinal);

    private sealed record Pending(object Connection, TaskCompletionSource<RpcReply?> Reply);

    /// <summary>
    /// Registers an rpc to one connection before it is sent (a reply must come from that same connection, not from a
    /// later one of the same device). The task yields null if the connection ended without answering.
    /// </summary>
    public (string Id, Task<RpcReply?> Reply) Begin(object connection, string? id = null)
    {
        id ??= Guid.CreateVersion7().ToString();
        var pending = new Pending(connection, new TaskCompletionSource<RpcReply?>(TaskCreationOptions.RunContinuationsAsynchronously));
        _pending[id] = pending;
        return (id, pending.Reply.Task);
    }

    private readonly ConcurrentDictionary<string, TaskCompletionSource<(RpcReply? Reply, string? Failure)>> _remote = new(StringComparer.Ordinal);

    /// <summary>An rpc this node's API waits on while another node runs it. Failure: not_connected, raw, gone.</summary>
    public Task<(RpcReply? Reply, string? Failure)> BeginRemote(string id) =>
        _remote.GetOrAdd(id, _ => new TaskCompletionSource<(RpcReply?, string?)>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void CompleteRemote(string id, RpcReply? reply, string? failure)
    {
        if (_remote.TryRemove(id, out var tcs)) tcs.TrySetResult((reply, failure));
        else metrics.LateReplies.Add(1);
    }

    public void EndRemote(string id) => _remote.TryRemove(id, out _);

    /// <summary>Forgets an rpc that timed out or failed to send; a reply after this is late.</summary>
    public void End(string id) => _pending.TryRemove(id, out _);

    /// <summary>A device's reply envelope. False when no rpc of this device waits for that id (late or foreign).</summary>
    public bool Complete(object connection, string id, JsonElement data, JsonElement error)
    {
        if (!_pending.TryGetValue(id, out var p) || !ReferenceEquals(p.Connection, connection) || !_pending.TryRemove(new KeyValuePair<string, Pending>(id, p)))
        {
            metrics.LateReplies.Add(1);
            return false;
        }
        RpcReply reply;
        if (error.ValueKind == JsonValueKind.Object)
        {
            var code = JsonText.StringOrNull(error, "code"u8);
            var message = JsonText.StringOrNull(error, "message"u8);
            reply = new RpcReply(null, code ?? "error", message ?? "");
        }
        else
        {
            reply = new RpcReply(data.ValueKind == JsonValueKind.Undefined ? "null"u8.ToArray() : System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(data).ToArray(), null, null);
        }
        return p.Reply.TrySetResult(reply);
    }

    /// <summary>A reply that came as a whole (MQTT 5: correlation data, payload, an error user property).</summary>
    public bool Complete(object connection, string id, RpcReply reply)
    {
        if (!_pending.TryGetValue(id, out var p) || !ReferenceEquals(p.Connection, connection) || !_pending.TryRemove(new KeyValuePair<string, Pending>(id, p)))
        {
            metrics.LateReplies.Add(1);
            return false;
        }
        return p.Reply.TrySetResult(reply);
    }

    /// <summary>The session is closing: its pending rpcs will not be answered.</summary>
    public void OnClosing(Sessions.DeviceSession session) => ConnectionGone(session);

    private void ConnectionGone(object connection)
    {
        if (_pending.IsEmpty) return;
        foreach (var (id, p) in _pending)
        {
            if (ReferenceEquals(p.Connection, connection) && _pending.TryRemove(new KeyValuePair<string, Pending>(id, p))) p.Reply.TrySetResult(null);
        }
    }
}
