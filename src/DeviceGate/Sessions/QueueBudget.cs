namespace DeviceGate.Sessions;

/// <summary>
/// What a transport's send queue holds, in messages and bytes, against its two limits (DeviceGate:Limits:
/// SendQueueMessages, SendQueueBytes). A mutable struct kept as a field of its transport: nothing allocated per device.
/// Thread-safe (interlocked); a caller that is refused has taken nothing.
/// </summary>
internal struct QueueBudget
{
    private int _messages;
    private long _bytes;

    /// <summary>Takes room for one message of <paramref name="bytes"/>; false (and nothing taken) when that passes either limit.</summary>
    public bool TryTake(int bytes, int maxMessages, long maxBytes)
    {
        var count = Interlocked.Increment(ref _messages);
        var total = Interlocked.Add(ref _bytes, bytes);
        if (count <= maxMessages && total <= maxBytes) return true;
        Return(bytes);
        return false;
    }

    /// <summary>One message of <paramref name="bytes"/> left the queue (written, or dropped).</summary>
    public void Return(int bytes)
    {
        Interlocked.Decrement(ref _messages);
        Interlocked.Add(ref _bytes, -bytes);
    }
}
