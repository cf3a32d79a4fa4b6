using System.Globalization;
using System.Text.Json;
using DeviceGate.State;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Api;

/// <summary>
/// <c>/api/devices/{id}/state</c>: the device's desired and reported state (issue 15). GET the document (with an
/// <c>ETag</c> of the desired version), PATCH a part with a JSON merge patch, PUT desired whole; <c>If-Match</c> makes a
/// write conditional on the desired (or reported) version.
/// </summary>
internal static class StateApi
{
    public const string MessageIdHeader = "DeviceGate-Message-Id";

    public static void Map(RouteGroupBuilder api)
    {
        api.MapGet("/devices/{id}/state", GetAsync).WithName("GetDeviceState").Produces(200, contentType: "application/json").ProducesProblem(400);
        api.MapMethods("/devices/{id}/state/desired", ["PATCH"], (string id, HttpContext c, DeviceStates s, IOptions<GatewayOptions> o) => ChangeAsync(id, c, s, o, StatePart.Desired, replace: false))
            .WithName("PatchDesiredState").Produces(200, contentType: "application/json").ProducesProblem(400).ProducesProblem(412).ProducesProblem(413).ProducesProblem(503);
        api.MapPut("/devices/{id}/state/desired", (string id, HttpContext c, DeviceStates s, IOptions<GatewayOptions> o) => ChangeAsync(id, c, s, o, StatePart.Desired, replace: true))
            .WithName("PutDesiredState").Produces(200, contentType: "application/json").ProducesProblem(400).ProducesProblem(412).ProducesProblem(413).ProducesProblem(503);
        api.MapMethods("/devices/{id}/state/reported", ["PATCH"], (string id, HttpContext c, DeviceStates s, IOptions<GatewayOptions> o) => ChangeAsync(id, c, s, o, StatePart.Reported, replace: false))
            .WithName("PatchReportedState").Produces(200, contentType: "application/json").ProducesProblem(400).ProducesProblem(412).ProducesProblem(413).ProducesProblem(503);
    }

    private static async Task<IResult> GetAsync(string id, HttpContext context, DeviceStates states)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        return Answer(context, await states.GetAsync(id).ConfigureAwait(false));
    }

    private static async Task<IResult> ChangeAsync(string id, HttpContext context, DeviceStates states, IOptions<GatewayOptions> options, StatePart part, bool replace)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        var max = options.Value.State.MaxBytes;
        long? ifMatch = null;
        var header = context.Request.Headers.IfMatch.ToString();
        if (header.Length > 0)
        {
            if (!long.TryParse(header.Trim().Trim('"'), NumberStyles.None, CultureInfo.InvariantCulture, out var version)) return VersionMismatch(header);
            ifMatch = version;
        }
        // A patch may be larger than its result (it can remove members), but not beyond a message's limit.
        var body = await MessageBody.ReadBytesAsync(context.Request, Math.Max(max * 2L, options.Value.Limits.MaxMessageBytes)).ConfigureAwait(false);
        if (body is null) return TooLarge(max);
        if (!StatePatch.TryParseObject(body, out var patch, out var why)) return new ApiProblem(400, "invalid_state", "Invalid state", why!);
        var (outcome, document, messageId) = await states.ChangeAsync(id, part, patch!, replace, ifMatch).ConfigureAwait(false);
        // The state message this desired change made, for GET /api/messages/{id}.
        if (messageId is not null) context.Response.Headers[MessageIdHeader] = messageId;
        return outcome switch
        {
            StateChangeOutcome.VersionMismatch => VersionMismatch(header, document),
            StateChangeOutcome.TooLarge => TooLarge(max),
            _ => Answer(context, document),
        };
    }

    private static IResult Answer(HttpContext context, StateDocument d)
    {
        context.Response.Headers.ETag = $"\"{d.DesiredVersion.ToString(CultureInfo.InvariantCulture)}\"";
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("device", d.Device);
            w.WritePropertyName("desired");
            d.Desired.WriteTo(w);
            w.WritePropertyName("reported");
            d.Reported.WriteTo(w);
            w.WritePropertyName("delta");
            d.Delta.WriteTo(w);
            w.WriteNumber("desiredVersion", d.DesiredVersion);
            w.WriteNumber("reportedVersion", d.ReportedVersion);
            w.WriteNumber("ackedVersion", d.AckedVersion);
            if (d.DesiredAt is { } da) w.WriteString("desiredAt", Timestamps.Iso(da)); else w.WriteNull("desiredAt");
            if (d.ReportedAt is { } ra) w.WriteString("reportedAt", Timestamps.Iso(ra)); else w.WriteNull("reportedAt");
            w.WriteEndObject();
        }
        return Results.Bytes(buffer.WrittenSpan.ToArray(), "application/json");
    }

    private static ApiProblem VersionMismatch(string header, StateDocument? current = null) =>
        new(412, "version_mismatch", "Version mismatch",
            $"If-Match {header} does not name the current version{(current is null ? "" : $" ({current.DesiredVersion} desired, {current.ReportedVersion} reported)")}; nothing changed. Read the state again and retry.");

    private static ApiProblem TooLarge(int max) => new(413, "state_too_large", "State too large",
        $"A state part is at most DeviceGate:State:MaxBytes ({max} bytes of compact JSON); nothing changed.");
}
