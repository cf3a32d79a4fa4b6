using System.Collections.Concurrent;
using DeviceGate.Client;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>The .NET device SDK against the real gateway.</summary>
public sealed class DeviceClientTests : IDisposable
{
    private readonly string _dir = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_dir);

    private static DeviceClient Client(Uri server, string id, Func<CancellationToken, ValueTask<string>> tokens) =>
        new(new DeviceClientOptions { Server = server, DeviceId = id, TokenProvider = tokens, InitialBackoff = TimeSpan.FromMilliseconds(100), MaxBackoff = TimeSpan.FromSeconds(1) });

    [Fact]
    public async Task Messages_reach_the_handler_and_are_acked_and_rpcs_are_answered()
    {
        await using var gw = await TestGateway.StartAsync();
        var received = new TaskCompletionSource<DeviceGate.Client.DeviceMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var client = Client(gw.BaseUri, "sdk-1", _ => ValueTask.FromResult(gw.Token("sdk-1")));
        client.OnMessage = (m, _) => { received.TrySetResult(m); return Task.CompletedTask; };
        client.OnRpc = (rpc, _) => Task.FromResult<object?>(new { echo = rpc.Data.GetProperty("q").GetString() });
        await client.StartAsync(new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(DeviceClientState.Connected, client.State);

        using var sent = await gw.Api.PostBytesAsync("api/devices/sdk-1/messages?ttl=60", "{\"n\":1}"u8.ToArray(), "application/json");
        var id = (await sent.JsonAsync()).Str("id");
        var m = await received.Task.WaitAsync(Timeouts.Default);
        Assert.Equal((id, "server", 1), (m.Id, m.From, m.Data!.Value.GetProperty("n").GetInt32()));
        await ApiExtensions.EventuallyAsync(async () => (await gw.Api.GetJsonAsync($"api/messages/{id}")).Str("status") == "acked", "acked after the handler");

        using var rpc = await gw.Api.PostBytesAsync("api/devices/sdk-1/rpc?timeout=5", "{\"q\":\"hi\"}"u8.ToArray(), "application/json");
        Assert.Equal("{\"echo\":\"hi\"}", await rpc.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_device_reports_its_own_state()
    {
        await using var gw = await TestGateway.StartAsync();
        await using var events = await SseClient.OpenAsync(gw.Api, "api/events?types=state");
        await using var client = Client(gw.BaseUri, "sdk-reporter", _ => ValueTask.FromResult(gw.Token("sdk-reporter")));
        await client.StartAsync(new CancellationTokenSource(Timeouts.Default).Token);
        await client.ReportStateAsync(new { fw = "1.3", temp = 21.5 });
        var e = await events.NextAsync();
        Assert.Equal(("sdk-reporter", "reported", 1), (e.Data.Str("device"), e.Data.Str("part"), e.Data.GetProperty("version").GetInt32()));
        var doc = await gw.Api.GetJsonAsync("api/devices/sdk-reporter/state");
        Assert.Equal("1.3", doc.GetProperty("reported").Str("fw"));
    }

    [Fact]
    public async Task The_desired_state_handler_gets_desired_version_and_delta_and_is_acked_after_it_returns()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Delivery:AckTimeout"] = "00:00:01" });
        var gateway = new GatewayClient(gw.Api);
        await gateway.PatchReportedAsync("sdk-shadow", new { fw = "1.3", brightness = 70 });
        await gateway.PatchDesiredAsync("sdk-shadow", new { fw = "1.4", brightness = 70 });
        var calls = System.Threading.Channels.Channel.CreateUnbounded<DesiredState>();
        var failOnce = true;
        await using var client = Client(gw.BaseUri, "sdk-shadow", _ => ValueTask.FromResult(gw.Token("sdk-shadow")));
        client.OnDesiredState = async (state, ct) =>
        {
            await calls.Writer.WriteAsync(state, ct);
            if (failOnce)
            {
                failOnce = false;
                throw new InvalidOperationException("not yet"); // unacked: the gateway sends it again after the ack timeout
            }
        };
        await client.StartAsync(new CancellationTokenSource(Timeouts.Default).Token);
        using var wait = new CancellationTokenSource(Timeouts.Default);
        var first = await calls.Reader.ReadAsync(wait.Token);
        Assert.Equal((1L, "1.4", """{"fw":"1.4"}"""), (first.Version, first.Desired.GetProperty("fw").GetString(), first.Delta.GetRawText()));
        Assert.Equal(0, (await gateway.GetStateAsync("sdk-shadow")).GetProperty("ackedVersion").GetInt32());
        var again = await calls.Reader.ReadAsync(wait.Token);
        Assert.Equal(first.MessageId, again.MessageId);
        await ApiExtensions.EventuallyAsync(async () => (await gateway.GetStateAsync("sdk-shadow")).GetProperty("ackedVersion").GetInt32() == 1, "acked after the handler returned");

        await gateway.PatchDesiredAsync("sdk-shadow", new { brightness = 40 });
        var second = await calls.Reader.ReadAsync(wait.Token);
        Assert.Equal((2L, 40), (second.Version, second.Desired.GetProperty("brightness").GetInt32()));
        await ApiExtensions.EventuallyAsync(async () => (await gateway.GetStateAsync("sdk-shadow")).GetProperty("ackedVersion").GetInt32() == 2, "version 2 acked");
    }

    [Fact]
    public async Task Backoff_honours_retry_after()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Limits:MaxConnections"] = "1" });
        var blocker = await gw.ConnectAsync("blocker");
        var attempts = new List<DateTime>();
        await using var client = Client(gw.BaseUri, "patient", _ =>
        {
            lock (attempts) attempts.Add(DateTime.UtcNow);
            return ValueTask.FromResult(gw.Token("patient"));
        });
        var started = client.StartAsync();
        // The node answers 503 with Retry-After: 5. With a 1 s backoff cap the second attempt would follow within a
        // second; honouring Retry-After it comes at least 5 s after the first.
        await ApiExtensions.EventuallyAsync(() => { lock (attempts) return Task.FromResult(attempts.Count >= 2); }, "a second attempt");
        lock (attempts) Assert.True(attempts[1] - attempts[0] >= TimeSpan.FromSeconds(4.5), $"retried after {attempts[1] - attempts[0]}");
        await blocker.CloseCleanlyAsync();
        blocker.Dispose();
        await started.WaitAsync(Timeouts.Default);
        Assert.Equal(DeviceClientState.Connected, client.State);
    }

    [Fact]
    public async Task A_takeover_is_not_fought()
    {
        await using var gw = await TestGateway.StartAsync();
        await using var client = Client(gw.BaseUri, "sdk-twin", _ => ValueTask.FromResult(gw.Token("sdk-twin")));
        var replaced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.StateChanged += s => { if (s == DeviceClientState.Replaced) replaced.TrySetResult(); };
        await client.StartAsync(new CancellationTokenSource(Timeouts.Default).Token);
        using var other = await gw.ConnectAsync("sdk-twin");
        await replaced.Task.WaitAsync(Timeouts.Default);
        Assert.Equal((4000, "replaced"), client.LastClose);
        // The newer connection keeps the id: a message goes to it, and it was never closed by the client coming back.
        await gw.Api.PostTextAsync("api/devices/sdk-twin/messages", "still mine");
        Assert.Equal("still mine", await other.ReceiveTextAsync());
        Assert.Equal(DeviceClientState.Replaced, client.State);
    }

    [Fact]
    public async Task An_expired_token_is_replaced_by_asking_the_provider_again()
    {
        await using var gw = await TestGateway.StartAsync();
        var calls = 0;
        var got = new BlockingCollection<string>();
        await using var client = Client(gw.BaseUri, "sdk-exp", _ =>
        {
            Interlocked.Increment(ref calls);
            return ValueTask.FromResult(gw.Token("sdk-exp", TimeSpan.FromSeconds(2)));
        });
        client.OnMessage = (m, _) => { got.Add(m.Data!.Value.GetString()!); return Task.CompletedTask; };
        var reconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sawReconnect = false;
        client.StateChanged += s =>
        {
            if (s == DeviceClientState.Reconnecting) sawReconnect = true;
            if (s == DeviceClientState.Connected && sawReconnect) reconnected.TrySetResult();
        };
        await client.StartAsync(new CancellationTokenSource(Timeouts.Default).Token);
        await reconnected.Task.WaitAsync(TimeSpan.FromSeconds(40));
        Assert.Equal((1008, "token_expired"), client.LastClose);
        Assert.True(calls >= 2);
        await gw.Api.PostTextAsync("api/devices/sdk-exp/messages", "after refresh");
        Assert.True(got.TryTake(out var text, Timeouts.Default));
        Assert.Equal("after refresh", text);
    }

    [Fact]
    public async Task Queued_messages_reach_the_handler_exactly_once_across_a_kill_9_restart()
    {
        var port = Loopback.FreePort();
        string[] args = [$"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}", $"--DeviceGate:Auth:ApiKeys:0={TestGateway.ApiKey}", "--urls", $"http://127.0.0.1:{port}"];
        var server = new Uri($"http://127.0.0.1:{port}/");
        using var api = ApiExtensions.Client(server, TestGateway.ApiKey);

        var handled = new ConcurrentQueue<string>();
        var first = await GatewayProcess.StartAsync(_dir, args);
        for (var i = 0; i < 10; i++) await api.PostAsync("api/devices/sdk-crash/messages?ttl=600", new StringContent($"m{i}"));
        await using var client = Client(server, "sdk-crash", _ => ValueTask.FromResult(TestGateway.MintWithSecret("sdk-crash")));
        client.OnMessage = (m, _) => { handled.Enqueue(m.Data!.Value.GetString()!); return Task.CompletedTask; };
        await client.StartAsync(new CancellationTokenSource(Timeouts.Default).Token);
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(handled.Count >= 10), "first ten handled");
        await first.KillHardAsync();
        await first.DisposeAsync();

        await using var second = await GatewayProcess.StartAsync(_dir, args);
        for (var i = 10; i < 15; i++) await api.PostAsync("api/devices/sdk-crash/messages?ttl=600", new StringContent($"m{i}"));
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(handled.Count >= 15), "all fifteen handled", TimeSpan.FromSeconds(40));
        // Whatever the kill left unacked was redelivered with the same id and dropped by the client.
        Assert.Equal(Enumerable.Range(0, 15).Select(i => $"m{i}"), handled.OrderBy(s => int.Parse(s[1..], System.Globalization.CultureInfo.InvariantCulture)));
        await ApiExtensions.EventuallyAsync(async () => (await api.GetFromJsonAsyncSafe("api/devices/sdk-crash")).GetProperty("queued").GetInt32() == 0, "all acked");
    }
}

internal static class HttpClientJson
{
    public static async Task<System.Text.Json.JsonElement> GetFromJsonAsyncSafe(this HttpClient http, string path)
    {
        using var r = await http.GetAsync(path);
        return await r.JsonAsync();
    }
}
