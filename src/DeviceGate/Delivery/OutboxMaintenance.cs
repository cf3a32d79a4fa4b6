using DeviceGate.Events;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

/// <summary>Marks expired messages (and says so on the event stream) and purges final records past retention.</summary>
internal sealed class OutboxMaintenance(IMessageStore store, EventHub events, GatewayMetrics metrics, IOptions<GatewayOptions> options, TimeProvider time, ILogger<OutboxMaintenance> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Defaults.ExpirySweep, time);
        var lastPurge = time.GetTimestamp();
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    var now = time.GetUtcNow();
                    foreach (var (id, device) in await store.ExpireDueAsync(now).ConfigureAwait(false))
                    {
                        metrics.Expired.Add(1);
                        events.Expired(device, id);
                    }
                    if (time.GetElapsedTime(lastPurge) >= Defaults.PurgeSweep)
                    {
                        lastPurge = time.GetTimestamp();
                        await store.PurgeAsync(now - options.Value.Delivery.StatusRetention).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    Log.StoreWriteFailed(logger, e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
