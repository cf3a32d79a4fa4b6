using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

/// <summary>
/// Start-up validation of the identity settings that need Auth to judge: API keys (shape, hash format, scopes, no key
/// configured twice) and device certificates (the CA file parses, revoked serials are hex).
/// </summary>
internal sealed class IdentityValidator : IValidateOptions<GatewayOptions>
{
    public ValidateOptionsResult Validate(string? name, GatewayOptions o)
    {
        var errors = new List<string>();
        void Require(bool ok, string key, string rule)
        {
            if (!ok) errors.Add($"DeviceGate:{key} {rule}.");
        }
        var hashes = new Dictionary<string, string>(StringComparer.Ordinal);
        void Unique(string hash, string key)
        {
            if (hashes.TryGetValue(hash, out var other)) errors.Add($"DeviceGate:{key} has the same key as DeviceGate:{other}; every key must be its own.");
            else hashes[hash] = key;
        }
        for (var i = 0; i < o.Auth.ApiKeys.Length; i++) Unique(ApiCallers.HashText(o.Auth.ApiKeys[i]), $"Auth:ApiKeys:{i}");
        foreach (var (keyName, key) in o.Auth.Keys)
        {
            var path = $"Auth:Keys:{keyName}";
            Require((key.Key is null) != (key.Hash is null), path, "needs exactly one of Key (the key) and Hash (sha256:<hex>)");
            if (key.Key is { } plain)
            {
                Require(plain.Length >= 16, path + ":Key", "must be at least 16 characters");
                Unique(ApiCallers.HashText(plain), path);
            }
            if (key.Hash is { } hash)
            {
                var ok = hash.StartsWith(ApiCallers.HashPrefix, StringComparison.Ordinal) && hash.Length == ApiCallers.HashPrefix.Length + 64
                    && hash[ApiCallers.HashPrefix.Length..].All(c => c is >= '0' and <= '9' or >= 'a' and <= 'f');
                Require(ok, path + ":Hash", "must be sha256: followed by 64 lowercase hex digits (devicegate key hash <key> prints it)");
                if (ok) Unique(hash, path);
            }
            Require(key.Scopes.Length > 0, path + ":Scopes", $"must list at least one scope ({string.Join(", ", ApiScopes.All)}; a scope may end in :<device pattern>)");
            foreach (var scope in key.Scopes)
            {
                Require(ApiScopes.TryParse(scope, out _), path + ":Scopes", $"has '{scope}', which is not a scope ({string.Join(", ", ApiScopes.All)}, optionally :<device pattern>, not on admin)");
            }
        }
        var certificates = o.Auth.ClientCertificates;
        if (certificates.Enabled && DeviceCertificates.Problem(certificates.CaFile!) is { } problem)
        {
            errors.Add($"DeviceGate:Auth:ClientCertificates:CaFile ({certificates.CaFile}) {problem}.");
        }
        for (var i = 0; i < certificates.RevokedSerials.Length; i++)
        {
            var serial = certificates.RevokedSerials[i].Replace(":", "", StringComparison.Ordinal);
            Require(serial.Length > 0 && serial.All(Uri.IsHexDigit), $"Auth:ClientCertificates:RevokedSerials:{i}", "must be a serial number in hex");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
