using System.Net;
using DeviceGate.Configuration;
using DeviceGate.Sessions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DeviceGate.Tests.Sessions;

public sealed class ConnectionAdmissionTests
{
    private readonly FakeTimeProvider _time = new();

    private ConnectionAdmission Admission(int max = 100, int perIp = 0, int perSecond = 10, int burst = 3) =>
        new(Options.Create(new GatewayOptions { Limits = new LimitsOptions { MaxConnections = max, MaxConnectionsPerIp = perIp, ConnectsPerSecond = perSecond, ConnectsBurst = burst } }), _time);

    [Fact]
    public void The_connect_rate_allows_the_burst_then_its_rate()
    {
        var admission = Admission(perSecond: 10, burst: 3);
        for (var i = 0; i < 3; i++) Assert.Null(admission.TryAdmit(IPAddress.Loopback));
        Assert.Equal(("connect_rate", 503, 1), Refused(admission.TryAdmit(IPAddress.Loopback)));
        _time.Advance(TimeSpan.FromMilliseconds(100)); // one earned
        Assert.Null(admission.TryAdmit(IPAddress.Loopback));
        Assert.NotNull(admission.TryAdmit(IPAddress.Loopback));
    }

    [Fact]
    public void The_node_cap_and_the_per_address_cap_hold_and_release()
    {
        var admission = Admission(max: 2, perIp: 1, burst: 100);
        var a = IPAddress.Parse("127.0.0.2");
        Assert.Null(admission.TryAdmit(a));
        Assert.Equal(("per_ip", 429, 5), Refused(admission.TryAdmit(a)));
        Assert.Null(admission.TryAdmit(IPAddress.Loopback));
        Assert.Equal(("capacity", 503, 5), Refused(admission.TryAdmit(IPAddress.Parse("127.0.0.3"))));
        admission.Release(a);
        Assert.Null(admission.TryAdmit(a));
    }

    private static (string, int, int) Refused(ConnectionAdmission.Refusal? r) => (r!.Value.Code, r.Value.Status, r.Value.RetryAfterSeconds);
}
