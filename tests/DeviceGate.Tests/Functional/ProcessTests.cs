using System.Text.Json;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>The real executable: generated secrets, restarts, SIGTERM, start-up validation and the CLI.</summary>
public sealed class ProcessTests : IDisposable
{
    private readonly string _dir = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_dir);

    private static HttpClient Api(Uri baseUri, string key)
    {
        var http = ApiExtensions.Client(baseUri, key);
        return http;
    }

    [Fact]
    public async Task First_start_generates_secrets_0600_and_later_starts_reuse_them()
    {
        string key;
        string token;
        await using (var first = await GatewayProcess.StartAsync(_dir))
        {
            var keyFile = Path.Combine(_dir, "data", "api-key");
            var secretFile = Path.Combine(_dir, "data", "token-secret");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secretFile));
            key = File.ReadAllText(keyFile).Trim();
            Assert.Contains(key, first.Output);
            Assert.Contains("token --device", first.Output);
            var cli = await GatewayProcess.RunCliAsync(_dir, null, "token", "--device", "dev-1", "--ttl", "1h");
            Assert.Equal(0, cli.Code);
            token = cli.StdOut.Trim();
            Assert.Equal(0, await first.TerminateAsync());
        }
        await using var second = await GatewayProcess.StartAsync(_dir);
        Assert.Contains(key, second.Output);
        using var api = Api(second.BaseUri, key);
        Assert.Equal(HttpStatusCode.OK, (await api.GetAsync("api/devices")).StatusCode);
        // A token minted before the restart is still valid: the secret was reused.
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await device.ConnectAsync(new Uri(second.BaseUri.ToString().Replace("http", "ws") + "ws?deviceId=dev-1"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(WebSocketState.Open, device.State);
    }

    [Fact]
    public async Task Sigterm_closes_devices_with_1001_and_exits_0()
    {
        await using var gw = await GatewayProcess.StartAsync(_dir);
        var key = File.ReadAllText(Path.Combine(_dir, "data", "api-key")).Trim();
        var token = (await GatewayProcess.RunCliAsync(_dir, null, "token", "--device", "d1")).StdOut.Trim();
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await device.ConnectAsync(new Uri(gw.BaseUri.ToString().Replace("http", "ws") + "ws?deviceId=d1"), new CancellationTokenSource(Timeouts.Default).Token);
        var closing = device.ReceiveCloseAsync();
        var exit = gw.TerminateAsync();
        Assert.Equal((1001, "shutdown"), await closing);
        Assert.Equal(0, await exit);
    }

    [Theory]
    [InlineData("--DeviceGate:Auth:TokenSecret=too-short", "DeviceGate:Auth:TokenSecret")]
    [InlineData("--DeviceGate:WebSockets:KeepAliveInterval=soon", "DeviceGate:WebSockets:KeepAliveInterval")]
    [InlineData("--DeviceGate:Limits:MaxMessageBytes=0", "DeviceGate:Limits:MaxMessageBytes")]
    [InlineData("--DeviceGate:Shutdown:DrainSeconds=-1", "DeviceGate:Shutdown:DrainSeconds")]
    public async Task Bad_configuration_stops_the_server_with_a_message_naming_the_key(string arg, string key)
    {
        var (code, stdout, stderr) = await GatewayProcess.RunCliAsync(_dir, null, "serve", "--urls", "http://127.0.0.1:0", arg);
        Assert.NotEqual(0, code);
        Assert.Contains(key, stdout + stderr);
    }

    /// <summary>Starts <c>connect</c> with <paramref name="args"/>; returns once it says it is connected, with the lines it prints.</summary>
    private async Task<(System.Diagnostics.Process Process, System.Collections.Concurrent.BlockingCollection<string> Lines)> StartConnectAsync(
        Dictionary<string, string> env, params string[] args)
    {
        var info = GatewayProcess.StartInfo(_dir, ["connect", .. args]);
        foreach (var (k, v) in env) info.Environment[k] = v;
        var connect = System.Diagnostics.Process.Start(info)!;
        var lines = new System.Collections.Concurrent.BlockingCollection<string>();
        connect.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Add(e.Data); };
        var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        connect.ErrorDataReceived += (_, e) => { if (e.Data?.StartsWith("connected", StringComparison.Ordinal) == true) connected.TrySetResult(); };
        connect.BeginOutputReadLine();
        connect.BeginErrorReadLine();
        await connected.Task.WaitAsync(Timeouts.Default);
        return (connect, lines);
    }

    [Fact]
    public async Task Cli_connect_mqtt_receives_messages_and_publishes_typed_lines_as_events()
    {
        var port = MqttDevice.FreePort();
        await using var gw = await GatewayProcess.StartAsync(_dir, "--DeviceGate:Mqtt:Enabled=true", $"--DeviceGate:Mqtt:TcpPort={port}");
        var env = new Dictionary<string, string> { ["DEVICEGATE_URL"] = gw.BaseUri.ToString() };
        var (connect, lines) = await StartConnectAsync(env, "--mqtt", "--mqtt-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--device", "cli-mqtt");
        using var _ = connect;

        var send = await GatewayProcess.RunCliAsync(_dir, env, "send", "cli-mqtt", "hello over mqtt");
        Assert.True(send.Code == 0, send.StdErr);
        Assert.True(lines.TryTake(out var received, Timeouts.Default));
        Assert.Equal("hello over mqtt", received);

        using var api = ApiExtensions.Client(gw.BaseUri, File.ReadAllText(Path.Combine(_dir, "data", "api-key")).Trim());
        await using var sse = await SseClient.OpenAsync(api, "api/events?types=message&device=cli-mqtt");
        await connect.StandardInput.WriteLineAsync("typed line");
        await connect.StandardInput.FlushAsync();
        var e = await sse.NextAsync();
        Assert.Equal(("typed line", ""), (e.Data.Str("data"), e.Data.Str("topic")));
        connect.StandardInput.Close();
        await connect.WaitForExitAsync(new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(0, connect.ExitCode);
    }

    [Fact]
    public async Task Cli_token_send_and_connect_work_against_a_running_server()
    {
        await using var gw = await GatewayProcess.StartAsync(_dir);
        var env = new Dictionary<string, string> { ["DEVICEGATE_URL"] = gw.BaseUri.ToString() };

        // connect: an interactive device, fed through stdin.
        var (connect, lines) = await StartConnectAsync(env, "--device", "cli-dev");
        using var _ = connect;

        var send = await GatewayProcess.RunCliAsync(_dir, env, "send", "cli-dev", "hello from the cli");
        Assert.True(send.Code == 0, send.StdErr);
        Assert.Contains("\"status\":\"sent\"", send.StdOut);
        Assert.True(lines.TryTake(out var received, Timeouts.Default));
        Assert.Equal("hello from the cli", received);

        var devices = await GatewayProcess.RunCliAsync(_dir, env, "devices");
        Assert.Equal(0, devices.Code);
        Assert.Contains("cli-dev", devices.StdOut);

        var broadcast = await GatewayProcess.RunCliAsync(_dir, env, "broadcast", "to all");
        Assert.Contains("\"recipients\":1", broadcast.StdOut);
        Assert.True(lines.TryTake(out var all, Timeouts.Default));
        Assert.Equal("to all", all);

        // End of input closes the device cleanly.
        connect.StandardInput.Close();
        await connect.WaitForExitAsync(new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(0, connect.ExitCode);

        var offline = await GatewayProcess.RunCliAsync(_dir, env, "send", "cli-dev", "nobody home");
        Assert.NotEqual(0, offline.Code);
        Assert.Contains("404", offline.StdErr);

        // state: patch desired, then print the document.
        var patched = await GatewayProcess.RunCliAsync(_dir, env, "state", "cli-dev", "--desired", """{"fw":"1.4"}""");
        Assert.True(patched.Code == 0, patched.StdErr);
        var shown = await GatewayProcess.RunCliAsync(_dir, env, "state", "cli-dev");
        using var doc = JsonDocument.Parse(shown.StdOut);
        Assert.Equal(("1.4", "1.4", 1), (doc.RootElement.GetProperty("desired").GetProperty("fw").GetString(),
            doc.RootElement.GetProperty("delta").GetProperty("fw").GetString(), doc.RootElement.GetProperty("desiredVersion").GetInt32()));
        var bad = await GatewayProcess.RunCliAsync(_dir, env, "state", "cli-dev", "--desired", "[1]");
        Assert.NotEqual(0, bad.Code);
        Assert.Contains("400", bad.StdErr);

        // tags: set (printing the device), filter the list, refuse what the API refuses.
        var tagged = await GatewayProcess.RunCliAsync(_dir, env, "tags", "cli-dev", "site=berlin", "model=k2");
        Assert.True(tagged.Code == 0, tagged.StdErr);
        using (var device = JsonDocument.Parse(tagged.StdOut)) Assert.Equal("berlin", device.RootElement.GetProperty("tags").GetProperty("site").GetString());
        var filtered = await GatewayProcess.RunCliAsync(_dir, env, "devices", "--all", "--tag", "site:berlin");
        Assert.True(filtered.Code == 0, filtered.StdErr);
        Assert.Contains("cli-dev", filtered.StdOut);
        var none = await GatewayProcess.RunCliAsync(_dir, env, "devices", "--all", "--tag", "site:rome");
        Assert.DoesNotContain("cli-dev", none.StdOut);
        var badTag = await GatewayProcess.RunCliAsync(_dir, env, "tags", "cli-dev", "bad key=x");
        Assert.NotEqual(0, badTag.Code);
        Assert.Contains("400 Bad Request: Invalid tags", badTag.StdErr);
        Assert.NotEqual(0, (await GatewayProcess.RunCliAsync(_dir, env, "tags", "cli-dev", "no-equals-sign")).Code);
    }

    [Fact]
    public async Task Cli_connect_echo_sends_each_typed_line()
    {
        await using var gw = await GatewayProcess.StartAsync(_dir);
        var info = GatewayProcess.StartInfo(_dir, ["connect", "--echo", "--server", gw.BaseUri.ToString()]);
        using var connect = System.Diagnostics.Process.Start(info)!;
        var lines = new System.Collections.Concurrent.BlockingCollection<string>();
        connect.OutputDataReceived += (_, e) => { if (e.Data is not null) lines.Add(e.Data); };
        connect.BeginOutputReadLine();
        await connect.StandardInput.WriteLineAsync("ping 1");
        await connect.StandardInput.FlushAsync();
        Assert.True(lines.TryTake(out var back, Timeouts.Default));
        Assert.Equal("ping 1", back);
        connect.StandardInput.Close();
        await connect.WaitForExitAsync(new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(0, connect.ExitCode);
    }

    [Fact]
    public async Task Cli_rpc_round_trip_with_an_envelope_device_and_the_events_command()
    {
        await using var gw = await GatewayProcess.StartAsync(_dir);
        var env = new Dictionary<string, string> { ["DEVICEGATE_URL"] = gw.BaseUri.ToString() };

        using var events = System.Diagnostics.Process.Start(WithEnv(GatewayProcess.StartInfo(_dir, ["events", "--types", "connected,message"]), env))!;
        try
        {
            var eventLines = new System.Collections.Concurrent.BlockingCollection<string>();
            events.OutputDataReceived += (_, e) => { if (e.Data is not null) eventLines.Add(e.Data); };
            events.BeginOutputReadLine();

            using var device = System.Diagnostics.Process.Start(WithEnv(GatewayProcess.StartInfo(_dir, ["connect", "--device", "rpc-dev", "--reply", "{\"status\":\"ok\"}"]), env))!;
            var connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            device.ErrorDataReceived += (_, e) => { if (e.Data?.StartsWith("connected", StringComparison.Ordinal) == true) connected.TrySetResult(); };
            device.BeginErrorReadLine();
            device.BeginOutputReadLine();
            await connected.Task.WaitAsync(Timeouts.Default);

            var rpc = await GatewayProcess.RunCliAsync(_dir, env, "rpc", "rpc-dev", "{\"cmd\":\"status\"}", "--timeout", "5");
            Assert.True(rpc.Code == 0, rpc.StdErr);
            Assert.Equal("{\"status\":\"ok\"}", rpc.StdOut.Trim());

            // An envelope-mode connect acks what it prints: a durable message to it ends up acked.
            using var api = Api(gw.BaseUri, File.ReadAllText(Path.Combine(_dir, "data", "api-key")).Trim());
            using var sent = await api.PostAsync("api/devices/rpc-dev/messages?ttl=60", new StringContent("ack me"));
            var messageId = (await sent.JsonAsync()).Str("id");
            await ApiExtensions.EventuallyAsync(async () => (await api.GetJsonAsync($"api/messages/{messageId}")).Str("status") == "acked", "cli acked the message");

            // It acks desired state too: ackedVersion follows.
            using (var patch = new HttpRequestMessage(HttpMethod.Patch, "api/devices/rpc-dev/state/desired") { Content = new StringContent("""{"fw":"1.4"}""", System.Text.Encoding.UTF8, "application/merge-patch+json") })
            using (var patched = await api.SendAsync(patch)) Assert.Equal(System.Net.HttpStatusCode.OK, patched.StatusCode);
            await ApiExtensions.EventuallyAsync(async () => (await api.GetJsonAsync("api/devices/rpc-dev/state")).GetProperty("ackedVersion").GetInt32() == 1, "cli acked the state");

            // Plain text typed into an envelope device goes to the server: the events command prints it.
            await device.StandardInput.WriteLineAsync("hello server");
            await device.StandardInput.FlushAsync();
            string? line;
            do Assert.True(eventLines.TryTake(out line, Timeouts.Default), "no message event");
            while (!line!.Contains("\"message\"", StringComparison.Ordinal));
            Assert.Contains("\"data\":\"hello server\"", line);
            Assert.Contains("\"device\":\"rpc-dev\"", line);

            device.StandardInput.Close();
            await device.WaitForExitAsync(new CancellationTokenSource(Timeouts.Default).Token);
        }
        finally
        {
            // `events` runs until stopped; never leave it behind.
            events.Kill(entireProcessTree: true);
            await events.WaitForExitAsync(new CancellationTokenSource(Timeouts.Default).Token);
        }
    }

    private static System.Diagnostics.ProcessStartInfo WithEnv(System.Diagnostics.ProcessStartInfo info, Dictionary<string, string> env)
    {
        foreach (var (k, v) in env) info.Environment[k] = v;
        return info;
    }

    [Fact]
    public async Task Cli_config_check_accepts_a_good_configuration_masks_secrets_and_names_the_key_of_a_bad_one()
    {
        var good = await GatewayProcess.RunCliAsync(_dir, null, "config", "check", $"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}",
            "--DeviceGate:Auth:Keys:ops:Key=an-ops-key-0123456789", "--DeviceGate:Auth:Keys:ops:Scopes:0=admin", "--DeviceGate:Limits:MaxConnections=500",
            "--DeviceGate:Redis:Configuration=127.0.0.1:6379,password=hunter2hunter2");
        Assert.True(good.Code == 0, good.StdErr);
        Assert.Contains("DeviceGate:Limits:MaxConnections = 500", good.StdOut);
        Assert.Contains("DeviceGate:Auth:TokenSecret = ***", good.StdOut);
        Assert.Contains("DeviceGate:Auth:Keys:ops:Key = ***", good.StdOut);
        Assert.Contains("DeviceGate:Auth:Keys:ops:Scopes = admin", good.StdOut);
        Assert.Contains("DeviceGate:Redis:Configuration = 127.0.0.1:6379,password=***", good.StdOut);
        Assert.Contains("DeviceGate:Delivery:AckTimeout = 00:00:30", good.StdOut);
        Assert.DoesNotContain(TestGateway.Secret, good.StdOut + good.StdErr);
        Assert.DoesNotContain("an-ops-key-0123456789", good.StdOut + good.StdErr);
        Assert.DoesNotContain("hunter2", good.StdOut + good.StdErr);
        // Nothing was started or created.
        Assert.False(Directory.Exists(Path.Combine(_dir, "data")));

        var bad = await GatewayProcess.RunCliAsync(_dir, null, "config", "check", "--DeviceGate:Limits:MaxConnections=0", "--DeviceGate:Auth:Keys:x:Key=short");
        Assert.Equal(1, bad.Code);
        Assert.Contains("DeviceGate:Limits:MaxConnections", bad.StdErr);
        Assert.Contains("DeviceGate:Auth:Keys:x", bad.StdErr);
        var unparsable = await GatewayProcess.RunCliAsync(_dir, null, "config", "check", "--DeviceGate:Delivery:AckTimeout=soon");
        Assert.Equal(1, unparsable.Code);
        Assert.Contains("AckTimeout", unparsable.StdErr);
    }

    [Fact]
    public async Task Json_console_logs_are_one_object_per_line_and_carry_no_token_key_or_secret()
    {
        await using var gw = await GatewayProcess.StartAsync(_dir, "--Logging:Console:FormatterName=json",
            $"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}", $"--DeviceGate:Auth:ApiKeys:0={TestGateway.ApiKey}", "--DeviceGate:Auth:Keys:ops:Key=an-ops-key-0123456789",
            "--DeviceGate:Auth:Keys:ops:Scopes:0=admin");
        var token = TestGateway.MintWithSecret("json-logs");
        using (var device = new ClientWebSocket())
        {
            // The token in the query string, as browsers send it: the framework's request line would carry it.
            await device.ConnectAsync(new Uri(gw.BaseUri.ToString().Replace("http", "ws") + $"ws?deviceId=json-logs&access_token={token}"), new CancellationTokenSource(Timeouts.Default).Token);
            using var api = Api(gw.BaseUri, "an-ops-key-0123456789");
            using (await api.PutAsync("api/devices/json-logs/tags", new StringContent("{}", System.Text.Encoding.UTF8, "application/json"))) { }
            await device.CloseCleanlyAsync();
        }
        using (var refused = new ClientWebSocket())
        {
            try
            {
                await refused.ConnectAsync(new Uri(gw.BaseUri.ToString().Replace("http", "ws") + "ws?deviceId=json-logs&access_token=forged." + token), new CancellationTokenSource(Timeouts.Default).Token);
            }
            catch (WebSocketException)
            {
            }
        }
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(gw.Output.Contains("\"EventId\":1001", StringComparison.Ordinal)), "the disconnect logged");
        await gw.TerminateAsync();
        var lines = gw.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        foreach (var line in lines)
        {
            using var entry = System.Text.Json.JsonDocument.Parse(line);
            Assert.True(entry.RootElement.TryGetProperty("Timestamp", out _), line);
        }
        Assert.Contains(lines, l => l.Contains("\"EventId\":1600", StringComparison.Ordinal) && l.Contains("ops", StringComparison.Ordinal));
        foreach (var secret in new[] { token, TestGateway.Secret, TestGateway.ApiKey, "an-ops-key-0123456789" })
        {
            Assert.DoesNotContain(lines, l => l.Contains(secret, StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Cli_key_new_prints_a_key_and_its_hash_that_the_gateway_accepts()
    {
        var made = await GatewayProcess.RunCliAsync(_dir, null, "key", "new");
        Assert.True(made.Code == 0, made.StdErr);
        var lines = made.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var key = lines.Single(l => l.StartsWith("key:", StringComparison.Ordinal))[4..].Trim();
        var hash = lines.Single(l => l.StartsWith("hash:", StringComparison.Ordinal))[5..].Trim();
        Assert.Matches("^sha256:[0-9a-f]{64}$", hash);
        var again = await GatewayProcess.RunCliAsync(_dir, null, "key", "hash", key);
        Assert.Equal(hash, again.StdOut.Trim());

        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Auth:Keys:cli-made:Hash"] = hash,
            ["DeviceGate:Auth:Keys:cli-made:Scopes:0"] = "devices:read",
        });
        using var http = ApiExtensions.Client(gw.BaseUri, key);
        Assert.Equal("cli-made", (await http.GetJsonAsync("api/whoami")).Str("name"));
        Assert.DoesNotContain(gw.Logs.Lines, l => l.Contains(key, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Cli_token_permission_options_become_claims_the_gateway_enforces()
    {
        var minted = await GatewayProcess.RunCliAsync(_dir, null, "token", "--device", "perm", "--groups", "sensors.*,lab", "--send", "hub-1",
            $"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}");
        Assert.Equal(0, minted.Code);
        await using var gw = await TestGateway.StartAsync();
        using var device = new ClientWebSocket();
        device.Options.AddSubProtocol(Envelopes.Subprotocol);
        device.Options.SetRequestHeader("Authorization", "Bearer " + minted.StdOut.Trim());
        await device.ConnectAsync(gw.WsUri("ws?deviceId=perm"), new CancellationTokenSource(Timeouts.Default).Token);
        await device.SendJsonAsync(new { type = "join", group = "admin", @ref = "1" });
        Assert.Equal("forbidden", (await device.ReceiveJsonAsync()).Str("code"));
        await device.SendJsonAsync(new { type = "send", to = "hub-2", data = 1, @ref = "2" });
        Assert.Equal("forbidden", (await device.ReceiveJsonAsync()).Str("code"));
        await device.SendJsonAsync(new { type = "join", group = "lab" });
        await device.SendJsonAsync(new { type = "join", group = "sensors.a" });
        await device.SendJsonAsync(new { type = "send", to = "server", data = 1, @ref = "3" });
        Assert.Equal("sent", (await device.ReceiveJsonAsync()).Str("type"));
        Assert.Equal(["lab", "sensors.a"], (await gw.Api.GetJsonAsync("api/devices/perm")).GetProperty("groups").EnumerateArray().Select(g => g.GetString()!).ToArray());
    }

    [Fact]
    public async Task Cli_token_refuses_bad_input()
    {
        Assert.NotEqual(0, (await GatewayProcess.RunCliAsync(_dir, null, "token", "--device", "server")).Code);
        Assert.NotEqual(0, (await GatewayProcess.RunCliAsync(_dir, null, "token", "--device", "ok", "--ttl", "soon")).Code);
    }
}
