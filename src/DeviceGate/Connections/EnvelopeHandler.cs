using System.Diagnostics;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Events;
using DeviceGate.Hosting;
using DeviceGate.Protocol;
using DeviceGate.Routing;
using DeviceGate.Rpc;

namespace DeviceGate.Connections;

/// <summary>
/// What an envelope-mode device sends: send, publish, join, leave, reply, ack. A bad envelope is answered with an
/// <c>error</c> envelope and the connection stays open; only a device that keeps erring is closed (1008 policy).
/// </summary>
internal sealed class EnvelopeHandler(
    MessageRouter router,
    GroupRegistry groups,
    EventHub events,
    RpcCoordinator rpcs,
    GatewayStats stats,
    TimeProvider time,
    ILogger<EnvelopeHandler> logger)
{
    public void Handle(DeviceConnection c, ReadOnlySpan<byte> payload, WebSocketMessageType type)
    {
        stats.MessageIn();
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
                case EnvelopeTypes.Send: Send(c, envelope); break;
                case EnvelopeTypes.Publish: Publish(c, envelope); break;
                case EnvelopeTypes.Join: Join(c, envelope, join: true); break;
                case EnvelopeTypes.Leave: Join(c, envelope, join: false); break;
                case EnvelopeTypes.Reply: Reply(c, envelope); break;
                case EnvelopeTypes.Ack: break; // Acks matter once durable delivery lands.
                default:
                    Fail(c, ErrorCodes.UnknownType, $"Unknown envelope type '{envelope.Type}'. Devices send: send, publish, join, leave, reply, ack.", envelope.Ref);
                    break;
            }
        }
    }

    private void Send(DeviceConnection c, InboundEnvelope e)
    {
        if (e.To is null) { Fail(c, ErrorCodes.MissingField, "'to' is required.", e.Ref); return; }
        if (!DeviceId.IsValid(e.To)) { Fail(c, ErrorCodes.InvalidField, "'to' is not a valid device id.", e.Ref); return; }
        if (e.Data.ValueKind == JsonValueKind.Undefined) { Fail(c, ErrorCodes.MissingField, "'data' is required.", e.Ref); return; }
        if (!c.Permissions.MaySendTo(e.To)) { Fail(c, ErrorCodes.Forbidden, $"This device's token does not allow sending to '{e.To}'.", e.Ref); return; }

        var id = DeviceMessage.NewId();
        var data = MessageData.FromEnvelope(e.Data);
        if (e.To == DeviceId.Server)
        {
            events.Message(c.DeviceId, data);
        }
        else if (router.SendToDevice(e.To, new DeviceMessage(id, c.DeviceId, null, data)) != EnqueueResult.Queued)
        {
            Fail(c, ErrorCodes.Offline, $"Device '{e.To}' is not connected.", e.Ref);
            return;
        }
        if (e.Ref is not null) c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Sent(e.Ref, id, "sent")));
    }

    private void Publish(DeviceConnection c, InboundEnvelope e)
    {
        if (!CheckGroup(c, e)) return;
        if (e.Data.ValueKind == JsonValueKind.Undefined) { Fail(c, ErrorCodes.MissingField, "'data' is required.", e.Ref); return; }
        var message = new DeviceMessage(DeviceMessage.NewId(), c.DeviceId, e.Group, MessageData.FromEnvelope(e.Data));
        router.PublishToGroup(e.Group!, message, except: c.DeviceId);
        if (e.Ref is not null) c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Sent(e.Ref, message.Id, "sent")));
    }

    private void Join(DeviceConnection c, InboundEnvelope e, bool join)
    {
        if (join ? !CheckGroup(c, e) : !CheckGroupName(c, e)) return;
        if (join) groups.Add(e.Group!, c.DeviceId);
        else groups.Remove(e.Group!, c.DeviceId);
    }

    private void Reply(DeviceConnection c, InboundEnvelope e)
    {
        if (e.Id is null) { Fail(c, ErrorCodes.MissingField, "'id' is required: the id of the rpc being answered.", e.Ref); return; }
        if (e.Data.ValueKind == JsonValueKind.Undefined && e.Error.ValueKind != JsonValueKind.Object)
        {
            Fail(c, ErrorCodes.MissingField, "A reply carries 'data', or 'error': {\"code\",\"message\"}.", e.Ref);
            return;
        }
        if (!rpcs.Complete(c, e.Id, e.Data, e.Error)) Log.LateReply(logger, c.DeviceId, e.Id);
    }

    private bool CheckGroup(DeviceConnection c, InboundEnvelope e)
    {
        if (!CheckGroupName(c, e)) return false;
        if (c.Permissions.MayUseGroup(e.Group!)) return true;
        Fail(c, ErrorCodes.Forbidden, $"This device's token does not allow group '{e.Group}'.", e.Ref);
        return false;
    }

    private bool CheckGroupName(DeviceConnection c, InboundEnvelope e)
    {
        if (e.Group is null) { Fail(c, ErrorCodes.MissingField, "'group' is required.", e.Ref); return false; }
        if (!DeviceId.IsValid(e.Group)) { Fail(c, ErrorCodes.InvalidField, "'group' is not a valid group name.", e.Ref); return false; }
        return true;
    }

    /// <summary>Answers with an error envelope; a device that keeps erring past its budget is closed with 1008 policy.</summary>
    private void Fail(DeviceConnection c, string code, string message, string? @ref)
    {
        var now = time.GetTimestamp();
        if (c.ErrorBudgetRefilledAt != 0)
        {
            var refill = time.GetElapsedTime(c.ErrorBudgetRefilledAt, now).TotalSeconds * Defaults.EnvelopeErrorsPerSecond;
            c.ErrorBudget = Math.Min(Defaults.EnvelopeErrorBurst, c.ErrorBudget + refill);
        }
        c.ErrorBudgetRefilledAt = now;
        c.ErrorBudget -= 1;
        if (c.ErrorBudget < 0)
        {
            if (c.RequestClose(CloseCodes.PolicyViolation, CloseReasons.Policy, dropBacklog: true)) Log.EnvelopeAbuse(logger, c.DeviceId);
            return;
        }
        Log.EnvelopeError(logger, c.DeviceId, code);
        c.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Error(code, message, @ref)));
    }
}
