using System.Net;
using System.Net.Http.Headers;
using System.Text;
using DeviceGate.Api;
using DeviceGate.Auth;
using DeviceGate.Tests.Infrastructure;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

/// <summary>Scoped API keys (issue 16): every route against every scope, device patterns, hashed keys, whoami, audit.</summary>
public sealed class ApiScopeTests : GatewayTest
{
    private static string KeyOf(string scope) => $"key-for-{scope.Replace(':', '-')}-0123456789";

    protected override IReadOnlyDictionary<string, string> Settings
    {
        get
        {
            var s = new Dictionary<string, string>();
            foreach (var scope in ApiScopes.All)
            {
                var name = scope.Replace(':', '-');
                s[$"DeviceGate:Auth:Keys:{name}:Key"] = KeyOf(scope);
                s[$"DeviceGate:Auth:Keys:{name}:Scopes:0"] = scope;
            }
            s["DeviceGate:Auth:Keys:kiosk-sender:Key"] = "kiosk-sender-key-0123456789";
            s["DeviceGate:Auth:Keys:kiosk-sender:Scopes:0"] = "messages:send:kiosk-*";
            s["DeviceGate:Auth:Keys:kiosk-sender:Scopes:1"] = "messages:read:kiosk-*";
            s["DeviceGate:Auth:Keys:kiosk-events:Key"] = "kiosk-events-key-0123456789";
            s["DeviceGate:Auth:Keys:kiosk-events:Scopes:0"] = "events:read:kiosk-*";
            s["DeviceGate:Auth:Keys:hashed:Hash"] = ApiCallers.HashText("a-hashed-key-0123456789");
            s["DeviceGate:Auth:Keys:hashed:Scopes:0"] = "devices:read";
            return s;
        }
    }

    private HttpClient Client(string key)
    {
        var http = ApiExtensions.Client(Gw.BaseUri, key);
        return http;
    }

    /// <summary>One request per route, named like the route's endpoint (so the table below covers every route).</summary>
    private static readonly (string Endpoint, string Method, string Path, string? Body)[] Calls =
    [
        ("SendToDevice", "POST", "api/devices/kiosk-1/messages", "hi"),
        ("SendBatch", "POST", "api/messages/batch", """[{"device":"kiosk-1","text":"hi"}]"""),
        ("Broadcast", "POST", "api/broadcast", "hi"),
        ("PublishToGroup", "POST", "api/groups/g1/messages", "hi"),
        ("GetMessage", "GET", "api/messages/no-such-message", null),
        ("DeviceMessages", "GET", "api/devices/kiosk-1/messages", null),
        ("CancelMessage", "DELETE", "api/messages/no-such-message", null),
        ("ListDevices", "GET", "api/devices", null),
        ("GetDevice", "GET", "api/devices/kiosk-1", null),
        ("ListGroups", "GET", "api/groups", null),
        ("GetGroup", "GET", "api/groups/g1", null),
        ("Stats", "GET", "api/stats", null),
        ("DisconnectDevice", "DELETE", "api/devices/kiosk-1/connection", null),
        ("RevokeDeviceTokens", "POST", "api/devices/kiosk-1/revoke-tokens", null),
        ("ForgetDevice", "DELETE", "api/devices/kiosk-1", null),
        ("AddToGroup", "PUT", "api/groups/g1/devices/kiosk-1", null),
        ("RemoveFromGroup", "DELETE", "api/groups/g1/devices/kiosk-1", null),
        ("SetDeviceTags", "PUT", "api/devices/kiosk-1/tags", "{}"),
        ("CallDevice", "POST", "api/devices/kiosk-1/rpc?timeout=0.1", "{}"),
        ("EventStream", "GET", "api/events", null),
        ("GetDeviceState", "GET", "api/devices/kiosk-1/state", null),
        ("PatchDesiredState", "PATCH", "api/devices/kiosk-1/state/desired", "{}"),
        ("PutDesiredState", "PUT", "api/devices/kiosk-1/state/desired", "{}"),
        ("PatchReportedState", "PATCH", "api/devices/kiosk-1/state/reported", "{}"),
        ("WhoAmI", "GET", "api/whoami", null),
    ];

