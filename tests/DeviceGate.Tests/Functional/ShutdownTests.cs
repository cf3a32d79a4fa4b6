using System.Net;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class ShutdownTests
{
    [Fact]
    public async Task Stopping_closes_every_device_with_1001_after_writing_what_was_queued()
    {
        var gw = await TestGateway.StartAsync();
        var devices = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => gw.ConnectAsync($"s{i}")));
        Assert.Equal(HttpStatusCode.OK, (await gw.Api.PostTextAsync("api/broadcast", "last words")).StatusCode);
        var stopping = gw.App.StopAsync();
        foreach (var d in devices)
        {
            Assert.Equal("last words", await d.ReceiveTextAsync());
            Assert.Equal((1001, "shutdown"), await d.ReceiveCloseAsync());
        }
        await stopping.WaitAsync(Timeouts.Default);
        await gw.DisposeAsync();
    }
}
