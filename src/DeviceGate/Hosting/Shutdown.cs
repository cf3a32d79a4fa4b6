using DeviceGate.Connections;
using DeviceGate.Protocol;
using Microsoft.Extensions.Options;

namespace DeviceGate.Hosting;

/// <summary>Set once shutdown begins: new devices are refused with 503 and /readyz reports not ready.</summary>
internal sealed class ShutdownState
{
    private volatile bool _draining;
    public bool IsDraining => _draining;
    public void BeginDrain() => _draining = true;
}

/// <summary>
/// On Ctrl-C / SIGTERM: closes every device with 1001 after writing what is already queued, waits at most
/// DeviceGate:Shutdown:DrainSeconds, then aborts whoever is left. Runs before Kestrel stops.
/// </summary>
internal sealed class DrainOnShutdown(
    ShutdownState state,
    ConnectionRegistry registry,
    EchoConnections echoes,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DrainOnShutdown> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        state.BeginDrain();
        var connections = registry.All.Concat(echoes.All).ToList();
        var seconds = options.Value.Shutdown.DrainSeconds;
        Log.Draining(logger, connections.Count, seconds);
        foreach (var c in connections) c.RequestClose(CloseCodes.GoingAway, CloseReasons.Shutdown, dropBacklog: false);
        try
        {
            await Task.WhenAll(connections.Select(c => c.Completion)).WaitAsync(TimeSpan.FromSeconds(seconds), time, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            var left = connections.Where(c => !c.Completion.IsCompleted).ToList();
            Log.DrainAborted(logger, left.Count);
            foreach (var c in left) c.Abort();
        }
    }
}
