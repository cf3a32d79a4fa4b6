using System.Collections.Concurrent;
using DeviceGate.Storage;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DeviceGate.Connections;

/// <summary>
/// Remembered subscriptions: an MQTT 3.1.1 client that connects with clean session false, or an MQTT 5 client with a
/// session expiry interval, finds its subscriptions to its own topics (messages, desired state, rpc, with their QoS)
/// again when it reconnects within that time (at most DeviceGate:Mqtt:MaxSessionExpiry), on any node and after a
/// restart: they are kept in the directory, not in MQTTnet's memory. Group memberships are the device's anyway (they
/// outlast connections, clean or not), and stored messages never depended on the session.
/// </summary>
internal sealed class MqttSessionMemory(IDeviceDirectory directory, GatewayOptions options, TimeProvider time, ILogger logger)
{
    /// <summary>
    /// Before the CONNACK: reads what the device kept (unless it asked for a clean start), and decides what this
    /// connection keeps. Never refuses a connection: a store that cannot answer means a session starts empty.
    /// </summary>
    public async Task OpenAsync(ValidatingConnectionEventArgs e, MqttTransport transport)
    {
        var device = transport.Session.DeviceId;
        var now = time.GetUtcNow();
        var keep = Granted(e.ProtocolVersion, e.CleanSession ?? true, e.SessionExpiryInterval);
        transport.RememberFor = keep;
        transport.GrantedExpiry = e.ProtocolVersion == MqttProtocolVersion.V500 && e.SessionExpiryInterval != 0 && keep != TimeSpan.FromSeconds(e.SessionExpiryInterval)
            ? (uint)keep.TotalSeconds
            : null;
        try
        {
            if (e.CleanSession == false && await directory.RememberedSessionAsync(device, now).ConfigureAwait(false) is { } kept)
            {
                transport.SessionPresent = true;
                transport.Resumed = Decode(device, kept.Subscriptions);
            }
            if (keep > TimeSpan.Zero)
            {
                transport.SessionOwner = Guid.NewGuid().ToString("N");
                transport.WrittenSubscriptions = transport.Resumed is { } resumed ? Encode(resumed.Select(f => (Suffix(device, f.Topic), f.QualityOfServiceLevel))) : "";
                await directory.RememberSessionAsync(device, new RememberedSession(transport.SessionOwner, transport.WrittenSubscriptions, now + keep), take: true).ConfigureAwait(false);
            }
            else if (transport.SessionPresent || e.CleanSession != false)
            {
                directory.DropSession(device);
            }
        }
        catch (Exception ex) when (StoreFailures.Is(ex))
        {
            Log.StoreWriteFailed(logger, ex.Message);
            transport.RememberFor = TimeSpan.Zero;
        }
    }

    /// <summary>How long a connection's subscriptions are kept after it ends: 3.1.1 clean session false → the maximum; MQTT 5 → its expiry interval, at most that.</summary>
    internal TimeSpan Granted(MqttProtocolVersion version, bool cleanSession, uint expiryInterval)
    {
        var max = options.Mqtt.MaxSessionExpiry;
        if (version != MqttProtocolVersion.V500) return cleanSession ? TimeSpan.Zero : max;
        var asked = TimeSpan.FromSeconds(expiryInterval);
        return asked < max ? asked : max;
    }

    /// <summary>
    /// The device's own subscriptions changed: the remembered ones follow, one write at a time per connection, before
    /// the SUBACK / UNSUBACK (so a device that heard it may count on it).
    /// </summary>
    public Task ChangedAsync(MqttTransport transport) =>
        transport.RememberFor <= TimeSpan.Zero ? Task.CompletedTask : WriteAsync(transport, transport.RememberFor);

    /// <summary>
    /// The connection ended: what it kept is kept for its expiry from now (an MQTT 5 DISCONNECT may have changed the
    /// interval; 0 ends it now). Written only if no newer connection of the device took the session since.
    /// </summary>
    public Task ClosedAsync(MqttTransport transport)
    {
        if (transport.RememberFor <= TimeSpan.Zero) return Task.CompletedTask;
        var keep = transport.DisconnectExpiry is { } changed ? Granted(MqttProtocolVersion.V500, cleanSession: false, changed) : transport.RememberFor;
        return WriteAsync(transport, keep, force: true);
    }

    private async Task WriteAsync(MqttTransport transport, TimeSpan keep, bool force = false)
    {
        var device = transport.Session.DeviceId;
        await transport.MemoryWrites.WaitAsync().ConfigureAwait(false);
        try
        {
            var subscriptions = Encode(transport.Own.Select(kv => (kv.Key, kv.Value.Qos)));
            if (!force && subscriptions == transport.WrittenSubscriptions) return;
            await directory.RememberSessionAsync(device, new RememberedSession(transport.SessionOwner, subscriptions, time.GetUtcNow() + keep), take: false).ConfigureAwait(false);
            transport.WrittenSubscriptions = subscriptions;
        }
        catch (Exception ex) when (StoreFailures.Is(ex) || ex is ObjectDisposedException)
        {
            Log.StoreWriteFailed(logger, ex.Message);
        }
        finally
        {
            transport.MemoryWrites.Release();
        }
    }

    /// <summary>The topics a session may keep, relative to <c>devices/{id}/</c>.</summary>
    internal const string Messages = "messages", Desired = "state/desired", Rpc = "rpc";

    internal static readonly string[] Kept = [Messages, Desired, Rpc];

    internal static string Suffix(string device, string topic) => topic[(MqttTopics.DevicePrefix.Length + device.Length + 1)..];

    /// <summary><c>messages:1,rpc:0</c>, in a fixed order.</summary>
    internal static string Encode(IEnumerable<(string Suffix, MqttQualityOfServiceLevel Qos)> subscriptions) =>
        string.Join(',', subscriptions.OrderBy(s => Array.IndexOf(Kept, s.Suffix)).Select(s => $"{s.Suffix}:{(int)s.Qos}"));

    /// <summary>What <see cref="Encode"/> wrote, as topic filters; anything it does not know is skipped.</summary>
    internal static IReadOnlyList<MqttTopicFilter> Decode(string device, string text)
    {
        var filters = new List<MqttTopicFilter>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var colon = part.LastIndexOf(':');
            if (colon < 0 || !Kept.Contains(part[..colon]) || part[(colon + 1)..] is not ("0" or "1") || !seen.Add(part[..colon])) continue;
            filters.Add(new MqttTopicFilter
            {
                Topic = $"{MqttTopics.DevicePrefix}{device}/{part[..colon]}",
                QualityOfServiceLevel = part[^1] == '1' ? MqttQualityOfServiceLevel.AtLeastOnce : MqttQualityOfServiceLevel.AtMostOnce,
            });
        }
        return filters;
    }
}
