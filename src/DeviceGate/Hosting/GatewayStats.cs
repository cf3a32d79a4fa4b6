namespace DeviceGate.Hosting;

/// <summary>Plain counters until the metrics endpoint lands; cheap enough for the hot path.</summary>
internal sealed class GatewayStats
{
    private long _messagesIn;
    private long _messagesOut;
    private long _lateReplies;

    public long MessagesIn => Interlocked.Read(ref _messagesIn);
    public long MessagesOutTotal => Interlocked.Read(ref _messagesOut);

    public long LateReplies => Interlocked.Read(ref _lateReplies);

    public void LateReply() => Interlocked.Increment(ref _lateReplies);
    public void MessageIn() => Interlocked.Increment(ref _messagesIn);
    public void MessageOut() => Interlocked.Increment(ref _messagesOut);
    public void MessagesOut(int n) => Interlocked.Add(ref _messagesOut, n);
}
