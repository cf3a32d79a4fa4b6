using DeviceGate.Auth;
using DeviceGate.Protocol;
using DeviceGate.Webhooks;

namespace DeviceGate.Tests.Protocol;

public sealed class ProtocolTests
{
    [Theory]
    [InlineData("sensors.a", true)]
    [InlineData("sensors.", true)]
    [InlineData("sensor", false)]
    [InlineData("admin", false)]
    [InlineData("exact", true)]
    public void Patterns_are_exact_names_or_prefixes(string name, bool allowed) =>
        Assert.Equal(allowed, DevicePermissions.Matches(["sensors.*", "exact"], name));

    [Fact]
    public void Star_allows_everything_and_absent_claims_do_not_restrict()
    {
        Assert.True(DevicePermissions.Matches(["*"], "anything"));
        Assert.True(DevicePermissions.Unrestricted.MayUseGroup("g"));
        Assert.True(DevicePermissions.Unrestricted.MaySendTo("d"));
        var none = new DevicePermissions([], []);
        Assert.False(none.MayUseGroup("g"));
        Assert.False(none.MaySendTo("d"));
        Assert.True(none.MaySendTo("server"));
    }

    [Fact]
    public void Webhook_signatures_verify_and_detect_tampering()
    {
        var body = "[{\"type\":\"connected\"}]"u8.ToArray();
        var signature = WebhookSigner.Sign("secret-secret-secret", 1700000000, body);
        Assert.StartsWith("sha256=", signature);
        Assert.True(WebhookSigner.Verify("secret-secret-secret", "1700000000", body, signature));
        Assert.False(WebhookSigner.Verify("secret-secret-secret", "1700000001", body, signature));
        Assert.False(WebhookSigner.Verify("other-secret-secret", "1700000000", body, signature));
        body[3] ^= 1;
        Assert.False(WebhookSigner.Verify("secret-secret-secret", "1700000000", body, signature));
    }
}
