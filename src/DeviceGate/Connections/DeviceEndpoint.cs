using System.Net.WebSockets;
using DeviceGate.Auth;
using DeviceGate.Events;
using DeviceGate.Protocol;
using DeviceGate.Rpc;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;
using DeviceGate.Sessions;

namespace DeviceGate.Connections;

/// <summary><c>GET /ws?deviceId=</c>: admits, checks the handshake, upgrades, registers the device and runs it until it leaves.</summary>
internal sealed class DeviceEndpoint(
    Handshake handshake,
    ConnectionAdmission admission,
    DeviceSessions sessions,
    DeviceBudgets budgets,
    EnvelopeHandler envelopes,
    EventHub events,
    Delivery.Lanes lanes,
    GatewayMetrics metrics,
    LogLimiter logLimiter,
    ShutdownState shutdown,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DeviceEndpoint> logger)
{
    // Created once, shared by every connection (a method group or lambda per connection would allocate per device).
    private DeviceSocket.MessageHandler? _onEnvelopeField, _onRawField;
    private Action<DeviceSession>? _onEnvelopeRateLimitedField, _onRawRateLimitedField, _onClosingField;
    private Action<DeviceSession, Exception>? _onFaultedField;
    private DeviceSocket.MessageHandler _onEnvelope => _onEnvelopeField ??= envelopes.Handle;
    private DeviceSocket.MessageHandler _onRaw => _onRawField ??= OnRawMessage;
    private Action<DeviceSession> _onEnvelopeRateLimited => _onEnvelopeRateLimitedField ??= envelopes.RateLimited;
    private Action<DeviceSession> _onRawRateLimited => _onRawRateLimitedField ??= OnRawRateLimited;
    private Action<DeviceSession> _onClosing => _onClosingField ??= sessions.Closing;
    private Action<DeviceSession, Exception> _onFaulted => _onFaultedField ??= OnFaulted;

    private void OnFaulted(DeviceSession session, Exception e)
    {
        metrics.ReadLoopFaults.Add(1);
        if (logLimiter.ShouldLog("read_loop", out var suppressed)) Log.ReadLoopFailed(logger, session.DeviceId, suppressed, e);
    }

    /// <summary>
    /// Runs one device upgrade, whichever path it came by, until the device leaves; never leaves the connection half
    /// set up. Not async itself: only <see cref="AdmittedAsync"/>'s frame stays alive per connection.
    /// </summary>
    public Task HandleAsync(DeviceUpgrade upgrade)
    {
        if (shutdown.IsDraining) return RefuseAsync(upgrade, 503, "draining", "server is shutting down", null, 5);
        // What costs nothing to refuse is refused before admission, so it takes no connect-rate token.
        var request = handshake.CheckRequest(upgrade);
        if (!request.Accepted) return RefuseAsync(upgrade, request.Status, request.Code, request.Reason, request.DeviceId, null);
        if (admission.TryAdmit(upgrade.RemoteIp) is { } refusal)
        {
            return RefuseAsync(upgrade, refusal.Status, refusal.Code, refusal.Reason, request.DeviceId, refusal.RetryAfterSeconds);
        }
        return AdmittedAsync(upgrade, request.DeviceId!, request.Token, request.Certificate);
    }

    /// <summary>An admitted upgrade: validated, registered, run; its admission is released however it ends.</summary>
    private async Task AdmittedAsync(DeviceUpgrade upgrade, string deviceId, string? token, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate)
    {
        try
        {
            Handshake.Outcome outcome;
            try
            {
                outcome = await handshake.CheckTokenAsync(deviceId, token, certificate).ConfigureAwait(false);
            }
            catch (Exception e) when (Storage.StoreFailures.Is(e))
            {
                await RefuseAsync(upgrade, 503, "store_unavailable", "the directory (revocations) cannot be read right now", deviceId, 5).ConfigureAwait(false);
                return;
            }
            if (!outcome.Accepted)
            {
                await RefuseAsync(upgrade, outcome.Status, outcome.Code, outcome.Reason, outcome.DeviceId, null).ConfigureAwait(false);
                return;
            }

            // Registered before the 101 goes out: once a device sees its upgrade succeed, it can be reached.
            var permissions = outcome.Identity?.Permissions ?? DevicePermissions.Unrestricted;
            var expiresAt = outcome.Identity?.ExpiresAt;
            // This method's state lives as long as the connection: keep the parsed token (and its claim dictionaries) out of it.
            outcome = default;
            token = null;
            var mode = upgrade.RequestedProtocols.Contains(Subprotocols.EnvelopeJson) ? ConnectionMode.Envelope : ConnectionMode.Raw;
            var envelope = mode == ConnectionMode.Envelope;
            var session = new DeviceSession(deviceId, mode, permissions, budgets.For(deviceId), time.GetUtcNow());
            var transport = new DeviceSocket(session, options.Value.Limits, time, metrics, envelope ? _onEnvelope : _onRaw)
            {
                RateLimited = envelope ? _onEnvelopeRateLimited : _onRawRateLimited,
                Closing = _onClosing,
                Faulted = _onFaulted,
            };
            session.Attach(transport, lanes.Create(session));

            WebSocket socket;
            try
            {
                await sessions.OpenAsync(session).ConfigureAwait(false);
                socket = await upgrade.AcceptAsync(envelope ? Subprotocols.EnvelopeJson : null, options.Value.WebSockets).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                transport.Abandon();
                if (!Storage.StoreFailures.Is(e) || upgrade.HasStarted) throw;
                await RefuseAsync(upgrade, 503, "store_unavailable", "presence cannot be recorded right now", deviceId, 5).ConfigureAwait(false);
                return;
            }
            using var owned = socket;
            metrics.Upgrades.Add(upgrade.Via);
            var started = false;
            try
            {
                sessions.Started(session, upgrade.RemoteIp?.ToString());
                started = true;
                using var expiry = ScheduleTokenExpiry(session, expiresAt);
                // What the device sends is not part of its upgrade request's trace (that request lasts as long as the
                // connection): a device's send starts a trace of its own, or continues the one its envelope names.
                System.Diagnostics.Activity.Current = null;
                await transport.RunAsync(socket).ConfigureAwait(false);
            }
            finally
            {
                // Whatever happened above, the device leaves the registry, presence and the metrics, and is announced.
                await sessions.CloseAsync(session, started).ConfigureAwait(false);
            }
        }
        finally
        {
            admission.Release(upgrade.RemoteIp);
        }
    }

    /// <summary>What a raw device sends goes to the event stream: text as <c>data</c>, binary as <c>dataBase64</c>.</summary>
    private void OnRawMessage(DeviceSession session, ReadOnlySpan<byte> payload, WebSocketMessageType type)
    {
        metrics.MessagesReceived.Add("raw");
        Log.RawMessageReceived(logger, session.DeviceId, type, payload.Length);
        var bytes = payload.ToArray();
        events.Message(session.DeviceId, type == WebSocketMessageType.Text ? MessageData.TextOrBinary(bytes) : MessageData.Binary(bytes));
    }

    private void OnRawRateLimited(DeviceSession session) => Log.RateLimited(logger, session.DeviceId);

    /// <summary>Closes the session with 1008 token_expired at its token's exp (or certificate's notAfter), however far away.</summary>
    private ExpiryTimer? ScheduleTokenExpiry(DeviceSession session, DateTimeOffset? expiresAt) => expiresAt is { } exp
        ? ExpiryTimer.Start(time, exp, () => session.RequestClose(CloseCodes.PolicyViolation, CloseReasons.TokenExpired, dropBacklog: true))
        : null;

    private Task RefuseAsync(DeviceUpgrade upgrade, int status, string code, string reason, string? deviceId, int? retryAfter)
    {
        metrics.HandshakesRefused.Add(code);
        // A flood of refusals is one line per reason per interval; the counter above stays exact.
        if (logLimiter.ShouldLog("refused:" + code, out var suppressed))
        {
            Log.HandshakeRefused(logger, status, reason, deviceId, upgrade.RemoteIp?.ToString(), suppressed);
        }
        return upgrade.RefuseAsync(status, code, reason, retryAfter);
    }
}
