using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

/// <summary>Start-up validation of the API keys: shape, hash format, scopes, and no key configured twice.</summary>
internal sealed class ApiKeysValidator : IValidateOptions<GatewayOptions>
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
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
