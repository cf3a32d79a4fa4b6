using Microsoft.IdentityModel.JsonWebTokens;

namespace DeviceGate.Auth;

/// <summary>
/// What an envelope device may do, from its token's optional <c>groups</c> and <c>send</c> claims. A claim that is
/// absent does not restrict. A pattern is an exact name, a prefix ending in <c>*</c>, or <c>*</c>.
/// </summary>
public sealed class DevicePermissions
{
    public const string GroupsClaim = "groups";
    public const string SendClaim = "send";

    public static readonly DevicePermissions Unrestricted = new(null, null);

    private readonly string[]? _groups;
    private readonly string[]? _send;

    public DevicePermissions(string[]? groups, string[]? send)
    {
        _groups = groups;
        _send = send;
    }

    /// <summary>The patterns of a token's <paramref name="groupsClaim"/> and <paramref name="sendClaim"/> (an outside issuer may name them otherwise).</summary>
    public static DevicePermissions From(JsonWebToken? token, string groupsClaim = GroupsClaim, string sendClaim = SendClaim)
    {
        if (token is null) return Unrestricted;
        return new DevicePermissions(Patterns(token, groupsClaim), Patterns(token, sendClaim));
    }

    /// <summary>May join and publish to <paramref name="group"/>.</summary>
    public bool MayUseGroup(string group) => _groups is null || Matches(_groups, group);

    /// <summary>May send to <paramref name="deviceId"/>; the gateway itself (<c>server</c>) is always allowed.</summary>
    public bool MaySendTo(string deviceId) => deviceId == DeviceId.Server || _send is null || Matches(_send, deviceId);

    public static bool Matches(IEnumerable<string> patterns, string name)
    {
        foreach (var p in patterns)
        {
            if (p == "*" || p == name) return true;
            if (p.Length > 1 && p[^1] == '*' && name.StartsWith(p.AsSpan(0, p.Length - 1), StringComparison.Ordinal)) return true;
        }
        return false;
    }

    private static string[]? Patterns(JsonWebToken token, string claim)
    {
        if (!token.TryGetPayloadValue<object>(claim, out _)) return null;
        if (token.TryGetPayloadValue<string[]>(claim, out var many) && many is not null) return many;
        if (token.TryGetPayloadValue<string>(claim, out var one) && one is not null) return [one];
        return [];
    }
}
