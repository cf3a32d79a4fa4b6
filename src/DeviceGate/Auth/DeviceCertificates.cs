using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

/// <summary>
/// Device certificates (mutual TLS): a certificate a device presented on an https endpoint must chain to one of the CA
/// certificates of <c>DeviceGate:Auth:ClientCertificates:CaFile</c> (a custom root store: the system's roots are never
/// trusted for devices), be within its validity period, allow client authentication when it has an extended key usage,
/// and not be listed in <c>RevokedSerials</c>. The device id is the SAN URI <c>urn:device:&lt;id&gt;</c> when there is
/// one, else the subject's CN. Kestrel only asks for the certificate (<see cref="Enabled"/>); the verdict is given here,
/// in the handshake, so a bad certificate gets a clear 401/403 instead of a failed TLS handshake.
/// </summary>
public sealed class DeviceCertificates
{
    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    private const string SubjectAltNameOid = "2.5.29.17";
    private const string DeviceUriPrefix = "urn:device:";

    private readonly X509Certificate2Collection _roots = [];
    private readonly HashSet<string> _revoked;
    private readonly TimeProvider _time;

    public DeviceCertificates(IOptions<GatewayOptions> options, TimeProvider time)
    {
        var o = options.Value.Auth.ClientCertificates;
        _time = time;
        _revoked = o.RevokedSerials.Select(NormalizeSerial).ToHashSet(StringComparer.Ordinal);
        if (o.Enabled) _roots.ImportFromPemFile(o.CaFile!);
    }

    public bool Enabled => _roots.Count > 0;

    /// <summary>Reads a CA file as the gateway would; null when fine, else why not (for start-up validation).</summary>
    public static string? Problem(string path)
    {
        try
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(path);
            return roots.Count == 0 ? "holds no PEM certificate" : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            return $"cannot be read as PEM certificates ({e.Message.TrimEnd('.')})";
        }
    }

    private static string NormalizeSerial(string hex) => hex.Replace(":", "", StringComparison.Ordinal).Trim().TrimStart('0').ToUpperInvariant();

    /// <summary>The identity a trusted certificate proves for <paramref name="deviceId"/>.</summary>
    public (TokenCheck Result, DeviceIdentity? Identity) Validate(X509Certificate2 certificate, string deviceId)
    {
        var now = _time.GetUtcNow();
        if (now < certificate.NotBefore.ToUniversalTime() || now > certificate.NotAfter.ToUniversalTime()) return (TokenCheck.Invalid, null);
        if (_revoked.Contains(NormalizeSerial(certificate.SerialNumber))) return (TokenCheck.Invalid, null);
        using (var chain = new X509Chain())
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.AddRange(_roots);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.ChainPolicy.VerificationTime = now.UtcDateTime;
            // Checked only against certificates that carry an extended key usage (one without any allows every use).
            chain.ChainPolicy.ApplicationPolicy.Add(new Oid(ClientAuthOid));
            if (!chain.Build(certificate)) return (TokenCheck.Invalid, null);
        }
        var id = DeviceUri(certificate) ?? certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        if (string.IsNullOrEmpty(id) || !string.Equals(id, deviceId, StringComparison.Ordinal)) return (TokenCheck.WrongDevice, null);
        // notAfter plays exp (closed with 1008 token_expired then); notBefore plays iat for revocation.
        return (TokenCheck.Valid, new DeviceIdentity(deviceId, certificate.NotAfter.ToUniversalTime(), null, DevicePermissions.Unrestricted)
        {
            CertificateIssuedAt = certificate.NotBefore.ToUniversalTime(),
        });
    }

    /// <summary>The id in a SAN URI <c>urn:device:&lt;id&gt;</c>, if the certificate has one.</summary>
    private static string? DeviceUri(X509Certificate2 certificate)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != SubjectAltNameOid) continue;
            try
            {
                var names = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
                var uriTag = new Asn1Tag(TagClass.ContextSpecific, 6);
                while (names.HasData)
                {
                    if (names.PeekTag().HasSameClassAndValue(uriTag))
                    {
                        var uri = names.ReadCharacterString(UniversalTagNumber.IA5String, uriTag);
                        if (uri.StartsWith(DeviceUriPrefix, StringComparison.Ordinal)) return uri[DeviceUriPrefix.Length..];
                    }
                    else
                    {
                        names.ReadEncodedValue();
                    }
                }
            }
            catch (AsnContentException)
            {
                return null;
            }
        }
        return null;
    }
}
