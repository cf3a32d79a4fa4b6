using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;
using MQTTnet;
using Microsoft.Data.Sqlite;

namespace DeviceGate.Tests.Functional;

/// <summary>The real executable killed with SIGKILL and started again on the same data folder.</summary>
public sealed class CrashTests : IDisposable
{
    private readonly string _dir = TempFolder.Create();

    private static readonly string[] Config =
    [
        $"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}",
        $"--DeviceGate:Auth:ApiKeys:0={TestGateway.ApiKey}",
    ];

    public void Dispose() => TempFolder.Delete(_dir);

    private static HttpClient Api(Uri baseUri)
    {
        var http = ApiExtensions.Client(baseUri, TestGateway.ApiKey, new SocketsHttpHandler { MaxConnectionsPerServer = 64 });
        return http;
    }

    private static async Task<ClientWebSocket> ConnectAsync(Uri baseUri, string device, bool envelope = false)
    {
        var socket = new ClientWebSocket();
        if (envelope) socket.Options.AddSubProtocol(Envelopes.Subprotocol);
        socket.Options.SetRequestHeader("Authorization", "Bearer " + TestGateway.MintWithSecret(device));
        await socket.ConnectAsync(new Uri(baseUri.ToString().Replace("http", "ws") + $"ws?deviceId={device}"), new CancellationTokenSource(Timeouts.Default).Token);
        return socket;
    }

    [Fact]
    public async Task A_hundred_queued_messages_survive_sigkill()
    {
        await using (var first = await GatewayProcess.StartAsync(_dir, Config))
        {
            using var api = Api(first.BaseUri);
            for (var i = 0; i < 100; i++)
            {
                using var r = await api.PostAsync("api/devices/survivor/messages?ttl=600", new StringContent($"msg {i}"));
                Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
            }
            await first.KillHardAsync();
        }
        await using var second = await GatewayProcess.StartAsync(_dir, Config);
        using var device = await ConnectAsync(second.BaseUri, "survivor");
        for (var i = 0; i < 100; i++) Assert.Equal($"msg {i}", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_hundred_qos1_messages_queued_for_an_mqtt_device_survive_sigkill_and_are_acked_by_puback()
    {
        var port = MqttDevice.FreePort();
        string[] config = [.. Config, "--DeviceGate:Mqtt:Enabled=true", $"--DeviceGate:Mqtt:TcpPort={port}"];
        var ids = new List<string>();
        await using (var first = await GatewayProcess.StartAsync(_dir, config))
        {
            using var api = Api(first.BaseUri);
            for (var i = 0; i < 100; i++)
            {
                using var r = await api.PostAsync("api/devices/mqtt-survivor/messages?ttl=600", new StringContent($"msg {i}"));
                Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
                ids.Add((await r.JsonAsync()).Str("id"));
            }
            await first.KillHardAsync();
        }
        await using var second = await GatewayProcess.StartAsync(_dir, config);
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, "mqtt-survivor", TestGateway.MintWithSecret("mqtt-survivor")));
        await device.SubscribeAsync("devices/mqtt-survivor/messages");
        for (var i = 0; i < 100; i++) Assert.Equal($"msg {i}", (await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
        using var check = Api(second.BaseUri);
        await ApiExtensions.EventuallyAsync(async () => (await check.GetJsonAsync($"api/messages/{ids[^1]}")).Str("status") == "acked", "the last one acked by PUBACK");
        Assert.Equal("acked", (await check.GetJsonAsync($"api/messages/{ids[0]}")).Str("status"));
    }

    [Fact]
    public async Task Desired_state_that_got_a_200_survives_sigkill_and_is_delivered_after_restart()
    {
        await using (var first = await GatewayProcess.StartAsync(_dir, Config))
        {
            using var api = Api(first.BaseUri);
            using var patch = new HttpRequestMessage(HttpMethod.Patch, "api/devices/shadowed/state/desired")
            {
                Content = new StringContent("""{"fw":"1.4","brightness":70}""", System.Text.Encoding.UTF8, "application/merge-patch+json"),
            };
            using var r = await api.SendAsync(patch);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            await first.KillHardAsync();
        }
        await using var second = await GatewayProcess.StartAsync(_dir, Config);
        using (var api = Api(second.BaseUri))
        {
            var doc = await api.GetJsonAsync("api/devices/shadowed/state");
            Assert.Equal((1, "1.4"), (doc.GetProperty("desiredVersion").GetInt32(), doc.GetProperty("desired").Str("fw")));
        }
        using var device = await ConnectAsync(second.BaseUri, "shadowed", envelope: true);
        var state = await device.ReceiveJsonAsync();
        Assert.Equal(("state", 1, 70), (state.Str("type"), state.GetProperty("version").GetInt32(), state.GetProperty("desired").GetProperty("brightness").GetInt32()));
    }

    [Fact]
    public async Task Every_message_that_got_a_202_is_delivered_after_a_sigkill_mid_traffic()
    {
        const int total = 5000;
        const int devices = 20;
        var accepted = new ConcurrentDictionary<string, string>();
        await using (var first = await GatewayProcess.StartAsync(_dir, Config))
        {
            using var api = Api(first.BaseUri);
            var next = -1;
            var killAt = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var senders = Enumerable.Range(0, 48).Select(_ => Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < total)
                {
                    var device = $"crash-{i % devices}";
                    try
                    {
                        using var r = await api.PostAsync($"api/devices/{device}/messages?ttl=600", new StringContent($"n{i}"));
                        if (r.StatusCode == HttpStatusCode.Accepted) accepted[$"n{i}"] = device;
                        if (accepted.Count >= total / 2) killAt.TrySetResult();
                    }
                    catch (HttpRequestException)
                    {
                        // The server died under this request: it was never acknowledged.
                    }
                    catch (TaskCanceledException)
                    {
                    }
                }
            })).ToList();
            await killAt.Task.WaitAsync(TimeSpan.FromMinutes(2));
            await first.KillHardAsync();
            await Task.WhenAll(senders).WaitAsync(TimeSpan.FromMinutes(1));
        }
        Assert.InRange(accepted.Count, total / 2, total - 1);

