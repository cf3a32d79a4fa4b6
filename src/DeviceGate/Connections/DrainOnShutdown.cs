using DeviceGate.Connections;
using DeviceGate.Protocol;
using Microsoft.Extensions.Options;
using DeviceGate.Sessions;

namespace DeviceGate.Connections;

/// <summary>
/// On Ctrl-C / SIGTERM: closes every device with 1001 after writing what is already queued, waits at most
/// DeviceGate:Shutdown:DrainSeconds, then aborts whoever is left. It runs in StoppingAsync, before any hosted
/// service (Kestrel included) stops: Kestrel would otherwise wait out its own timeout on the upgraded connections.
/// </summary>
internal sealed class DrainOnShutdown(
    ShutdownState state,
    ConnectionRegistry registry,
    EchoConnections echoes,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DrainOnShutdown> logger) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        state.BeginDrain();
        var connections = registry.All.Concat(echoes.All).ToList();
        var seconds = options.Value.Shutdown.DrainSeconds;
        Log.Draining(logger, connections.Count, seconds);
        foreach (var c in connections) c.RequestClose(CloseCodes.GoingAway, CloseReasons.Shutdown, dropBacklog: false);
        try
        {
            await Task.WhenAll(connections.Select(c => c.Transport.Completion)).WaitAsync(TimeSpan.FromSeconds(seconds), time, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            var left = connections.Where(c => !c.Transport.Completion.IsCompleted).ToList();
            Log.DrainAborted(logger, left.Count);
            foreach (var c in left) c.Transport.Abort();
        }
    }
}
