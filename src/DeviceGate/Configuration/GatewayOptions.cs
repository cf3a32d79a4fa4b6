namespace DeviceGate.Configuration;

/// <summary>The <c>DeviceGate</c> configuration section. Every default is a named constant in <see cref="Defaults"/>.</summary>
public sealed class GatewayOptions
{
    public const string SectionName = "DeviceGate";

    public AuthOptions Auth { get; set; } = new();
    public StoreOptions Store { get; set; } = new();
    public WebSocketsOptions WebSockets { get; set; } = new();
    public LimitsOptions Limits { get; set; } = new();
    public ShutdownOptions Shutdown { get; set; } = new();
    public ClusterOptions Cluster { get; set; } = new();
    public EventsOptions Events { get; set; } = new();
    public WebhooksOptions Webhooks { get; set; } = new();
    public RpcOptions Rpc { get; set; } = new();
    public StateOptions State { get; set; } = new();
    public DeliveryOptions Delivery { get; set; } = new();
    public NetworkOptions Network { get; set; } = new();
    public RedisOptions Redis { get; set; } = new();
    public TelemetryOptions Telemetry { get; set; } = new();
    public MqttOptions Mqtt { get; set; } = new();
}

public sealed class RedisOptions
{
    /// <summary>A StackExchange.Redis connection string; set, it turns on cluster mode.</summary>
    public string? Configuration { get; set; }

    /// <summary>Prefix of every key and channel, so two clusters can share one Redis.</summary>
    public string Prefix { get; set; } = Defaults.RedisPrefix;

    /// <summary>
    /// Replicas that must have a durable write (ttl send, state write, cancel) before the API acknowledges it (Redis
    /// WAIT); not confirmed within ReplicationTimeout: 503 store_unavailable. 0: acknowledged once the primary has it.
    /// </summary>
    public int MinReplicas { get; set; }

    /// <summary>How long a durable write waits for MinReplicas replicas before the caller gets 503.</summary>
    public TimeSpan ReplicationTimeout { get; set; } = Defaults.RedisReplicationTimeout;
}

public sealed class DeliveryOptions
{
    /// <summary>ttl used when a send has no ?ttl=. Zero keeps the non-durable behaviour (404 when offline).</summary>
    public TimeSpan DefaultTtl { get; set; } = TimeSpan.Zero;

    /// <summary>Largest ttl accepted (400 above).</summary>
    public TimeSpan MaxTtl { get; set; } = Defaults.MaxTtl;

    /// <summary>How long an envelope device has to ack a message before it is sent again.</summary>
    public TimeSpan AckTimeout { get; set; } = Defaults.AckTimeout;

    /// <summary>Messages written to a device and not yet acked (envelope) or written (raw), at most.</summary>
    public int MaxInFlight { get; set; } = Defaults.MaxInFlight;

    /// <summary>Pending messages one device's outbox holds; more are refused with 429 outbox_full.</summary>
    public int MaxQueuedPerDevice { get; set; } = Defaults.MaxQueuedPerDevice;

    /// <summary>How long a message's status is kept after it reached a final state.</summary>
    public TimeSpan StatusRetention { get; set; } = Defaults.StatusRetention;
}

public sealed class EventsOptions
{
    /// <summary>Events kept for readers that resume with Last-Event-ID.</summary>
    public int ReplayBuffer { get; set; } = Defaults.EventReplayBuffer;

    /// <summary>Bytes of event JSON the replay buffer holds at most (the oldest go first).</summary>
    public long ReplayBufferBytes { get; set; } = Defaults.EventReplayBufferBytes;

    /// <summary>Events one reader may fall behind before it is dropped (it can resume).</summary>
    public int SubscriberBuffer { get; set; } = Defaults.EventSubscriberBuffer;

    /// <summary>Bytes of events one reader may fall behind before it is dropped (it can resume).</summary>
    public long SubscriberBufferBytes { get; set; } = Defaults.EventSubscriberBufferBytes;

    /// <summary>A reader that has not taken any bytes for this long is disconnected (it can resume with Last-Event-ID).</summary>
    public TimeSpan StalledReaderTimeout { get; set; } = Defaults.EventStalledReaderTimeout;

    /// <summary>How often an idle stream gets a keep-alive comment.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = Defaults.EventKeepAlive;
}

public sealed class WebhooksOptions
{
    /// <summary>Where to POST event batches; off when unset.</summary>
    public string? Url { get; set; }

    /// <summary>HMAC-SHA256 key for X-DeviceGate-Signature (UTF-8). Required with Url.</summary>
    public string? Secret { get; set; }

