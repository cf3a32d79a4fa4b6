using System.Globalization;
using DeviceGate.Api;
using DeviceGate.Connections;
using DeviceGate.Protocol;
using Microsoft.Extensions.Options;
using DeviceGate.Rpc;
using DeviceGate.Sessions;

namespace DeviceGate.Api;

/// <summary><c>POST /api/devices/{id}/rpc?timeout=</c>: send an rpc envelope and answer with the device's reply.</summary>
internal static class RpcApi
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapPost("/devices/{id}/rpc", CallAsync).WithName("CallDevice")
            .Produces(200, contentType: "application/json")
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(502).ProducesProblem(504);

    private static async Task<IResult> CallAsync(string id, HttpRequest request, string? timeout, ConnectionRegistry registry, RpcCoordinator rpcs,
        Sessions.IPresence presence, Cluster.IClusterBus bus, NodeIdentity node, IOptions<GatewayOptions> options, GatewayMetrics metrics, TimeProvider time)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        var o = options.Value.Rpc;
        var wait = o.DefaultTimeout;
        if (timeout is not null)
        {
            if (!double.TryParse(timeout, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || !double.IsFinite(seconds)
                || seconds <= 0 || seconds > o.MaxTimeout.TotalSeconds)
            {
                return Problems.BadQuery("timeout", $"timeout is in seconds, more than 0 and at most {o.MaxTimeout.TotalSeconds}.");
            }
            wait = TimeSpan.FromSeconds(seconds);
        }
        var (data, problem) = await MessageBody.ReadAsync(request, options.Value.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;

        if (bus.IsClustered && await presence.LocateAsync(id).ConfigureAwait(false) is { } where && where.Node != node.Id)
        {
            return await CallRemoteAsync(id, where.Node, data, wait, rpcs, bus, time, request.HttpContext.RequestAborted).ConfigureAwait(false);
        }
        if (!registry.TryGet(id, out var connection) || connection.IsClosing) return Problems.NotConnected(id);
        if (connection.Mode != ConnectionMode.Envelope) return RawMode(id);

        var (rpcId, reply) = rpcs.Begin(connection);
        if (connection.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Rpc(rpcId, data))) != EnqueueResult.Queued)
        {
            rpcs.End(rpcId);
            return Problems.NotConnected(id);
        }
        metrics.MessagesDelivered.WithLabels(MessageKinds.Rpc).Inc();
        RpcReply? answer;
        try
        {
            answer = await reply.WaitAsync(wait, time, request.HttpContext.RequestAborted).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            rpcs.End(rpcId);
            return Timeout(id, $"No reply within {wait.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s.");
        }
        catch (OperationCanceledException)
        {
            rpcs.End(rpcId);
            return Results.Empty;
        }
        return answer is null ? Timeout(id, "The device disconnected before replying.") : Answer(answer);
    }

    /// <summary>The device is on another node: that node runs the rpc and sends the outcome back over the bus.</summary>
    private static async Task<IResult> CallRemoteAsync(string id, string owner, MessageData data, TimeSpan wait, RpcCoordinator rpcs,
        Cluster.IClusterBus bus, TimeProvider time, CancellationToken aborted)
    {
        var rpcId = Guid.CreateVersion7().ToString();
        var outcome = rpcs.BeginRemote(rpcId);
        if (!await bus.RpcAsync(owner, id, rpcId, data, wait).ConfigureAwait(false))
        {
            rpcs.EndRemote(rpcId);
            return Problems.NotConnected(id);
        }
        (RpcReply? Reply, string? Failure) result;
        try
        {
            result = await outcome.WaitAsync(wait, time, aborted).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            rpcs.EndRemote(rpcId);
            return Timeout(id, $"No reply within {wait.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s.");
        }
        catch (OperationCanceledException)
        {
            rpcs.EndRemote(rpcId);
            return Results.Empty;
        }
        return result.Failure switch
        {
            "not_connected" => Problems.NotConnected(id),
            "raw" => RawMode(id),
            "gone" => Timeout(id, "The device disconnected before replying."),
            _ => Answer(result.Reply!),
        };
    }

    private static IResult Answer(RpcReply answer) => answer.ErrorCode is not null
        ? Results.Problem(statusCode: 502, title: "Device replied with an error", detail: answer.ErrorMessage, type: "device_error",
            extensions: new Dictionary<string, object?> { ["code"] = answer.ErrorCode, ["message"] = answer.ErrorMessage })
        : Results.Bytes(answer.Json!, "application/json");

    private static IResult RawMode(string id) => Results.Problem(statusCode: 409, title: "Device cannot answer rpcs",
        detail: $"Device '{id}' is connected in raw mode; rpcs need the {Subprotocols.EnvelopeJson} subprotocol.", type: "raw_mode");

    private static IResult Timeout(string id, string detail) => Results.Problem(statusCode: 504, title: "Device did not reply",
        detail: $"Device '{id}': {detail}", type: "rpc_timeout");
}
