using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Auth;

/// <summary>
/// The signing keys of the outside issuer of device (and API) tokens: fetched from the OpenID Connect discovery
/// document's <c>jwks_uri</c> (<c>DeviceGate:Auth:Jwt:Authority</c>) or from <c>JwksUrl</c>, with the library's
/// retrievers and parsers (<see cref="HttpDocumentRetriever"/>, <see cref="OpenIdConnectConfiguration"/>,
/// <see cref="JsonWebKeySet"/>). The refresh policy is ours because the contract fixes it and ConfigurationManager's
/// differs (at least 5 minutes between automatic refreshes, plus up to an hour of jitter): fetched at start and every
/// <c>RefreshInterval</c>; a token with an unknown <c>kid</c> may ask for a fetch at most every 30 s; the last good keys
/// stay in force while the issuer is unreachable; one fetch at a time.
/// </summary>
internal sealed class IssuerKeys : IHostedService, IDisposable
{
    /// <summary>The keys in force and the issuer they belong to.</summary>
    public sealed record Snapshot(IReadOnlyList<SecurityKey> Keys, string? Issuer);

    public static readonly TimeSpan OnDemandInterval = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan WarningInterval = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan WaitForFetch = TimeSpan.FromSeconds(2);

    private readonly JwtOptions _o;
    private readonly HttpClient _http;
    private readonly TimeProvider _time;
    private readonly ILogger<IssuerKeys> _logger;
    private readonly Lock _gate = new();
    private volatile Snapshot? _current;
    private Task? _fetching;
    private long _lastOnDemand;
    private long _lastWarning;
    private ITimer? _timer;

    public IssuerKeys(IOptions<GatewayOptions> options, IHttpClientFactory http, TimeProvider time, ILogger<IssuerKeys> logger)
    {
        _o = options.Value.Auth.Jwt;
        _http = http.CreateClient(nameof(IssuerKeys));
        _time = time;
        _logger = logger;
    }

    public bool Enabled => _o.Enabled;

    private string Address => _o.Authority ?? _o.JwksUrl!;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!Enabled) return Task.CompletedTask;
        // Not awaited: a slow or absent issuer must not hold up the gateway (HS256 tokens work meanwhile).
        _timer = _time.CreateTimer(static s => ((IssuerKeys)s!).Fetch(scheduled: true), this, TimeSpan.Zero, _o.RefreshInterval);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _timer?.Dispose();

    /// <summary>The keys in force; before the first successful fetch, waits briefly for one in progress, else null.</summary>
    public async ValueTask<Snapshot?> CurrentAsync()
    {
        if (_current is { } current) return current;
        await WaitAsync(Fetch(scheduled: false)).ConfigureAwait(false);
        return _current;
    }

    /// <summary>
    /// A token named a key the set does not have (a rotation): fetch again unless one was tried in the last 30 s,
    /// and wait briefly for it. The snapshot after it (null before any success).
    /// </summary>
    public async ValueTask<Snapshot?> RefreshForUnknownKeyAsync()
    {
        await WaitAsync(Fetch(scheduled: false)).ConfigureAwait(false);
        return _current;
    }

    private async Task WaitAsync(Task? fetch)
    {
        if (fetch is null) return;
        try
        {
            await fetch.WaitAsync(WaitForFetch, _time).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Still fetching: this token is judged on the keys in force; the fetch goes on.
        }
    }

    /// <summary>
    /// Starts a fetch and returns it, or the one running. A scheduled fetch (<paramref name="scheduled"/>) always runs;
    /// one asked for by a token (an unknown kid, or no keys yet) at most every 30 s.
    /// </summary>
    private Task? Fetch(bool scheduled)
    {
        lock (_gate)
        {
            if (_fetching is { IsCompleted: false } running) return running;
            if (!scheduled)
            {
                var now = _time.GetTimestamp();
                if (_lastOnDemand != 0 && _time.GetElapsedTime(_lastOnDemand, now) < OnDemandInterval) return null;
                _lastOnDemand = now;
            }
            return _fetching = Task.Run(FetchAsync);
        }
    }

    private async Task FetchAsync()
    {
        try
        {
            var retriever = new HttpDocumentRetriever(_http) { RequireHttps = _o.RequireHttps };
            string? issuer = null;
            var jwksUrl = _o.JwksUrl;
            if (!string.IsNullOrWhiteSpace(_o.Authority))
            {
                var discovery = _o.Authority.TrimEnd('/') + "/.well-known/openid-configuration";
                var configuration = OpenIdConnectConfiguration.Create(await retriever.GetDocumentAsync(discovery, CancellationToken.None).ConfigureAwait(false));
                issuer = configuration.Issuer;
                jwksUrl = configuration.JwksUri;
            }
            // The key set obeys the same transport rule as the configured address (a discovery document may name any URL).
            if (!Uri.TryCreate(jwksUrl, UriKind.Absolute, out var jwks) || !_o.IsAllowedAddress(jwks))
            {
                throw new InvalidOperationException($"the key set address '{jwksUrl}' is not https (or loopback http with RequireHttps=false)");
            }
            var set = new JsonWebKeySet(await retriever.GetDocumentAsync(jwks.ToString(), CancellationToken.None).ConfigureAwait(false));
            var keys = set.GetSigningKeys();
            _current = new Snapshot(keys.ToArray(), _o.Issuer ?? issuer);
            Log.IssuerKeysFetched(_logger, Address, keys.Count);
        }
        catch (Exception e)
        {
            // Whatever the issuer answered (nothing, an error page, a malformed document), the fetch just failed: it runs
            // in the background and a handshake only waits for it, so nothing may escape from here.
            var now = _time.GetTimestamp();
            if (_lastWarning == 0 || _time.GetElapsedTime(_lastWarning, now) >= WarningInterval)
            {
                _lastWarning = now;
                Log.IssuerKeysUnavailable(_logger, Address, e.Message,
                    _current is null ? "tokens from this issuer are refused until a fetch succeeds (HS256 tokens still work)" : "the last keys fetched stay in force");
            }
        }
    }
}
