using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Auth;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Infrastructure;

public static class Envelopes
{
    public const string Subprotocol = "devicegate.v1.json";

    /// <summary>Connects a device in envelope mode, optionally with permission claims in its token.</summary>
    public static async Task<ClientWebSocket> ConnectEnvelopeAsync(this TestGateway gw, string deviceId, string[]? groups = null, string[]? send = null)
    {
        var claims = new Dictionary<string, object>();
        if (groups is not null) claims[DevicePermissions.GroupsClaim] = groups;
        if (send is not null) claims[DevicePermissions.SendClaim] = send;
        var token = gw.App.Services.GetRequiredService<DeviceTokens>().Mint(deviceId, null, claims);
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol(Subprotocol);
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await socket.ConnectAsync(gw.WsUri($"ws?deviceId={Uri.EscapeDataString(deviceId)}"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(Subprotocol, socket.SubProtocol);
        return socket;
    }

    public static Task SendJsonAsync(this WebSocket socket, object envelope) => socket.SendTextAsync(JsonSerializer.Serialize(envelope));

    /// <summary>The next message, parsed as a JSON envelope.</summary>
    public static async Task<JsonElement> ReceiveJsonAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        var text = await socket.ReceiveTextAsync(timeout);
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public static string Str(this JsonElement e, string name) => e.GetProperty(name).GetString()!;
}
