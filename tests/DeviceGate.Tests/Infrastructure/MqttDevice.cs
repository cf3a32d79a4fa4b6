using System.Diagnostics;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>An MQTT device for tests, on MQTTnet's own client: what arrives is queued, acks can be held back.</summary>
public sealed class MqttDevice : IAsyncDisposable
{
    private readonly Channel<MqttApplicationMessageReceivedEventArgs> _received = Channel.CreateUnbounded<MqttApplicationMessageReceivedEventArgs>();
    private readonly TaskCompletionSource<MqttClientDisconnectedEventArgs> _disconnected = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private MqttDevice(IMqttClient client) => Client = client;

    public IMqttClient Client { get; }

    /// <summary>The CONNACK as the client read it (session present, the session expiry granted).</summary>
    public MqttClientConnectResult Connected { get; private set; } = null!;

    /// <summary>When false, QoS 1 messages are received and never PUBACKed (the gateway must redeliver them).</summary>
    public bool Acknowledge { get; set; } = true;

    /// <summary>Completes when the gateway (or the network) ended the connection.</summary>
    public Task<MqttClientDisconnectedEventArgs> Disconnected => _disconnected.Task;

    /// <summary>A free TCP port on loopback for the gateway's MQTT listener.</summary>
    public static int FreePort() => Loopback.FreePort();

    public static MqttClientOptionsBuilder Tcp(int port, string clientId, string? token, MqttProtocolVersion version = MqttProtocolVersion.V500)
    {
        var b = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithClientId(clientId).WithProtocolVersion(version)
            .WithTimeout(Timeouts.Default).WithCleanSession();
        return token is null ? b : b.WithCredentials("device", token);
    }

    public static MqttClientOptionsBuilder WebSocket(Uri baseUri, string clientId, string? token, MqttProtocolVersion version = MqttProtocolVersion.V500)
    {
        var b = new MqttClientOptionsBuilder().WithWebSocketServer(o => o.WithUri($"ws://{baseUri.Authority}/mqtt")).WithClientId(clientId)
            .WithProtocolVersion(version).WithTimeout(Timeouts.Default).WithCleanSession();
        return token is null ? b : b.WithCredentials("device", token);
    }

    /// <summary>Connects; the CONNACK's result (a refusal is a result too, not an exception).</summary>
    public static async Task<(MqttDevice Device, MqttClientConnectResultCode Result)> TryConnectAsync(MqttClientOptionsBuilder options)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var device = new MqttDevice(client);
        client.ApplicationMessageReceivedAsync += e =>
        {
            e.AutoAcknowledge = device.Acknowledge;
            device._received.Writer.TryWrite(e);
            return Task.CompletedTask;
        };
        client.DisconnectedAsync += e =>
        {
            if (e.ClientWasConnected) device._disconnected.TrySetResult(e);
            return Task.CompletedTask;
        };
        // A refused CONNECT is a result (MQTTnet 5 does not throw for it).
        var result = await client.ConnectAsync(options.Build(), new CancellationTokenSource(Timeouts.Default).Token);
        device.Connected = result;
        return (device, result.ResultCode);
    }

    public static async Task<MqttDevice> ConnectAsync(MqttClientOptionsBuilder options)
    {
        var (device, result) = await TryConnectAsync(options);
        Assert.Equal(MqttClientConnectResultCode.Success, result);
        return device;
    }

    public async Task<MqttClientSubscribeResultCode> SubscribeAsync(string topic, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var result = await Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, qos).Build());
        return result.Items.Single().ResultCode;
    }

    public async Task<MqttApplicationMessageReceivedEventArgs> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeouts.Default);
        return await _received.Reader.ReadAsync(cts.Token);
    }

    public Task<MqttClientPublishResult> PublishAsync(string topic, string payload, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(qos).Build());

    public async ValueTask DisposeAsync()
    {
        if (Client.IsConnected)
        {
            try
            {
                await Client.DisconnectAsync();
            }
            catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }
        Client.Dispose();
    }
}

/// <summary>Runs one of Debian's mosquitto clients (mosquitto_sub, mosquitto_pub) to completion, bounded.</summary>
public static class Mosquitto
{
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string tool, params string[] args)
    {
        var info = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeouts.Default);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} did not finish: {await error}");
        }
        return (p.ExitCode, await output, await error);
    }
}
