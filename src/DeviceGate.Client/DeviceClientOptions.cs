namespace DeviceGate.Client;

/// <summary>How a <see cref="DeviceClient"/> connects and reconnects.</summary>
public sealed class DeviceClientOptions
{
    /// <summary>The gateway, e.g. <c>ws://127.0.0.1:8080</c> or <c>https://gw.example.com</c> (http is turned into ws).</summary>
    public required Uri Server { get; init; }

    /// <summary>This device's id.</summary>
    public required string DeviceId { get; init; }

    /// <summary>
    /// Returns a device token; called before every connection attempt and again after the gateway closed with
    /// <c>1008 token_expired</c> or <c>token_revoked</c>, so it can mint or fetch a fresh one.
    /// </summary>
    public required Func<CancellationToken, ValueTask<string>> TokenProvider { get; init; }

    /// <summary>First reconnect delay; doubled per failed attempt (full jitter) up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Longest reconnect delay.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How many message ids are remembered to drop redeliveries (oldest forgotten first).</summary>
    public int DeduplicationWindow { get; init; } = 10_000;
}