    /// <summary>Most events in one POST.</summary>
    public int BatchSize { get; set; } = Defaults.WebhookBatchSize;

    /// <summary>Events the webhook sender may fall behind before it skips ahead (it then resumes from the replay buffer, or posts a reset).</summary>
    public int QueueSize { get; set; } = Defaults.WebhookQueueSize;
}

public sealed class StateOptions
{
    /// <summary>Largest desired or reported part, in bytes of its compact JSON (413 state_too_large past it).</summary>
    public int MaxBytes { get; set; } = Defaults.StateMaxBytes;
}

public sealed class RpcOptions
{
    /// <summary>Used when ?timeout= is absent.</summary>
    public TimeSpan DefaultTimeout { get; set; } = Defaults.RpcTimeout;

    /// <summary>Largest ?timeout= accepted.</summary>
    public TimeSpan MaxTimeout { get; set; } = Defaults.RpcMaxTimeout;
}

public sealed class MqttOptions
{
    /// <summary>MQTT devices (3.1.1 and 5): over WebSocket at <c>/mqtt</c> on the HTTP port, and over TCP on <c>TcpPort</c>.</summary>
    public bool Enabled { get; set; }

    /// <summary>TCP port of the MQTT listener (0: no TCP listener, WebSocket only).</summary>
    public int TcpPort { get; set; } = Defaults.MqttTcpPort;

    /// <summary>Address the MQTT TCP listener binds to (0.0.0.0 for every IPv4 interface).</summary>
    public string TcpAddress { get; set; } = Defaults.MqttTcpAddress;

    /// <summary>
    /// Longest keep-alive a client is held to: a client that asked for more, or for none (0), is dropped after 1.5
    /// times this of silence (MQTT 5: DISCONNECT 0x8D); one that asked for less, after 1.5 times its own.
    /// </summary>
    public TimeSpan MaxKeepAlive { get; set; } = Defaults.MqttMaxKeepAlive;

    /// <summary>Apply the WebSocket Origin rule (DeviceGate:WebSockets:AllowedOrigins) to <c>/mqtt</c> too.</summary>
    public bool CheckOrigin { get; set; }

    /// <summary>
    /// Longest time a client's subscriptions are remembered after it disconnects: an MQTT 3.1.1 client with clean
    /// session false gets this, an MQTT 5 client its session expiry interval, at most this (CONNACK says so).
    /// 00:00:00 remembers nothing.
    /// </summary>
    public TimeSpan MaxSessionExpiry { get; set; } = Defaults.MqttMaxSessionExpiry;
}

public sealed class TelemetryOptions
{
    /// <summary>
    /// W3C trace context to and from envelope devices: <c>message</c> and <c>rpc</c> envelopes carry
    /// <c>"traceparent"</c>, and a <c>send</c> or <c>publish</c> with <c>"traceparent"</c> continues that trace (its
    /// <c>message</c> event carries it on). Off: the field is neither sent nor read.
    /// </summary>
    public bool PropagateToDevices { get; set; }
}

public sealed class AuthOptions
{
    /// <summary>HS256 secret for device tokens, used as its UTF-8 bytes (at least 32). Generated into the data folder when unset.</summary>
    public string? TokenSecret { get; set; }

    /// <summary>Keys accepted on <c>/api</c> as <c>Authorization: Bearer &lt;key&gt;</c>. One is generated into the data folder when empty.</summary>
    public string[] ApiKeys { get; set; } = [];

    /// <summary>Accept any device id without a token. For trying things out only.</summary>
    public bool AllowAnonymousDevices { get; set; }

    /// <summary>
    /// Former HS256 secrets, still accepted when validating device tokens (never used to sign), so
    /// <see cref="TokenSecret"/> can be rotated without cutting devices off.
    /// </summary>
    public string[] PreviousTokenSecrets { get; set; } = [];

    /// <summary>Device tokens (RS256, PS256, ES256) from an outside issuer: an OpenID Connect authority or a JWKS URL.</summary>
    public JwtOptions Jwt { get; set; } = new();

    /// <summary>Named API keys with scopes (<c>DeviceGate:Auth:Keys:&lt;name&gt;:Key|Hash|Scopes</c>).</summary>
    public Dictionary<string, ApiKeyOptions> Keys { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Device certificates (mutual TLS) on the https endpoints.</summary>
    public ClientCertificateOptions ClientCertificates { get; set; } = new();
}

public sealed class ClientCertificateOptions
{
    /// <summary>A PEM file of the CA certificates device certificates must chain to (no system roots). Unset: no certificates.</summary>
    public string? CaFile { get; set; }

    /// <summary>Serial numbers (hex) of device certificates that are refused.</summary>
    public string[] RevokedSerials { get; set; } = [];

