namespace DeviceGate.Messages;

/// <summary>Message kinds, as metric labels.</summary>
internal static class MessageKinds
{
    public const string Targeted = "targeted";
    public const string Group = "group";
    public const string Broadcast = "broadcast";
    public const string Rpc = "rpc";
    public const string State = "state";
}
