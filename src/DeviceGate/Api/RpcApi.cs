using System.Globalization;
using DeviceGate.Api;
using DeviceGate.Connections;
using DeviceGate.Protocol;
using Microsoft.Extensions.Options;
using DeviceGate.Rpc;
using DeviceGate.Sessions;
using DeviceGate.Delivery;

namespace DeviceGate.Api;

/// <summary><c>POST /api/devices/{id}/rpc?timeout=</c>: send an rpc envelope and answer with the device's reply.</summary>
internal static class RpcApi
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapPost("/devices/{id}/rpc", CallAsync).WithName("CallDevice")
            .Produces(200, contentType: "application/json")
            .ProducesProblem(400).ProducesProblem(404).ProducesProblem(409).ProducesProblem(413).ProducesProblem(502).ProducesProblem(504);

    private static async Task<IResult> CallAsync(string id, HttpRequest request, string? timeout, IDeviceRouter router, IOptions<GatewayOptions> options)
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

        RpcOutcome outcome;
        using var span = Telemetry.Source.StartActivity("DeviceGate rpc");
        span?.SetTag("devicegate.device", id);
        try
        {
            outcome = await router.InvokeAsync(id, data, wait, request.HttpContext.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return Results.Empty;
        }
        span?.SetTag("devicegate.rpc.outcome", outcome.Status.ToString().ToLowerInvariant());
        if (outcome.Reply?.ErrorCode is { } code) span?.SetTag("devicegate.rpc.error", code);
        return outcome.Status switch
        {
            RpcStatus.Replied => Answer(outcome.Reply!),
            RpcStatus.NotConnected => Problems.NotConnected(id),
            RpcStatus.RawMode => RawMode(id),
            RpcStatus.Gone => Timeout(id, "The device disconnected before replying."),
            _ => Timeout(id, $"No reply within {wait.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s."),
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
