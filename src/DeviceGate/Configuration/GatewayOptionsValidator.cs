using Microsoft.Extensions.Options;

namespace DeviceGate.Configuration;

/// <summary>Start-up validation: every failure names the configuration key it is about.</summary>
internal sealed class GatewayOptionsValidator : IValidateOptions<GatewayOptions>
{
    public ValidateOptionsResult Validate(string? name, GatewayOptions o)
    {
        var errors = new List<string>();
        void Require(bool ok, string key, string rule)
        {
            if (!ok) errors.Add($"DeviceGate:{key} {rule}.");
        }

        if (o.Auth.TokenSecret is { } secret)
        {
            Require(System.Text.Encoding.UTF8.GetByteCount(secret) >= Defaults.MinTokenSecretBytes, "Auth:TokenSecret",
                $"must be at least {Defaults.MinTokenSecretBytes} bytes (UTF-8); generate one with: openssl rand -base64 48");
        }
        for (var i = 0; i < o.Auth.PreviousTokenSecrets.Length; i++)
        {
            Require(System.Text.Encoding.UTF8.GetByteCount(o.Auth.PreviousTokenSecrets[i]) >= Defaults.MinTokenSecretBytes, $"Auth:PreviousTokenSecrets:{i}",
                $"must be at least {Defaults.MinTokenSecretBytes} bytes (UTF-8), like DeviceGate:Auth:TokenSecret");
        }
        var jwt = o.Auth.Jwt;
        foreach (var (key, value) in new[] { ("Authority", jwt.Authority), ("JwksUrl", jwt.JwksUrl) })
        {
            if (string.IsNullOrWhiteSpace(value)) continue;
            var absolute = Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https";
            Require(absolute, $"Auth:Jwt:{key}", "must be an absolute http(s) URL");
            if (absolute)
            {
                Require(jwt.IsAllowedAddress(uri!), $"Auth:Jwt:{key}",
                    "must be https (with DeviceGate:Auth:Jwt:RequireHttps=false, http is allowed for 127.0.0.1, localhost and [::1] only)");
            }
        }
        Require(string.IsNullOrWhiteSpace(jwt.Authority) || string.IsNullOrWhiteSpace(jwt.JwksUrl), "Auth:Jwt:JwksUrl", "must not be set together with DeviceGate:Auth:Jwt:Authority (the authority names its key set)");
        foreach (var alg in jwt.Algorithms)
        {
            Require(JwtOptions.SupportedAlgorithms.Contains(alg), "Auth:Jwt:Algorithms", $"may list only {string.Join(", ", JwtOptions.SupportedAlgorithms)} ('{alg}' is not one)");
        }
        Require(jwt.RefreshInterval >= TimeSpan.FromSeconds(1), "Auth:Jwt:RefreshInterval", "must be at least 00:00:01");
        Require(!string.IsNullOrWhiteSpace(jwt.DeviceIdClaim), "Auth:Jwt:DeviceIdClaim", "must not be empty");
        Require(string.IsNullOrWhiteSpace(jwt.ApiAudience) || jwt.Enabled, "Auth:Jwt:ApiAudience", "needs DeviceGate:Auth:Jwt:Authority or JwksUrl (API tokens come from that issuer)");
        for (var i = 0; i < o.Auth.ApiKeys.Length; i++)
        {
            Require(o.Auth.ApiKeys[i].Length >= 16, $"Auth:ApiKeys:{i}", "must be at least 16 characters");
        }
        Require(!string.IsNullOrWhiteSpace(o.Store.Path), "Store:Path", "must not be empty");
        Require(o.Mqtt.TcpPort is >= 0 and <= 65535, "Mqtt:TcpPort", "must be between 0 and 65535 (0: no TCP listener)");
        Require(System.Net.IPAddress.TryParse(o.Mqtt.TcpAddress, out _), "Mqtt:TcpAddress", "must be an IP address (0.0.0.0 for every interface)");
        Require(o.Mqtt.MaxKeepAlive >= TimeSpan.FromSeconds(1) && o.Mqtt.MaxKeepAlive <= TimeSpan.FromSeconds(65535), "Mqtt:MaxKeepAlive",
            "must be between 00:00:01 and 18:12:15 (65535 s, MQTT's largest)");
        Require(o.Mqtt.MaxSessionExpiry >= TimeSpan.Zero && o.Mqtt.MaxSessionExpiry < TimeSpan.FromSeconds(uint.MaxValue), "Mqtt:MaxSessionExpiry",
            "must be between 00:00:00 (remember nothing) and 49710.06:28:14 (MQTT's largest)");
        Require(o.WebSockets.KeepAliveInterval >= TimeSpan.Zero, "WebSockets:KeepAliveInterval", "must not be negative (00:00:00 turns pings off)");
        Require(o.WebSockets.KeepAliveTimeout >= TimeSpan.Zero, "WebSockets:KeepAliveTimeout", "must not be negative (00:00:00 waits for pongs forever)");
        Require(o.Limits.MaxMessageBytes is >= 1 and <= 64 * 1024 * 1024, "Limits:MaxMessageBytes", "must be between 1 and 67108864");
        Require(o.Limits.MaxBatchItems is >= 1 and <= 100_000, "Limits:MaxBatchItems", "must be between 1 and 100000");
        Require(o.Limits.SendQueueMessages >= 1, "Limits:SendQueueMessages", "must be at least 1");
        Require(o.Limits.SendQueueBytes >= 1, "Limits:SendQueueBytes", "must be at least 1");
        Require(o.Shutdown.DrainSeconds is >= 0 and <= 3600, "Shutdown:DrainSeconds", "must be between 0 and 3600");
        Require(o.Events.ReplayBuffer is >= 1 and <= 10_000_000, "Events:ReplayBuffer", "must be between 1 and 10000000");
        Require(o.Events.SubscriberBuffer is >= 1 and <= 10_000_000, "Events:SubscriberBuffer", "must be between 1 and 10000000");
        Require(o.Events.ReplayBufferBytes >= 1, "Events:ReplayBufferBytes", "must be at least 1");
        Require(o.Events.SubscriberBufferBytes >= 1, "Events:SubscriberBufferBytes", "must be at least 1");
        Require(o.Events.StalledReaderTimeout > TimeSpan.Zero, "Events:StalledReaderTimeout", "must be positive");
        Require(o.Events.KeepAliveInterval > TimeSpan.Zero, "Events:KeepAliveInterval", "must be positive");
        if (!string.IsNullOrEmpty(o.Webhooks.Url))
        {
            Require(Uri.TryCreate(o.Webhooks.Url, UriKind.Absolute, out var hook) && (hook.Scheme == "http" || hook.Scheme == "https"), "Webhooks:Url", "must be an absolute http(s) URL");
            Require(!string.IsNullOrEmpty(o.Webhooks.Secret) && System.Text.Encoding.UTF8.GetByteCount(o.Webhooks.Secret) >= 16, "Webhooks:Secret",
                "must be set (at least 16 bytes) when DeviceGate:Webhooks:Url is set, so receivers can verify the signature");
        }
        Require(o.Webhooks.BatchSize is >= 1 and <= 10_000, "Webhooks:BatchSize", "must be between 1 and 10000");
        Require(o.Webhooks.QueueSize >= 1, "Webhooks:QueueSize", "must be at least 1");
        Require(o.Rpc.DefaultTimeout > TimeSpan.Zero && o.Rpc.DefaultTimeout <= o.Rpc.MaxTimeout, "Rpc:DefaultTimeout", "must be positive and at most DeviceGate:Rpc:MaxTimeout");
        if (!string.IsNullOrWhiteSpace(o.Redis.Configuration))
        {
            // Generated secrets would differ per node: a cluster needs them configured, the same on every node.
            Require(!string.IsNullOrEmpty(o.Auth.TokenSecret), "Auth:TokenSecret", "must be configured in cluster mode (DeviceGate:Redis:Configuration is set): every node must share it");
            Require(o.Auth.ApiKeys.Length > 0 || o.Auth.Keys.Count > 0, "Auth:ApiKeys", "(or DeviceGate:Auth:Keys) must list at least one key in cluster mode (DeviceGate:Redis:Configuration is set): every node must share them");
            Require(o.Cluster.PresenceLease >= TimeSpan.FromSeconds(1), "Cluster:PresenceLease", "must be at least 00:00:01");
            Require(o.Cluster.TakeoverConfirmation > TimeSpan.Zero && o.Cluster.TakeoverConfirmation <= TimeSpan.FromMinutes(1), "Cluster:TakeoverConfirmation",
                "must be more than 0 and at most 00:01:00");
        }
        Require(!string.IsNullOrEmpty(o.Redis.Prefix) && o.Redis.Prefix.IndexOfAny(['{', '}']) < 0, "Redis:Prefix", "must not be empty nor contain { or } (they mark Redis Cluster hash tags in key names)");
        Require(o.Redis.MinReplicas is >= 0 and <= 16, "Redis:MinReplicas", "must be between 0 (acknowledge once the primary has it) and 16");
        Require(o.Redis.ReplicationTimeout > TimeSpan.Zero && o.Redis.ReplicationTimeout <= TimeSpan.FromMinutes(1), "Redis:ReplicationTimeout",
            "must be more than 00:00:00 and at most 00:01:00");
        Require(o.Store.Synchronous is "Full" or "Normal" or "full" or "normal" or "FULL" or "NORMAL", "Store:Synchronous", "must be Full or Normal");
        Require(o.Delivery.DefaultTtl >= TimeSpan.Zero && o.Delivery.DefaultTtl <= o.Delivery.MaxTtl, "Delivery:DefaultTtl", "must be between 00:00:00 and DeviceGate:Delivery:MaxTtl");
        Require(o.Delivery.MaxTtl > TimeSpan.Zero, "Delivery:MaxTtl", "must be positive");
        Require(o.Delivery.AckTimeout > TimeSpan.Zero, "Delivery:AckTimeout", "must be positive");
        Require(o.Delivery.MaxInFlight is >= 1 and <= 10_000, "Delivery:MaxInFlight", "must be between 1 and 10000");
        Require(o.Delivery.MaxQueuedPerDevice >= 1, "Delivery:MaxQueuedPerDevice", "must be at least 1");
        Require(o.Delivery.StatusRetention > TimeSpan.Zero, "Delivery:StatusRetention", "must be positive");
        Require(o.Limits.MaxConnections >= 1, "Limits:MaxConnections", "must be at least 1");
        Require(o.Limits.ConnectsPerSecond >= 1, "Limits:ConnectsPerSecond", "must be at least 1");
        Require(o.Limits.ConnectsBurst >= 1, "Limits:ConnectsBurst", "must be at least 1");
        Require(o.Limits.MaxConnectionsPerIp >= 0, "Limits:MaxConnectionsPerIp", "must be 0 (off) or more");
        Require(o.Limits.DeviceMessagesPerSecond >= 1, "Limits:DeviceMessagesPerSecond", "must be at least 1");
        Require(o.Limits.DeviceMessagesBurst >= 1, "Limits:DeviceMessagesBurst", "must be at least 1");
        Require(o.Limits.ThrottledCloseAfter > TimeSpan.Zero, "Limits:ThrottledCloseAfter", "must be positive");
        Require(o.Limits.DeviceDurableMessagesPerMinute >= 1, "Limits:DeviceDurableMessagesPerMinute", "must be at least 1");
        Require(o.Limits.DeviceStoredBytes >= 1, "Limits:DeviceStoredBytes", "must be at least 1");
        Require(o.Limits.MaxGroupsPerDevice >= 1, "Limits:MaxGroupsPerDevice", "must be at least 1");
        Require(o.State.MaxBytes is >= 2 and <= 16 * 1024 * 1024, "State:MaxBytes", "must be between 2 and 16777216");
        Require(o.Limits.ApiRequestsPerSecond >= 0, "Limits:ApiRequestsPerSecond", "must be 0 (off) or more");
        foreach (var proxy in o.Network.KnownProxies)
        {
            Require(System.Net.IPAddress.TryParse(proxy, out _), "Network:KnownProxies", $"entries must be IP addresses (got '{proxy}')");
        }
        foreach (var origin in o.WebSockets.AllowedOrigins)
        {
            Require(origin == "*" || Uri.TryCreate(origin, UriKind.Absolute, out _), "WebSockets:AllowedOrigins",
                $"entries must be * or an absolute origin such as https://example.com (got '{origin}')");
        }
        if (o.Cluster.NodeId is { } node)
        {
            Require(DeviceId.IsValid(node), "Cluster:NodeId", "must be 1-128 characters of [A-Za-z0-9._:-] starting with a letter or digit");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
