using System.Text;
using DeviceGate.Auth;
using DeviceGate.Protocol;
using DeviceGate.Webhooks;

namespace DeviceGate.Tests.Unit;

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
    public void The_envelope_parser_never_throws_on_random_input()
    {
        var random = new Random(12345);
        string[] fragments = ["{", "}", "[", "]", "\"type\"", ":", ",", "\"send\"", "\"to\"", "\"data\"", "1e999999", "null", "\"\\u0000\"", "-", "\"ref\"", "true", "\"ttl\"", "-1"];
        for (var i = 0; i < 20_000; i++)
        {
            byte[] input;
            if (i % 2 == 0)
            {
                input = new byte[random.Next(0, 64)];
                random.NextBytes(input);
            }
            else
            {
                var sb = new StringBuilder();
                for (var j = random.Next(1, 20); j > 0; j--) sb.Append(fragments[random.Next(fragments.Length)]);
                input = Encoding.UTF8.GetBytes(sb.ToString());
            }
            if (EnvelopeReader.TryParse(input, out var envelope, out var problem))
            {
                Assert.NotNull(envelope!.Type);
                envelope.Dispose();
            }
            else
            {
                Assert.Contains(problem.Code, new[] { ErrorCodes.BadJson, ErrorCodes.MissingField, ErrorCodes.InvalidField });
            }
        }
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