    private static async Task<(HttpStatusCode Status, string Body)> CallAsync(HttpClient http, string method, string path, string? body)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, body.StartsWith('{') || body.StartsWith('[') ? "application/json" : "text/plain");
        // Headers only: the event stream never ends by itself.
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var text = response.Content.Headers.ContentType?.MediaType == "text/event-stream" ? "" : await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text);
    }

    [Fact]
    public void Every_api_route_has_a_scope_rule_and_a_call_in_this_test()
    {
        var names = Gw.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/api", StringComparison.Ordinal) == true)
            .Select(e => e.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName ?? e.RoutePattern.RawText!)
            .ToHashSet();
        Assert.Equal(names.Order(), ApiAccess.Rules.Keys.Order());
        Assert.Equal(names.Order(), Calls.Select(c => c.Endpoint).Order());
    }

    [Fact]
    public async Task Each_scope_allows_exactly_its_routes()
    {
        foreach (var scope in ApiScopes.All)
        {
            using var http = Client(KeyOf(scope));
            foreach (var (endpoint, method, path, body) in Calls)
            {
                var rule = ApiAccess.Rules[endpoint];
                var allowed = rule.Scope is null || scope == ApiScopes.Admin || rule.Scope == scope;
                var (status, text) = await CallAsync(http, method, path, body);
                if (allowed)
                {
                    Assert.True(status is not (HttpStatusCode.Forbidden or HttpStatusCode.Unauthorized), $"{scope} on {endpoint}: {(int)status} {text}");
                }
                else
                {
                    Assert.True(status == HttpStatusCode.Forbidden, $"{scope} on {endpoint}: {(int)status} {text}");
                    Assert.Contains("\"type\":\"insufficient_scope\"", text);
                    Assert.Contains($"\"scope\":\"{rule.Scope}\"", text);
                }
            }
        }
    }

    [Fact]
    public async Task A_device_pattern_limits_single_sends_batch_items_and_message_status()
    {
        using var http = Client("kiosk-sender-key-0123456789");
        using (var ok = await http.PostAsync("api/devices/kiosk-7/messages?ttl=60", new StringContent("hi")))
        {
            Assert.Equal(HttpStatusCode.Accepted, ok.StatusCode);
            var id = (await ok.JsonAsync()).Str("id");
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"api/messages/{id}")).StatusCode);
        }
        var (status, text) = await CallAsync(http, "POST", "api/devices/lobby-1/messages", "hi");
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.Contains("lobby-1", text);
        Assert.Equal(HttpStatusCode.Forbidden, (await CallAsync(http, "POST", "api/broadcast", "hi")).Status);

        using var batch = await http.PostAsync("api/messages/batch", new StringContent("""[{"device":"kiosk-8","text":"a","ttl":60},{"device":"lobby-2","text":"b","ttl":60}]""", Encoding.UTF8, "application/json"));
        var results = (await batch.JsonAsync()).GetProperty("results");
        Assert.Equal("queued", results[0].Str("status"));
        Assert.Equal(("insufficient_scope", "messages:send", 403), (results[1].Str("type"), results[1].Str("scope"), results[1].GetProperty("status").GetInt32()));

        // Another device's message: its status is not this key's to read.
        using var other = await Gw.Api.PostAsync("api/devices/lobby-3/messages?ttl=60", new StringContent("x"));
        var otherId = (await other.JsonAsync()).Str("id");
        Assert.Equal(HttpStatusCode.Forbidden, (await http.GetAsync($"api/messages/{otherId}")).StatusCode);
    }

    [Fact]
    public async Task An_events_reader_with_a_pattern_sees_only_matching_devices()
    {
        using var http = Client("kiosk-events-key-0123456789");
        await using var events = await SseClient.OpenAsync(http, "api/events?types=connected");
        using (await Gw.ConnectAsync("lobby-9")) { }
        using var kiosk = await Gw.ConnectAsync("kiosk-9");
        Assert.Equal("kiosk-9", (await events.NextAsync()).Data.Str("device"));
        Assert.Equal(HttpStatusCode.Forbidden, (await CallAsync(http, "GET", "api/events?device=lobby-9", null)).Status);
    }

    [Fact]
    public async Task Hashed_keys_work_and_whoami_names_the_caller_and_its_scopes()
    {
        using var hashed = Client("a-hashed-key-0123456789");
        var me = await hashed.GetJsonAsync("api/whoami");
        Assert.Equal("hashed", me.Str("name"));
        Assert.Equal(["devices:read"], me.GetProperty("scopes").EnumerateArray().Select(s => s.GetString()!).ToArray());
        Assert.Equal(HttpStatusCode.OK, (await hashed.GetAsync("api/devices")).StatusCode);
        using var kiosk = Client("kiosk-sender-key-0123456789");
        Assert.Equal(["messages:send:kiosk-*", "messages:read:kiosk-*"], (await kiosk.GetJsonAsync("api/whoami")).GetProperty("scopes").EnumerateArray().Select(s => s.GetString()!).ToArray());
        // The key configured under ApiKeys has every scope.
        var admin = await Gw.Api.GetJsonAsync("api/whoami");
        Assert.Equal(("ApiKeys:0", "admin"), (admin.Str("name"), admin.GetProperty("scopes")[0].GetString()));
        using var nobody = Client("not-a-key-at-all-0123456789");
        Assert.Equal(HttpStatusCode.Unauthorized, (await nobody.GetAsync("api/whoami")).StatusCode);
    }

    [Fact]
    public async Task Calls_that_change_something_are_audited_once_without_the_key()
    {
        using var http = Client(KeyOf(ApiScopes.DevicesManage));
        using (await http.PutAsync("api/devices/audited-1/tags", new StringContent("""{"site":"x"}""", Encoding.UTF8, "application/json"))) { }
        using (await http.PostAsync("api/devices/audited-1/messages", new StringContent("refused"))) { }
        using (await http.GetAsync("api/devices")) { }
        // Its own category, so operators can route it or turn it down alone.
        var audit = Gw.Logs.Lines.Where(l => l.Contains("DeviceGate.Audit[1600]", StringComparison.Ordinal)).ToList();
        Assert.Single(audit, l => l.Contains("devices-manage PUT /api/devices/{id}/tags on audited-1: 204", StringComparison.Ordinal));
        Assert.Single(audit, l => l.Contains("devices-manage POST /api/devices/{id}/messages on audited-1: 403", StringComparison.Ordinal));
        Assert.DoesNotContain(audit, l => l.Contains("GET", StringComparison.Ordinal));
        Assert.DoesNotContain(Gw.Logs.Lines, l => l.Contains(KeyOf(ApiScopes.DevicesManage), StringComparison.Ordinal) || l.Contains(TestGateway.ApiKey, StringComparison.Ordinal));
        var metrics = await (await Gw.Api.GetAsync("metrics")).Content.ReadAsStringAsync();
        Assert.Contains("devicegate_api_audit_total{key=\"devices-manage\",route=\"/api/devices/{id}/tags\",status=\"204\"} 1", metrics);
    }
}