        await using var second = await GatewayProcess.StartAsync(_dir, Config);
        var expected = accepted.GroupBy(kv => kv.Value).ToDictionary(g => g.Key, g => g.Select(kv => kv.Key).ToHashSet());
        await Task.WhenAll(expected.Select(async kv =>
        {
            using var device = await ConnectAsync(second.BaseUri, kv.Key);
            var missing = new HashSet<string>(kv.Value);
            while (missing.Count > 0)
            {
                var m = await device.ReceiveTextAsync();
                missing.Remove(m);
            }
        }));
    }

    [Fact]
    public async Task A_corrupt_database_is_refused_and_left_alone()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "data"));
        var db = Path.Combine(_dir, "data", "devicegate.db");
        var garbage = Enumerable.Range(0, 8192).Select(i => (byte)(i * 7)).ToArray();
        File.WriteAllBytes(db, garbage);
        var (code, stdout, stderr) = await GatewayProcess.RunCliAsync(_dir, null, ["serve", "--urls", "http://127.0.0.1:0", .. Config]);
        Assert.NotEqual(0, code);
        Assert.Contains("devicegate.db", stdout + stderr);
        Assert.Contains("refusing to start", stdout + stderr);
        Assert.Equal(garbage, File.ReadAllBytes(db));
    }

    [Fact]
    public async Task A_foreign_sqlite_database_is_refused()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "data"));
        var db = Path.Combine(_dir, "data", "devicegate.db");
        using (var c = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE invoices(id INTEGER PRIMARY KEY, amount REAL); INSERT INTO invoices(amount) VALUES (12.5);";
            cmd.ExecuteNonQuery();
        }
        var (code, stdout, stderr) = await GatewayProcess.RunCliAsync(_dir, null, ["serve", "--urls", "http://127.0.0.1:0", .. Config]);
        Assert.NotEqual(0, code);
        Assert.Contains("another application", stdout + stderr);
        using var check = new SqliteConnection($"Data Source={db};Pooling=False");
        check.Open();
        using var count = check.CreateCommand();
        count.CommandText = "SELECT count(*) FROM invoices;";
        Assert.Equal(1L, count.ExecuteScalar());
    }
}
