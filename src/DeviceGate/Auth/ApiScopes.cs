namespace DeviceGate.Auth;

/// <summary>
/// What an API caller may do. A grant is a scope, optionally narrowed to devices by a pattern after a third colon
/// (<c>messages:send:kiosk-*</c>; the pattern rules of device token permissions). <c>admin</c> is every scope.
/// </summary>
public static class ApiScopes
{
    public const string MessagesSend = "messages:send";
    public const string MessagesRead = "messages:read";
    public const string MessagesCancel = "messages:cancel";
    public const string DevicesRead = "devices:read";
    public const string DevicesManage = "devices:manage";
    public const string RpcCall = "rpc:call";
    public const string EventsRead = "events:read";
    public const string StateRead = "state:read";
    public const string StateWrite = "state:write";
    public const string Admin = "admin";

    public static readonly IReadOnlyList<string> All =
        [MessagesSend, MessagesRead, MessagesCancel, DevicesRead, DevicesManage, RpcCall, EventsRead, StateRead, StateWrite, Admin];

    /// <summary>Parses <c>scope</c> or <c>scope:pattern</c>; false for an unknown scope, an admin with a pattern, or a bad pattern.</summary>
    public static bool TryParse(string text, out ScopeGrant grant)
    {
        grant = default;
        var second = text.IndexOf(':', text.IndexOf(':') + 1);
        var scope = second < 0 ? text : text[..second];
        var pattern = second < 0 ? null : text[(second + 1)..];
        if (!All.Contains(scope)) return false;
        if (pattern is not null && (scope == Admin || !IsPattern(pattern))) return false;
        grant = new ScopeGrant(scope, pattern);
        return true;
    }

    /// <summary>An exact device id, a prefix ending in <c>*</c>, or <c>*</c>.</summary>
    private static bool IsPattern(string p) => p == "*" || DeviceId.IsValid(p.EndsWith('*') ? p[..^1] : p);
}

/// <summary>One scope a caller holds, for every device (<see cref="Pattern"/> null) or those matching the pattern.</summary>
public readonly record struct ScopeGrant(string Scope, string? Pattern)
{
    public override string ToString() => Pattern is null ? Scope : $"{Scope}:{Pattern}";
}

/// <summary>Who is calling the API (a key's name, or an API token's <c>sub</c>) and what it may do.</summary>
public sealed class ApiCaller(string name, IReadOnlyList<ScopeGrant> grants, bool isToken = false)
{
    public string Name { get; } = name;

    public IReadOnlyList<ScopeGrant> Grants { get; } = grants;

    /// <summary>A bearer JWT rather than a key (its name is the token's <c>sub</c>).</summary>
    public bool IsToken { get; } = isToken;

    public bool IsAdmin => Grants.Any(g => g.Scope == ApiScopes.Admin);

    /// <summary>May use <paramref name="scope"/> on <paramref name="device"/> (any grant of it, when the device is not known yet).</summary>
    public bool Allows(string scope, string? device = null, bool anyPattern = false)
    {
        foreach (var g in Grants)
        {
            if (g.Scope == ApiScopes.Admin) return true;
            if (g.Scope != scope) continue;
            if (g.Pattern is null || anyPattern) return true;
            if (device is not null && DevicePermissions.Matches([g.Pattern], device)) return true;
        }
        return false;
    }

    /// <summary>The patterns this caller's <paramref name="scope"/> is narrowed to; null when it covers every device.</summary>
    public IReadOnlyList<string>? PatternsOf(string scope)
    {
        if (IsAdmin || Grants.Any(g => g.Scope == scope && g.Pattern is null)) return null;
        return Grants.Where(g => g.Scope == scope && g.Pattern is not null).Select(g => g.Pattern!).ToArray();
    }
}