    public bool Enabled => !string.IsNullOrWhiteSpace(CaFile);
}

public sealed class ApiKeyOptions
{
    /// <summary>The key itself.</summary>
    public string? Key { get; set; }

    /// <summary>Instead of the key: <c>sha256:</c> and the lowercase hex of SHA-256 over its UTF-8 bytes.</summary>
    public string? Hash { get; set; }

    /// <summary>What the key may do (see docs/security.md); at least one.</summary>
    public string[] Scopes { get; set; } = [];
}

public sealed class JwtOptions
{
    /// <summary>The algorithms accepted when <see cref="Algorithms"/> is empty.</summary>
    public static readonly string[] SupportedAlgorithms = ["RS256", "PS256", "ES256"];

    /// <summary>An OpenID Connect issuer URL; its <c>/.well-known/openid-configuration</c> names the key set.</summary>
    public string? Authority { get; set; }

    /// <summary>The key set's URL, when there is no discovery document.</summary>
    public string? JwksUrl { get; set; }

    /// <summary>When set, <c>iss</c> must be this (with an Authority it defaults to the discovery document's issuer).</summary>
    public string? Issuer { get; set; }

    /// <summary>When set, <c>aud</c> must include this.</summary>
    public string? Audience { get; set; }

    /// <summary>Narrows the accepted asymmetric algorithms (empty: RS256, PS256 and ES256).</summary>
    public string[] Algorithms { get; set; } = [];

    /// <summary>The claim that carries the device id.</summary>
    public string DeviceIdClaim { get; set; } = "sub";

    /// <summary>The claim with the device's group patterns (like HS256 tokens' <c>groups</c>).</summary>
    public string GroupsClaim { get; set; } = "groups";

    /// <summary>The claim with the device's send patterns (like HS256 tokens' <c>send</c>).</summary>
    public string SendClaim { get; set; } = "send";

    /// <summary>The key set must come over https; when false, http is allowed for loopback addresses only.</summary>
    public bool RequireHttps { get; set; } = true;

    /// <summary>How often the key set is fetched again (an unknown <c>kid</c> also triggers a fetch, at most every 30 s).</summary>
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromHours(1);

    /// <summary>When set, backends may call the API with a bearer JWT from the same issuer whose <c>aud</c> is this.</summary>
    public string? ApiAudience { get; set; }

    public bool Enabled => !string.IsNullOrWhiteSpace(Authority) || !string.IsNullOrWhiteSpace(JwksUrl);

    public string[] AcceptedAlgorithms => Algorithms.Length > 0 ? Algorithms : SupportedAlgorithms;

    /// <summary>https, or (when <see cref="RequireHttps"/> is off) http on a loopback address.</summary>
    public bool IsAllowedAddress(Uri uri) => uri.Scheme == Uri.UriSchemeHttps
        || (!RequireHttps && uri.Scheme == Uri.UriSchemeHttp && uri.Host is "127.0.0.1" or "localhost" or "[::1]");
}

public sealed class StoreOptions
{
    /// <summary>Data folder, relative to the working directory.</summary>
    public string Path { get; set; } = Defaults.StorePath;

    /// <summary>Full: an acknowledged write survives power loss. Normal: faster, survives process crashes only.</summary>
    public string Synchronous { get; set; } = "Full";
}

public sealed class WebSocketsOptions
{
    /// <summary>How often the server pings each device.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = Defaults.KeepAliveInterval;

    /// <summary>How long a ping may go unanswered before the device is dropped.</summary>
    public TimeSpan KeepAliveTimeout { get; set; } = Defaults.KeepAliveTimeout;

    /// <summary>Browser origins allowed besides same-origin; <c>*</c> allows every origin.</summary>
    public string[] AllowedOrigins { get; set; } = [];

    /// <summary>Serve the phase-1 echo endpoint <c>/ws/echo</c>.</summary>
    public bool EnableEcho { get; set; } = true;

    /// <summary>Negotiate permessage-deflate when a client offers it. Decompressed size is limited like wire size.</summary>
    public bool EnableCompression { get; set; }

    /// <summary>
    /// Answer device upgrades (<c>GET /ws</c>, <c>GET /ws/echo</c>) at the connection level, before Kestrel's HTTP
    /// layer, so no HTTP request stays alive behind each device (about 5 KiB less per device); every other request
    /// goes to the HTTP pipeline as before. <c>false</c>: device upgrades go through the HTTP pipeline too. With
    /// <c>EnableCompression</c>, and over HTTP/2, upgrades always take the HTTP pipeline.
    /// </summary>
    public bool ConnectionLevelUpgrade { get; set; } = true;
}

public sealed class LimitsOptions
{
    /// <summary>Largest message in bytes, inbound from a device (1009) and as an API body (413).</summary>
    public int MaxMessageBytes { get; set; } = Defaults.MaxMessageBytes;

