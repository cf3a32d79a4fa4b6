
namespace DeviceGate.Storage;

/// <summary>Loads known devices and group memberships before the server starts listening.</summary>
internal sealed class DirectoryLoader(IDirectoryStore store, DeviceDirectory directory, GroupRegistry groups) : IHostedLifecycleService
{
    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        // A shared (cluster) store is read directly: other nodes change it, so a copy here would go stale.
        if (store is ISharedDirectory) return;
        var snapshot = await store.LoadAsync().ConfigureAwait(false);
        directory.Load(snapshot);
        groups.Load(snapshot.Memberships);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
