namespace DeviceGate.Messages;

/// <summary>The id rule shared by devices and groups: 1-128 of [A-Za-z0-9._:-], first a letter or digit, ordinal.</summary>
public static class DeviceId
{
    public const int MaxLength = 128;

    /// <summary>Names the gateway itself in messages; no device may take it.</summary>
    public const string Server = "server";

    public static bool IsValid(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxLength || !char.IsAsciiLetterOrDigit(id[0])) return false;
        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or ':' or '-')) return false;
        }
        return true;
    }
}
