using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Playwright;
using static Microsoft.Playwright.Assertions;

namespace DeviceGate.Tests.Functional;

/// <summary>The dashboard in real headless Chromium (Debian's, driven by Playwright), against the real server.</summary>
public sealed class DashboardTests : IAsyncLifetime
{
    private TestGateway _gw = null!;
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;
    private IPage _page = null!;

    /// <summary>Where screenshots go; .ci/run sets it and prints it.</summary>
    public static string ScreenshotDir =>
        Environment.GetEnvironmentVariable("DEVICEGATE_SCREENSHOTS") is { Length: > 0 } dir ? dir : Path.Combine(Path.GetTempPath(), "devicegate-screenshots");

    public async Task InitializeAsync()
    {
        SetDefaultExpectTimeout(15_000);
        _gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Auth:Keys:readonly:Key"] = ReadOnlyKey,
            ["DeviceGate:Auth:Keys:readonly:Scopes:0"] = "devices:read",
            ["DeviceGate:Auth:Keys:readonly:Scopes:1"] = "state:read",
            ["DeviceGate:Auth:Keys:sender:Key"] = SenderKey,
            ["DeviceGate:Auth:Keys:sender:Scopes:0"] = "messages:send:kiosk-*",
        });
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        _page = await _browser.NewPageAsync(new BrowserNewPageOptions { ViewportSize = new ViewportSize { Width = 1200, Height = 800 } });
        _page.SetDefaultTimeout(15_000);
    }

    public async Task DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
        await _gw.DisposeAsync();
    }

    private async Task ShotAsync(string name)
    {
        Directory.CreateDirectory(ScreenshotDir);
        await _page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotDir, name + ".png"), FullPage = true });
    }

    private const string ReadOnlyKey = "dashboard-read-only-key-0123456789";
    private const string SenderKey = "dashboard-sender-key-0123456789";

    private async Task SignInAsync(string key = TestGateway.ApiKey)
    {
        await _page.GotoAsync(_gw.BaseUri.ToString());
        await _page.FillAsync("#apikey", key);
        await _page.ClickAsync("#signin button[type=submit]");
        if (key != TestGateway.ApiKey) return;
        await Expect(_page.Locator("#stat-connected")).ToBeVisibleAsync();
        // Live updates flow once the event stream is connected (the header says so).
        await Expect(_page.Locator("#live")).ToBeVisibleAsync();
    }

    [Fact]
    public async Task A_read_only_key_signs_in_sees_who_it_is_and_cannot_use_what_it_lacks()
    {
        using var device = await _gw.ConnectAsync("page-ro");
        await SignInAsync(ReadOnlyKey);
        await Expect(_page.Locator("#whoami")).ToHaveTextAsync("signed in as readonly");
        await Expect(_page.Locator("#stat-connected")).ToBeVisibleAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-ro");
        await Expect(_page.Locator("#device-details")).ToContainTextAsync("online");
        await Expect(_page.Locator("#state-desired")).ToBeVisibleAsync();
        foreach (var locked in new[] { "#send-form button[type=submit]", "#rpc-form button[type=submit]", "#disconnect", "#tags-form button[type=submit]", "#desired-form button[type=submit]" })
        {
            await Expect(_page.Locator(locked)).ToBeDisabledAsync();
        }
        await Expect(_page.Locator("#send-form")).ToContainTextAsync("needs messages:send");
        await Expect(_page.Locator("#device-messages")).ToContainTextAsync("messages:read");
        await ShotAsync("device-read-only");

        // A key that may only send to kiosks: no overview, but the send form of a kiosk works.
        await _page.ClickAsync("#signout");
        using var kiosk = await _gw.ConnectAsync("kiosk-page");
        await SignInAsync(SenderKey);
        await Expect(_page.Locator("main")).ToContainTextAsync("needs the scope devices:read");
        await _page.GotoAsync(_gw.BaseUri + "#/devices/kiosk-page");
        await Expect(_page.Locator("#send-form button[type=submit]")).ToBeEnabledAsync();
        await Expect(_page.Locator("#disconnect")).ToBeDisabledAsync();
        await _page.FillAsync("#payload", "to the kiosk");
        await _page.ClickAsync("#send-form button[type=submit]");
        Assert.Equal("to the kiosk", await kiosk.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_wrong_key_is_refused_and_the_right_one_signs_in()
    {
        await _page.GotoAsync(_gw.BaseUri.ToString());
        await ShotAsync("sign-in");
        await _page.FillAsync("#apikey", "not-the-key");
        await _page.ClickAsync("#signin button[type=submit]");
        await Expect(_page.Locator("#signin-error")).ToContainTextAsync("refused");
        await _page.FillAsync("#apikey", TestGateway.ApiKey);
        await _page.ClickAsync("#signin button[type=submit]");
        await Expect(_page.Locator("#stat-connected")).ToBeVisibleAsync();
        // The key lives in this tab's sessionStorage, never in a URL.
        Assert.DoesNotContain(TestGateway.ApiKey, _page.Url, StringComparison.Ordinal);
        Assert.Equal(TestGateway.ApiKey, await _page.EvaluateAsync<string>("sessionStorage.getItem('devicegate.apiKey')"));
    }

    [Fact]
    public async Task Overview_counters_move()
    {
        await SignInAsync();
        await Expect(_page.Locator("#stat-connected")).ToHaveTextAsync("0");
        using var a = await _gw.ConnectAsync("dash-a");
        using var b = await _gw.ConnectAsync("dash-b");
        await Expect(_page.Locator("#stat-connected")).ToHaveTextAsync("2");
        await ShotAsync("overview");
    }

    [Fact]
    public async Task A_device_appears_without_a_reload_and_shows_offline_when_it_leaves()
    {
        await SignInAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices");
        await Expect(_page.Locator("#device-rows")).ToBeVisibleAsync();
        var device = await _gw.ConnectAsync("live-one");
        var row = _page.Locator("tr[data-device='live-one']");
        await Expect(row).ToContainTextAsync("online");
        await ShotAsync("devices");
        await device.CloseCleanlyAsync();
        device.Dispose();
        await Expect(row).ToContainTextAsync("offline");
        // The page was never reloaded: the sign-in state is still the same document.
        Assert.Equal(TestGateway.ApiKey, await _page.EvaluateAsync<string>("sessionStorage.getItem('devicegate.apiKey')"));
    }

    [Fact]
    public async Task A_message_sent_from_the_page_arrives_with_the_exact_payload()
    {
        using var device = await _gw.ConnectAsync("page-target");
        await SignInAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-target");
        await Expect(_page.Locator("#device-details")).ToContainTextAsync("online");
        await _page.FillAsync("#payload", "hello from the page ✓");
        await _page.ClickAsync("#send-form button[type=submit]");
        Assert.Equal("hello from the page ✓", await device.ReceiveTextAsync());
        await Expect(_page.Locator("#result")).ToContainTextAsync("sent");
        await ShotAsync("device");
    }

    [Fact]
    public async Task An_rpc_from_the_page_shows_the_device_reply()
    {
        using var device = await _gw.ConnectEnvelopeAsync("page-rpc");
        var serving = Task.Run(async () =>
        {
            var rpc = await device.ReceiveJsonAsync(TimeSpan.FromSeconds(30));
            await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = new { battery = 87 } });
        });
        await SignInAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-rpc");
        await _page.FillAsync("#rpc-payload", "{\"cmd\":\"battery\"}");
        await _page.ClickAsync("#rpc-form button[type=submit]");
        await Expect(_page.Locator("#result")).ToContainTextAsync("{\"battery\":87}");
        await serving;
    }

    private async Task PatchDesiredAsync(string device, string patch)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, $"api/devices/{device}/state/desired")
        {
            Content = new StringContent(patch, System.Text.Encoding.UTF8, "application/merge-patch+json"),
        };
        using var r = await _gw.Api.SendAsync(request);
        Assert.Equal(System.Net.HttpStatusCode.OK, r.StatusCode);
    }

    [Fact]
    public async Task The_state_editor_shows_desired_reported_and_delta_saves_with_if_match_and_says_when_someone_else_changed_it()
    {
        using var device = await _gw.ConnectEnvelopeAsync("page-state");
        await PatchDesiredAsync("page-state", """{"fw":"1.4","brightness":70}""");
        var first = await device.ReceiveJsonAsync();
        await device.SendJsonAsync(new { type = "ack", id = first.Str("id") });
        await device.SendTextAsync("""{"type":"report","state":{"fw":"1.3","brightness":70}}""");
        Assert.Equal("reported", (await device.ReceiveJsonAsync()).Str("type"));

        await SignInAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-state");
        await Expect(_page.Locator("#state-desired")).ToContainTextAsync("\"fw\": \"1.4\"");
        await Expect(_page.Locator("#state-reported")).ToContainTextAsync("\"fw\": \"1.3\"");
        await Expect(_page.Locator("#state-delta")).ToContainTextAsync("\"fw\": \"1.4\"");
        await Expect(_page.Locator("#state-delta")).Not.ToContainTextAsync("brightness");
        await Expect(_page.Locator("#state-versions")).ToContainTextAsync("acked v1");

        // Edit and save: the device receives the new desired state.
        await _page.FillAsync("#desired-editor", """{"fw":"1.5","brightness":70}""");
        await _page.ClickAsync("#desired-form button[type=submit]");
        await Expect(_page.Locator("#state-note")).ToContainTextAsync("version 2");
        var second = await device.ReceiveJsonAsync();
        Assert.Equal(("state", 2, "1.5"), (second.Str("type"), second.GetProperty("version").GetInt32(), second.GetProperty("desired").Str("fw")));
        await ShotAsync("device-state");

        // Someone else changes desired while the operator edits: the save is refused and the page says so.
        await _page.FillAsync("#desired-editor", """{"fw":"1.6"}""");
        await PatchDesiredAsync("page-state", """{"brightness":40}""");
        await _page.ClickAsync("#desired-form button[type=submit]");
        await Expect(_page.Locator("#state-note")).ToContainTextAsync("Someone else changed the desired state");
        var doc = await _gw.Api.GetJsonAsync("api/devices/page-state/state");
        Assert.Equal((3, "1.5", 40), (doc.GetProperty("desiredVersion").GetInt32(), doc.GetProperty("desired").Str("fw"), doc.GetProperty("desired").GetProperty("brightness").GetInt32()));
        await ShotAsync("device-state-conflict");
        // Reload shows their change; saving then works.
        await _page.ClickAsync("#desired-reload");
        await Expect(_page.Locator("#desired-editor")).ToHaveValueAsync(new System.Text.RegularExpressions.Regex("\"brightness\": 40"));
        await _page.ClickAsync("#desired-form button[type=submit]");
        await Expect(_page.Locator("#state-note")).ToContainTextAsync("Saved");
    }

    [Fact]
    public async Task Tags_are_shown_and_edited_on_the_device_page_and_filter_the_device_list()
    {
        using var a = await _gw.ConnectAsync("page-tag-a");
        using var b = await _gw.ConnectAsync("page-tag-b");
        using (var r = await _gw.Api.PutAsync("api/devices/page-tag-b/tags", new StringContent("""{"site":"paris"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(System.Net.HttpStatusCode.NoContent, r.StatusCode);
        }
        await SignInAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-tag-a");
        await Expect(_page.Locator("#device-tags")).ToContainTextAsync("No tags");
        await _page.FillAsync("#tags-editor", "site=berlin\nmodel=k2");
        await _page.ClickAsync("#tags-form button[type=submit]");
        await Expect(_page.Locator("#device-tags")).ToContainTextAsync("site: berlin");
        var tags = (await _gw.Api.GetJsonAsync("api/devices/page-tag-a")).GetProperty("tags");
        Assert.Equal(("berlin", "k2"), (tags.Str("site"), tags.Str("model")));
        await _page.FillAsync("#tags-editor", "bad key=x");
        await _page.ClickAsync("#tags-form button[type=submit]");
        await Expect(_page.Locator("#tags-note")).ToContainTextAsync("tag key");

        await _page.GotoAsync(_gw.BaseUri + "#/devices");
        await Expect(_page.Locator("tr[data-device='page-tag-b']")).ToBeVisibleAsync();
        await _page.FillAsync("#tag-filter", "site:berlin");
        await _page.ClickAsync("#device-search button[type=submit]");
        await Expect(_page.Locator("tr[data-device='page-tag-b']")).ToHaveCountAsync(0);
        await Expect(_page.Locator("tr[data-device='page-tag-a']")).ToBeVisibleAsync();
        await ShotAsync("devices-tag-filter");
    }

    [Fact]
    public async Task A_view_still_loading_when_the_next_one_opens_never_replaces_it()
    {
        using var device = await _gw.ConnectAsync("page-late");
        await SignInAsync();
        // The overview's data comes slowly (a loaded server); the operator opens a device meanwhile.
        await _page.RouteAsync("**/api/stats", async route =>
        {
            await Task.Delay(1000);
            await route.ContinueAsync();
        });
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-late");
        await Expect(_page.Locator("#device-title")).ToBeVisibleAsync();
        var statsAsked = _page.WaitForRequestAsync("**/api/stats");
        var slowStats = _page.WaitForResponseAsync("**/api/stats");
        await _page.GotoAsync(_gw.BaseUri + "#/overview");
        await statsAsked; // the overview is loading now
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-late");
        await Expect(_page.Locator("#device-title")).ToBeVisibleAsync();
        await slowStats;
        await _page.UnrouteAllAsync(new PageUnrouteAllOptions { Behavior = UnrouteBehavior.Wait });
        // The overview finished loading after the device page opened: it stays out of sight, and does not come back.
        await Expect(_page.Locator("#device-details")).ToContainTextAsync("online");
        await Expect(_page.Locator("#stat-connected")).ToHaveCountAsync(0);
        Assert.Equal(1, await _page.Locator("#device-title").CountAsync());
    }

    [Fact]
    public async Task Device_text_is_shown_as_text_never_run()
    {
        using var device = await _gw.ConnectAsync("page-xss");
        await SignInAsync();
        await _page.GotoAsync(_gw.BaseUri + "#/devices/page-xss");
        await Expect(_page.Locator("#device-details")).ToContainTextAsync("online");
        const string hostile = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";
        await device.SendTextAsync(hostile);
        await Expect(_page.Locator(".event-detail").First).ToHaveTextAsync(hostile);
        Assert.True(await _page.EvaluateAsync<bool>("window.pwned === undefined"));
        Assert.Equal(0, await _page.EvaluateAsync<int>("document.querySelectorAll('main script, main img').length"));
        await ShotAsync("device-events");
    }

    [Fact]
    public async Task The_dashboard_is_served_with_a_strict_content_security_policy()
    {
        var response = await _page.GotoAsync(_gw.BaseUri.ToString());
        var csp = response!.Headers["content-security-policy"];
        Assert.Contains("script-src 'self'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        Assert.Contains("frame-ancestors 'none'", csp);
        // The API reference keeps working under its own policy.
        var docs = await _page.GotoAsync(_gw.BaseUri + "docs");
        Assert.Equal(200, docs!.Status);
        Assert.False(docs.Headers.ContainsKey("content-security-policy"));
    }

    [Fact]
    public async Task Groups_and_message_status_pages_work_and_fit_a_phone()
    {
        using var device = await _gw.ConnectAsync("grouped");
        await _gw.Api.PutAsync("api/groups/lobby/devices/grouped", null);
        using var queued = await _gw.Api.PostTextAsync("api/devices/later-one/messages?ttl=600", "waiting");
        var id = (await queued.JsonAsync()).Str("id");
        await SignInAsync();

        await _page.GotoAsync(_gw.BaseUri + "#/groups");
        await Expect(_page.Locator("main table")).ToContainTextAsync("lobby");
        await ShotAsync("groups");
        await _page.GotoAsync(_gw.BaseUri + "#/groups/lobby");
        await Expect(_page.Locator("#group-members")).ToContainTextAsync("grouped");
        await _page.FillAsync("#group-payload", "lobby news");
        await _page.ClickAsync("#publish-form button[type=submit]");
        Assert.Equal("lobby news", await device.ReceiveTextAsync());
        await ShotAsync("group");

        await _page.GotoAsync(_gw.BaseUri + $"#/messages/{id}");
        await Expect(_page.Locator("#message-status")).ToContainTextAsync("queued");
        await ShotAsync("message");

        await _page.SetViewportSizeAsync(390, 844);
        await _page.GotoAsync(_gw.BaseUri + "#/devices");
        await Expect(_page.Locator("tr[data-device='grouped']")).ToBeVisibleAsync();
        Assert.True(await _page.EvaluateAsync<bool>("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the devices page scrolls sideways on a phone");
        await ShotAsync("devices-phone");
    }
}
