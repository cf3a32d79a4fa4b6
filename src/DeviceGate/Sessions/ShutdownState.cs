namespace DeviceGate.Sessions;

/// <summary>Set once shutdown begins: new devices are refused with 503 and /readyz reports not ready.</summary>
internal sealed class ShutdownState
{
    private volatile bool _draining;
    public bool IsDraining => _draining;
    public void BeginDrain() => _draining = true;
}
