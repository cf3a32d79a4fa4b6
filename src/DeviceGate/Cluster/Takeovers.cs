using System.Collections.Concurrent;

namespace DeviceGate.Cluster;

/// <summary>
/// A takeover across nodes waits for the old node to say it let the device go. Nodes deliver to the devices in their
/// own registry without asking Redis, so until the old node has closed its session there, a send through it would
/// still reach the older connection: the newer session's registration (and with it its 101) completes only once the
/// old node confirmed, or after <c>DeviceGate:Cluster:TakeoverConfirmation</c> (a node that is gone, cut off from
/// Redis or too old to confirm is waited for no longer). Entries live only while a takeover waits.
/// </summary>
internal sealed class Takeovers(Microsoft.Extensions.Options.IOptions<GatewayOptions> options, TimeProvider time)
{
    private readonly TimeSpan _bound = options.Value.Cluster.TakeoverConfirmation;

    private readonly ConcurrentDictionary<(string Device, long Epoch), TaskCompletionSource> _waiting = new();

    /// <summary>Runs <paramref name="ask"/> (the close sent to the old node) and waits, bounded, for its confirmation.</summary>
    public async Task CloseAndWaitAsync(string device, long epoch, Func<Task<bool>> ask)
    {
        var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var key = (device, epoch);
        _waiting[key] = confirmed;
        try
        {
            // Nobody listened on the old node's channel: it is gone, and nothing there can be reached either.
            if (!await ask().ConfigureAwait(false)) return;
            await confirmed.Task.WaitAsync(_bound, time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }
        finally
        {
            _waiting.TryRemove(new KeyValuePair<(string, long), TaskCompletionSource>(key, confirmed));
        }
    }

    /// <summary>The old node closed (or did not hold) the device's session of at most <paramref name="epoch"/>.</summary>
    public void Confirmed(string device, long epoch)
    {
        if (_waiting.TryGetValue((device, epoch), out var confirmed)) confirmed.TrySetResult();
    }
}