    /// <summary>Items one <c>POST /api/messages/batch</c> may carry (400 <c>too_many_items</c> past it).</summary>
    public int MaxBatchItems { get; set; } = Defaults.MaxBatchItems;

    /// <summary>Messages a device's outbound queue holds before the device is closed with 4002.</summary>
    public int SendQueueMessages { get; set; } = Defaults.SendQueueMessages;

    /// <summary>Bytes a device's outbound queue holds before the device is closed with 4002.</summary>
    public long SendQueueBytes { get; set; } = Defaults.SendQueueBytes;

    /// <summary>Concurrent device (and echo) connections on this node; more get 503 with Retry-After.</summary>
    public int MaxConnections { get; set; } = Defaults.MaxConnections;

    /// <summary>New connections per second, token bucket refill (503 with Retry-After past it).</summary>
    public int ConnectsPerSecond { get; set; } = Defaults.ConnectsPerSecond;

    /// <summary>Token bucket size for new connections: how many may arrive at once.</summary>
    public int ConnectsBurst { get; set; } = Defaults.ConnectsBurst;

    /// <summary>Concurrent connections from one client address (429 with Retry-After past it); 0 = off.</summary>
    public int MaxConnectionsPerIp { get; set; }

    /// <summary>
    /// Messages per second one device may send (token bucket refill). Past it an envelope device's message is
    /// answered <c>rate_limited</c> and dropped; a raw device or an MQTT device is read no further
    /// until the budget refills (TCP flow control slows it down), so nothing it sent is lost.
    /// </summary>
    public int DeviceMessagesPerSecond { get; set; } = Defaults.DeviceMessagesPerSecond;

    /// <summary>How long a raw or MQTT device may stay held to its message rate without a break before it is closed with 1008 <c>rate_limited</c>.</summary>
    public TimeSpan ThrottledCloseAfter { get; set; } = Defaults.ThrottledCloseAfter;

    /// <summary>Messages one device may send at once before the rate applies.</summary>
    public int DeviceMessagesBurst { get; set; } = Defaults.DeviceMessagesBurst;

    /// <summary>Durable messages (ttl &gt; 0) one device may originate per minute, counting each member of a group publish; past it <c>quota_exceeded</c>.</summary>
    public int DeviceDurableMessagesPerMinute { get; set; } = Defaults.DeviceDurableMessagesPerMinute;

    /// <summary>Bytes one device's pending durable sends may hold in the store; past it <c>quota_exceeded</c>.</summary>
    public long DeviceStoredBytes { get; set; } = Defaults.DeviceStoredBytes;

    /// <summary>Groups one device may be a member of (envelope <c>join</c>: <c>quota_exceeded</c>; API: 409).</summary>
    public int MaxGroupsPerDevice { get; set; } = Defaults.MaxGroupsPerDevice;

    /// <summary>HTTP API requests per second on this node (429 past it); 0 = off.</summary>
    public int ApiRequestsPerSecond { get; set; }
}

public sealed class NetworkOptions
{
    /// <summary>Addresses of reverse proxies whose X-Forwarded-For is believed. Empty: the socket's address is the client's.</summary>
    public string[] KnownProxies { get; set; } = [];
}

public sealed class ShutdownOptions
{
    /// <summary>Seconds to drain and close devices on shutdown before aborting the rest.</summary>
    public int DrainSeconds { get; set; } = Defaults.DrainSeconds;
}

public sealed class ClusterOptions
{
    /// <summary>This node's id, reported as <c>node</c>. Generated when unset.</summary>
    public string? NodeId { get; set; }

    /// <summary>How long a node's devices stay present after it stops renewing its lease (it died).</summary>
    public TimeSpan PresenceLease { get; set; } = Defaults.PresenceLease;

