using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace DeviceGate.Cli;

/// <summary>
/// <c>connect --mqtt</c>: the interactive device over MQTT 5 (MQTTnet's client). Subscribes to its messages (QoS 1:
/// each is PUBACKed once printed) and, with <c>--reply</c>, to its rpc topic; each line typed is published to
/// <c>devices/{id}/events</c>; end of input disconnects.
/// </summary>
internal static class MqttConnect
{
    public static async Task<int> RunAsync(string host, int port, string device, string token, string? replyData, CancellationToken ct)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        client.ApplicationMessageReceivedAsync += async e =>
        {
            var m = e.ApplicationMessage;
            if (m.Topic == $"devices/{device}/rpc")
            {
                if (replyData is null || m.ResponseTopic is null) return;
                await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(m.ResponseTopic).WithCorrelationData(m.CorrelationData)
                    .WithPayload(replyData).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), CancellationToken.None).ConfigureAwait(false);
                return;
            }
            var payload = System.Buffers.BuffersExtensions.ToArray(m.Payload);
            Console.WriteLine(System.Text.Unicode.Utf8.IsValid(payload) ? System.Text.Encoding.UTF8.GetString(payload) : $"[binary {payload.Length} bytes] {Convert.ToBase64String(payload)}");
        };
        var closed = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.DisconnectedAsync += e =>
        {
            closed.TrySetResult(e);
            return Task.CompletedTask;
        };
        var options = new MqttClientOptionsBuilder().WithTcpServer(host, port).WithClientId(device).WithCredentials("device", token)
            .WithProtocolVersion(MqttProtocolVersion.V500).WithCleanSession().Build();
        MqttClientConnectResult result;
        try
        {
            result = await client.ConnectAsync(options, ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            return CommandLine.Fail($"Could not connect to mqtt://{host}:{port}: {e.Message}");
        }
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            return CommandLine.Fail($"Refused by mqtt://{host}:{port}: {result.ResultCode} {result.ReasonString}");
        }
        var subscribe = new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"devices/{device}/messages", MqttQualityOfServiceLevel.AtLeastOnce);
        if (replyData is not null) subscribe.WithTopicFilter($"devices/{device}/rpc", MqttQualityOfServiceLevel.AtLeastOnce);
        await client.SubscribeAsync(subscribe.Build(), ct).ConfigureAwait(false);
        Console.Error.WriteLine($"connected to mqtt://{host}:{port} as {device}; type a line to publish it to devices/{device}/events, end input (Ctrl-D) to close");

        var input = Task.Run(async () =>
        {
            while (await Console.In.ReadLineAsync(ct).ConfigureAwait(false) is { } line)
            {
                if (!client.IsConnected) return;
                await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"devices/{device}/events").WithPayload(line)
                    .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), ct).ConfigureAwait(false);
            }
        }, CancellationToken.None);
        if (await Task.WhenAny(input, closed.Task).ConfigureAwait(false) == input && client.IsConnected)
        {
            await client.DisconnectAsync(cancellationToken: CancellationToken.None).ConfigureAwait(false);
            Console.Error.WriteLine("closed: disconnected");
            return 0;
        }
        var gone = await closed.Task.ConfigureAwait(false);
        Console.Error.WriteLine($"closed: {gone.Reason} {gone.ReasonString}");
        return 0;
    }
}
