using DeviceGate.Auth;
using DeviceGate.Configuration;
using Microsoft.Extensions.Options;

namespace DeviceGate.Tests.Auth;

/// <summary>Start-up validation of identity settings: each mistake stops the server with a message naming the key.</summary>
public sealed class AuthConfigurationTests
{
    private static IReadOnlyList<string> Errors(Action<AuthOptions> configure)
    {
        var o = new GatewayOptions();
        configure(o.Auth);
        var errors = new List<string>();
        foreach (var v in new IValidateOptions<GatewayOptions>[] { new GatewayOptionsValidator(), new IdentityValidator() })
        {
            var r = v.Validate(null, o);
            if (r.Failed) errors.AddRange(r.Failures);
        }
        return errors;
    }

    private static ApiKeyOptions Key(string? key = "a-valid-key-0123456789", string? hash = null, params string[] scopes) =>
        new() { Key = key, Hash = hash, Scopes = scopes.Length == 0 ? ["devices:read"] : scopes };

    [Fact]
    public void A_well_formed_set_of_keys_passes()
    {
        Assert.Empty(Errors(a =>
        {
            a.Keys["billing"] = Key(scopes: ["messages:read", "messages:send:kiosk-*"]);
            a.Keys["ops"] = Key(key: null, hash: ApiCallers.HashText("another-key-0123456789"), scopes: ["admin"]);
        }));
    }

    [Theory]
    [InlineData("Auth:Keys:k:Scopes must list at least one scope")]
    [InlineData("Auth:Keys:k:Scopes has 'messages:write'")]
    [InlineData("Auth:Keys:k:Scopes has 'admin:kiosk-*'")]
    [InlineData("Auth:Keys:k:Hash must be sha256:")]
    [InlineData("Auth:Keys:k needs exactly one of Key")]
    [InlineData("Auth:Keys:k:Key must be at least 16")]
    public void Each_mistake_names_the_key(string expected)
    {
        var errors = Errors(a => a.Keys["k"] = expected switch
        {
            var e when e.Contains("at least one scope") => new ApiKeyOptions { Key = "a-valid-key-0123456789" },
            var e when e.Contains("messages:write") => Key(scopes: ["messages:write"]),
            var e when e.Contains("admin:") => Key(scopes: ["admin:kiosk-*"]),
            var e when e.Contains("Hash") => Key(key: null, hash: "sha256:NOT-HEX"),
            var e when e.Contains("exactly one") => Key(key: "a-valid-key-0123456789", hash: ApiCallers.HashText("x")),
            _ => Key(key: "short"),
        });
        Assert.Contains(errors, e => e.Contains("DeviceGate:" + expected, StringComparison.Ordinal));
    }

    [Fact]
    public void The_same_key_twice_is_refused_whether_plain_or_hashed()
    {
        var errors = Errors(a =>
        {
            a.ApiKeys = ["the-same-key-0123456789"];
            a.Keys["b"] = Key(key: null, hash: ApiCallers.HashText("the-same-key-0123456789"));
        });
        Assert.Contains(errors, e => e.Contains("DeviceGate:Auth:Keys:b has the same key as DeviceGate:Auth:ApiKeys:0", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("not a url", "must be an absolute http(s) URL")]
    [InlineData("http://idp.example.com", "must be https")]
    [InlineData("http://127.0.0.1:9000", "must be https")]
    public void An_authority_must_be_an_absolute_https_url(string authority, string expected)
    {
        var errors = Errors(a => a.Jwt.Authority = authority);
        Assert.Contains(errors, e => e.Contains("DeviceGate:Auth:Jwt:Authority", StringComparison.Ordinal) && e.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Loopback_http_is_allowed_only_with_require_https_off()
    {
        Assert.Empty(Errors(a =>
        {
            a.Jwt.Authority = "http://127.0.0.1:9000";
            a.Jwt.RequireHttps = false;
        }));
        Assert.NotEmpty(Errors(a =>
        {
            a.Jwt.JwksUrl = "http://10.0.0.1/jwks";
            a.Jwt.RequireHttps = false;
        }));
        Assert.NotEmpty(Errors(a => a.Jwt.Algorithms = ["HS512"]));
    }

    [Fact]
    public void A_ca_file_that_is_not_pem_certificates_and_a_serial_that_is_not_hex_are_refused()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "not a certificate");
            var errors = Errors(a =>
            {
                a.ClientCertificates.CaFile = path;
                a.ClientCertificates.RevokedSerials = ["zz-not-hex"];
            });
            Assert.Contains(errors, e => e.StartsWith("DeviceGate:Auth:ClientCertificates:CaFile", StringComparison.Ordinal));
            Assert.Contains(errors, e => e.StartsWith("DeviceGate:Auth:ClientCertificates:RevokedSerials:0", StringComparison.Ordinal));
            Assert.Contains(Errors(a => a.ClientCertificates.CaFile = path + ".missing"), e => e.Contains("CaFile", StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task The_server_does_not_start_with_a_bad_key()
    {
        var e = await Assert.ThrowsAnyAsync<Exception>(() => DeviceGate.Tests.Infrastructure.TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Auth:Keys:broken:Key"] = "a-valid-key-0123456789",
            ["DeviceGate:Auth:Keys:broken:Scopes:0"] = "everything",
        }));
        Assert.Contains("DeviceGate:Auth:Keys:broken:Scopes", e.Message);
    }
}
