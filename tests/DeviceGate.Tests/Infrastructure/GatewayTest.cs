namespace DeviceGate.Tests.Infrastructure;

/// <summary>A test class with one real gateway for all its tests (a fresh one per test, as xunit makes one instance per test).</summary>
public abstract class GatewayTest : IAsyncLifetime
{
    protected TestGateway Gw { get; private set; } = null!;

    /// <summary>Configuration for this class's gateway, as <c>DeviceGate:...</c> keys.</summary>
    protected virtual IReadOnlyDictionary<string, string>? Settings => null;

    public async Task InitializeAsync() => Gw = await TestGateway.StartAsync(Settings);

    public async Task DisposeAsync() => await Gw.DisposeAsync();
}