    /// <summary>
    /// How long a device's connect on this node waits, when another node held the device, for that node to confirm it
    /// closed its session (only then do sends through that node stop reaching the old connection); past it the
    /// connect goes on anyway (a node that is gone, cut off from Redis, or too old to confirm).
    /// </summary>
    public TimeSpan TakeoverConfirmation { get; set; } = Defaults.TakeoverConfirmation;
}

/// <summary>Every default in one place.</summary>
public static class Defaults
{
    public const string StorePath = "./data";
    public const int MqttTcpPort = 1883;
    public const string MqttTcpAddress = "127.0.0.1";
    public static readonly TimeSpan MqttMaxKeepAlive = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan MqttMaxSessionExpiry = TimeSpan.FromDays(1);
    public static readonly TimeSpan RedisReplicationTimeout = TimeSpan.FromSeconds(1);
    public const string Url = "http://127.0.0.1:8080";
    public static readonly TimeSpan KeepAliveInterval = TimeSpan.FromSeconds(25);
    public static readonly TimeSpan KeepAliveTimeout = TimeSpan.FromSeconds(20);
    public const int MaxMessageBytes = 65536;
    public const int MaxBatchItems = 1000;
    public const int SendQueueMessages = 1000;
    public const long SendQueueBytes = 1048576;
    public const int DrainSeconds = 5;
    public const int DeviceListLimit = 1000;
    public const string RedisPrefix = "devicegate:";
    public static readonly TimeSpan PresenceLease = TimeSpan.FromSeconds(15);
    public const int MaxConnections = 100_000;
    public const int ConnectsPerSecond = 5_000;
    public const int ConnectsBurst = 10_000;
    public const int DeviceMessagesPerSecond = 200;
    public const int DeviceMessagesBurst = 400;
    public static readonly TimeSpan ThrottledCloseAfter = TimeSpan.FromMinutes(1);
    public const int DeviceDurableMessagesPerMinute = 600;
    public const long DeviceStoredBytes = 16 * 1024 * 1024;
    public const int MaxGroupsPerDevice = 100;
    public const int StateMaxBytes = 16384;

    /// <summary>Per-device budgets kept on a node: twice MaxConnections, within these bounds (about 200 bytes each).</summary>
    public const int MinDeviceBudgets = 10_000;
    public const int MaxDeviceBudgets = 1_000_000;

    /// <summary>How often budgets that have refilled are forgotten.</summary>
    public static readonly TimeSpan BudgetSweep = TimeSpan.FromSeconds(10);

    /// <summary>Reads one message may take (bounds fragment floods of tiny or empty frames).</summary>
    public const int MinReceivesPerMessage = 1024;
    public static readonly TimeSpan MaxTtl = TimeSpan.FromDays(7);
    public static readonly TimeSpan AckTimeout = TimeSpan.FromSeconds(30);
    public const int MaxInFlight = 32;
    public const int MaxQueuedPerDevice = 1000;
    public static readonly TimeSpan StatusRetention = TimeSpan.FromDays(1);

    /// <summary>Statuses of non-durable (ttl=0) messages kept in memory, at most.</summary>
    public const int InMemoryStatuses = 100_000;

    /// <summary>How long a failed commit (disk full, I/O error) keeps /readyz at 503 when nothing has been written since.</summary>
    public static readonly TimeSpan StoreFailureWindow = TimeSpan.FromSeconds(10);

    /// <summary>How often expired messages are marked, and final records past retention purged.</summary>
    public static readonly TimeSpan ExpirySweep = TimeSpan.FromSeconds(1);
    public static readonly TimeSpan PurgeSweep = TimeSpan.FromMinutes(1);
    public const int EventReplayBuffer = 10_000;
    public const int EventSubscriberBuffer = 10_000;
    public const long EventReplayBufferBytes = 64L * 1024 * 1024;
    public const long EventSubscriberBufferBytes = 16L * 1024 * 1024;
    public static readonly TimeSpan EventStalledReaderTimeout = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan EventKeepAlive = TimeSpan.FromSeconds(15);
    public const int WebhookBatchSize = 100;
    public const int WebhookQueueSize = 10_000;
    public static readonly TimeSpan RpcTimeout = TimeSpan.FromSeconds(10);
    public static readonly TimeSpan RpcMaxTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Envelope errors a device may cause in a burst before it is closed with 1008 policy.</summary>
    public const int EnvelopeErrorBurst = 50;

    /// <summary>Envelope errors per second a device may keep causing.</summary>
    public const double EnvelopeErrorsPerSecond = 5;
    public const int MinTokenSecretBytes = 32;
    public static readonly TimeSpan TokenClockSkew = TimeSpan.FromSeconds(30);

    /// <summary>How long a write already in progress may take once a device overflowed or is being closed.</summary>
    public static readonly TimeSpan CloseWriteTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Log lines that outsiders can cause (refusals, failing read loops) appear at most once per key per interval.</summary>
    public static readonly TimeSpan LogSummaryInterval = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan TakeoverConfirmation = TimeSpan.FromSeconds(1);

    /// <summary>How long the device has to answer our close frame before the socket is aborted.</summary>
    public static readonly TimeSpan CloseHandshakeTimeout = TimeSpan.FromSeconds(5);
}
