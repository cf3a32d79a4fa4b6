using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Events;
using DeviceGate.Protocol;
using DeviceGate.Rpc;
using DeviceGate.Storage;
using DeviceGate.Sessions;

namespace DeviceGate.Connections;

/// <summary>
/// What an envelope-mode device sends: send, publish, join, leave, reply, ack. A bad envelope is answered with an
/// <c>error</c> envelope and the connection stays open; only a device that keeps erring is closed (1008 policy).
/// </summary>
internal sealed class EnvelopeHandler(
    Delivery.DeliveryService delivery,
    IGroupDirectory groups,
    Storage.IDeviceDirectory directory,
    State.DeviceStates states,
    EventHub events,
    RpcCoordinator rpcs,
    GatewayMetrics metrics,
    Microsoft.Extensions.Options.IOptions<GatewayOptions> options,
    ILogger<EnvelopeHandler> logger)
{
    private readonly TimeSpan maxTtl = options.Value.Delivery.MaxTtl;
    private readonly int maxGroups = options.Value.Limits.MaxGroupsPerDevice;
    private readonly bool propagateTrace = options.Value.Telemetry.PropagateToDevices;

    public void Handle(DeviceSession c, ReadOnlySpan<byte> payload, WebSocketMessageType type)
    {
        metrics.MessagesReceived.Add("envelope");
        if (type == WebSocketMessageType.Binary)
        {
            Fail(c, ErrorCodes.BinaryNotSupported, "Envelope mode takes JSON text messages; send binary as dataBase64 through the API or use raw mode.", null);
            return;
        }
        // The payload lives in the read loop's pooled buffer; the parsed document must own its bytes.
        if (!EnvelopeReader.TryParse(payload.ToArray(), out var envelope, out var problem))
        {
            Fail(c, problem.Code, problem.Message, problem.Ref);
            return;
        }
        using (envelope)
        {
            switch (envelope!.Type)
            {
                case EnvelopeTypes.Send: Traced(c, envelope, Send); break;
                case EnvelopeTypes.Publish: Traced(c, envelope, Publish); break;
                case EnvelopeTypes.Join: Join(c, envelope, join: true); break;
                case EnvelopeTypes.Leave: Join(c, envelope, join: false); break;
                case EnvelopeTypes.Reply: Reply(c, envelope); break;
                case EnvelopeTypes.Report: Report(c, envelope); break;
                case EnvelopeTypes.Ack:
                    if (envelope.Id is null) Fail(c, ErrorCodes.MissingField, "'id' is required: the id of the message being acked.", envelope.Ref);
                    else c.Lane?.Ack(envelope.Id);
                    break;
                default:
                    Fail(c, ErrorCodes.UnknownType, $"Unknown envelope type '{envelope.Type}'. Devices send: send, publish, join, leave, reply, ack, report.", envelope.Ref);
                    break;
            }
        }
    }

    /// <summary>
    /// A send or publish, in the trace its <c>traceparent</c> names when the gateway propagates traces: a span that
    /// ends when the send is done (its store write and routing may finish after the read loop moved on).
    /// </summary>
    private void Traced(DeviceSession c, InboundEnvelope e, Func<DeviceSession, InboundEnvelope, Task> send)
    {
        if (!propagateTrace || e.TraceParent.ValueKind == JsonValueKind.Undefined)
        {
            _ = send(c, e);
            return;
        }
        if (!JsonText.TryGetString(e.TraceParent, out var text) || !Telemetry.TryParseTraceParent(text, out var parent))
        {
            Fail(c, ErrorCodes.InvalidField, "'traceparent' must be a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>.", e.Ref);
            return;
        }
        // Becoming current here lasts beyond this synchronous method: the previous (none) is put back before returning.
        var previous = Activity.Current;
        var span = Telemetry.Continue("DeviceGate device send", parent, c.DeviceId);
        Task sending;
        try
        {
            sending = send(c, e);
        }
        catch
        {
            span.Dispose();
            throw;
        }
        finally
        {
            Activity.Current = previous;
        }
        if (sending.IsCompleted) span.Dispose();
        else sending.ContinueWith(static (_, s) => ((Activity)s!).Dispose(), span, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private Task Send(DeviceSession c, InboundEnvelope e)
    {
        if (e.To is null) { Fail(c, ErrorCodes.MissingField, "'to' is required.", e.Ref); return Task.CompletedTask; }
        if (!DeviceId.IsValid(e.To)) { Fail(c, ErrorCodes.InvalidField, "'to' is not a valid device id.", e.Ref); return Task.CompletedTask; }
        if (e.Data.ValueKind == JsonValueKind.Undefined) { Fail(c, ErrorCodes.MissingField, "'data' is required.", e.Ref); return Task.CompletedTask; }
        if (!c.Permissions.MaySendTo(e.To)) { Fail(c, ErrorCodes.Forbidden, $"This device's token does not allow sending to '{e.To}'.", e.Ref); return Task.CompletedTask; }

        var data = MessageData.FromEnvelope(e.Data);
        if (e.To == DeviceId.Server)
        {
            // The trace the envelope continued (only ever set when the gateway propagates traces) goes on to the event.
            events.Message(c.DeviceId, data, propagateTrace ? Telemetry.TraceParent(Activity.Current?.Context ?? default) : null);
            if (e.Ref is not null) c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Sent(e.Ref, DeviceMessage.NewId(), "sent")));
            return Task.CompletedTask;
        }
        if (!TryTtl(c, e, out var ttl)) return Task.CompletedTask;
        // A durable send waits for the store; the read loop does not: the answer follows when it is written.
        if (ttl > TimeSpan.Zero) return SendDurableAsync(c, e.To, data, ttl, e.Ref);
        return SendNowAsync(c, e.To, new DeviceMessage(DeviceMessage.NewId(), c.DeviceId, null, data), e.Ref);
    }

    /// <summary>On one node this completes before returning (order kept); in a cluster the answer follows.</summary>
    private async Task SendNowAsync(DeviceSession c, string to, DeviceMessage message, string? @ref)
    {
        var result = await delivery.SendNowAsync(to, message).ConfigureAwait(false);
        if (result.Outcome != Delivery.SendOutcome.Sent)
        {
            Fail(c, ErrorCodes.Offline, $"Device '{to}' is not connected (send with a ttl to have it queued).", @ref);
            return;
        }
        if (@ref is not null) c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Sent(@ref, result.Id, result.Status)));
    }

    private async Task SendDurableAsync(DeviceSession c, string to, MessageData data, TimeSpan ttl, string? @ref)
    {
        // A device may fill the store only for devices the backend knows (connected once, put in a group): made-up ids
        // are refused, and it never makes a device known itself.
        bool known;
        try
        {
            (known, _) = await directory.LookupAsync(to).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Unavailable(c, @ref);
            return;
        }
        if (!known)
        {
            Fail(c, ErrorCodes.Offline, $"Device '{to}' is not known to the gateway; messages with a ttl can only be queued for devices it knows.", @ref);
            return;
        }
        if (!c.Budget.TryTakeDurable(1))
        {
            QuotaExceeded(c, @ref);
            return;
        }
        var result = await delivery.SendAsync(new SendRequest(to, data, ttl, null), c.DeviceId).ConfigureAwait(false);
        switch (result.Outcome)
        {
            case Delivery.SendOutcome.Sent or Delivery.SendOutcome.Queued:
                if (@ref is not null) c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Sent(@ref, result.Id, result.Status)));
                break;
            case Delivery.SendOutcome.OutboxFull:
                c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(ErrorCodes.OutboxFull, $"Device '{to}' has too many queued messages; try later.", @ref)));
                break;
            case Delivery.SendOutcome.QuotaExceeded:
                QuotaExceeded(c, @ref);
                break;
            default:
                Unavailable(c, @ref);
                break;
        }
    }

    /// <summary>The same ttl rule as the API's: above DeviceGate:Delivery:MaxTtl is refused (invalid_field), not clamped.</summary>
    private bool TryTtl(DeviceSession c, InboundEnvelope e, out TimeSpan ttl)
    {
        if (SendRules.CheckTtl(e.Ttl ?? 0, maxTtl, out ttl) is not { } why) return true;
        Fail(c, ErrorCodes.InvalidField, "'ttl': " + why, e.Ref);
        return false;
    }

    private static void Unavailable(DeviceSession c, string? @ref) =>
        c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(ErrorCodes.Unavailable, "The message store cannot take writes right now; try later.", @ref)));

    private static void QuotaExceeded(DeviceSession c, string? @ref) =>
        c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(ErrorCodes.QuotaExceeded,
            "Over this device's durable quota (DeviceGate:Limits:DeviceDurableMessagesPerMinute, DeviceStoredBytes); nothing was stored. Slow down.", @ref)));

    private Task Publish(DeviceSession c, InboundEnvelope e)
    {
        if (!CheckGroup(c, e)) return Task.CompletedTask;
        if (e.Data.ValueKind == JsonValueKind.Undefined) { Fail(c, ErrorCodes.MissingField, "'data' is required.", e.Ref); return Task.CompletedTask; }
        var data = MessageData.FromEnvelope(e.Data);
        var group = e.Group!;
        if (!TryTtl(c, e, out var ttl)) return Task.CompletedTask;
        return PublishAsync(c, group, data, ttl, e.Ref);
    }

    private async Task PublishAsync(DeviceSession c, string group, MessageData data, TimeSpan ttl, string? @ref)
    {
        // Each member gets its own message id; the 'sent' answer carries a fresh id for the publish itself. With a ttl,
        // every member's copy counts against the sender's durable quota.
        Delivery.DeliveryService.PublishResult result;
        try
        {
            result = await delivery.PublishAsync(group, data, c.DeviceId, ttl, except: c.DeviceId, durableQuota: c.Budget.TryTakeDurable).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Unavailable(c, @ref);
            return;
        }
        var (_, queued, unavailable, quota) = result;
        if (quota)
        {
            QuotaExceeded(c, @ref);
            return;
        }
        if (unavailable)
        {
            Unavailable(c, @ref);
            return;
        }
        if (@ref is not null) c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Sent(@ref, DeviceMessage.NewId(), queued > 0 ? "queued" : "sent")));
    }

    private void Join(DeviceSession c, InboundEnvelope e, bool join)
    {
        if (join ? !CheckGroup(c, e) : !CheckGroupName(c, e)) return;
        if (join) _ = JoinAsync(c, e.Group!, e.Ref);
        else groups.RemoveAsync(e.Group!, c.DeviceId).LogFailure(logger);
    }

    private async Task JoinAsync(DeviceSession c, string group, string? @ref)
    {
        try
        {
            if (!await groups.AddAsync(group, c.DeviceId, maxGroups).ConfigureAwait(false))
            {
                Fail(c, ErrorCodes.QuotaExceeded, $"This device is already a member of {maxGroups} groups (DeviceGate:Limits:MaxGroupsPerDevice); leave one first.", @ref);
            }
        }
        catch (Exception ex)
        {
            Log.StoreWriteFailed(logger, ex.Message);
        }
    }

    private void Reply(DeviceSession c, InboundEnvelope e)
    {
        if (e.Id is null) { Fail(c, ErrorCodes.MissingField, "'id' is required: the id of the rpc being answered.", e.Ref); return; }
        if (e.Data.ValueKind == JsonValueKind.Undefined && e.Error.ValueKind != JsonValueKind.Object)
        {
            Fail(c, ErrorCodes.MissingField, "A reply carries 'data', or 'error': {\"code\",\"message\"}.", e.Ref);
            return;
        }
        if (!rpcs.Complete(c, e.Id, e.Data, e.Error)) Log.LateReply(logger, c.DeviceId, LogText.Safe(e.Id));
    }

    /// <summary>A device reports its own state: the merge patch goes into <c>reported</c>, answered with its version.</summary>
    private void Report(DeviceSession c, InboundEnvelope e)
    {
        if (e.State.ValueKind == JsonValueKind.Undefined) { Fail(c, ErrorCodes.MissingField, "'state' is required: a JSON merge patch of the reported state.", e.Ref); return; }
        if (!State.StatePatch.TryParseObject(System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(e.State), out var patch, out var why))
        {
            Fail(c, ErrorCodes.InvalidField, "'state': " + why, e.Ref);
            return;
        }
        _ = ReportAsync(c, patch!, e.Ref);
    }

    private async Task ReportAsync(DeviceSession c, System.Text.Json.Nodes.JsonObject patch, string? @ref)
    {
        try
        {
            var (outcome, document, _) = await states.ChangeAsync(c.DeviceId, Storage.StatePart.Reported, patch, replace: false, ifMatch: null).ConfigureAwait(false);
            if (outcome == State.StateChangeOutcome.TooLarge)
            {
                c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(ErrorCodes.StateTooLarge, "The reported state would exceed DeviceGate:State:MaxBytes; nothing changed.", @ref)));
                return;
            }
            c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Reported(@ref, document.ReportedVersion)));
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Unavailable(c, @ref);
        }
    }

    /// <summary>A message dropped by the per-device rate limit is answered, so the device knows to slow down.</summary>
    public void RateLimited(DeviceSession c) =>
        c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(ErrorCodes.RateLimited,
            "Too many messages: this one was dropped. Slow down, or the connection is closed with 1008 rate_limited.", null)));

    private bool CheckGroup(DeviceSession c, InboundEnvelope e)
    {
        if (!CheckGroupName(c, e)) return false;
        if (c.Permissions.MayUseGroup(e.Group!)) return true;
        Fail(c, ErrorCodes.Forbidden, $"This device's token does not allow group '{e.Group}'.", e.Ref);
        return false;
    }

    private bool CheckGroupName(DeviceSession c, InboundEnvelope e)
    {
        if (e.Group is null) { Fail(c, ErrorCodes.MissingField, "'group' is required.", e.Ref); return false; }
        if (!DeviceId.IsValid(e.Group)) { Fail(c, ErrorCodes.InvalidField, "'group' is not a valid group name.", e.Ref); return false; }
        return true;
    }

    /// <summary>Answers with an error envelope; a device that keeps erring past its budget is closed with 1008 policy.</summary>
    private void Fail(DeviceSession c, string code, string message, string? @ref)
    {
        if (!c.Budget.TakeError())
        {
            if (c.RequestClose(CloseCodes.PolicyViolation, CloseReasons.Policy, dropBacklog: true)) Log.EnvelopeAbuse(logger, c.DeviceId);
            return;
        }
        Log.EnvelopeError(logger, c.DeviceId, code);
        c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(code, message, @ref)));
    }
}
