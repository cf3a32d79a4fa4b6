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
        _gw = await TestGateway.StartAsync();
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

    private async Task SignInAsync()
    {
        await _page.GotoAsync(_gw.BaseUri.ToString());
        await _page.FillAsync("#apikey", TestGateway.ApiKey);
        await _page.ClickAsync("#signin button[type=submit]");
        await Expect(_page.Locator("#stat-connected")).ToBeVisibleAsync();
        // Live updates flow once the event stream is connected (the header says so).
        await Expect(_page.Locator("#live")).ToBeVisibleAsync();
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
