using System.Buffers;
using System.Net.WebSockets;
using DeviceGate.Auth;
using DeviceGate.Protocol;
using DeviceGate.Sessions;

namespace DeviceGate.Connections;

/// <summary>
/// The WebSocket transport of one session: a read loop, and one bounded queue with at most one writer at a time.
/// A message queued while nothing is being written is written at once on the caller's thread (as SignalR's
/// <c>HubConnectionContext.WriteAsync</c> does): Kestrel takes the bytes into the connection's pipe without waiting,
/// so the caller pays a copy and no thread hop. Only a write that does not finish at once (a slow device, a full
/// pipe) goes on asynchronously, and it writes whatever was queued behind it, in order, before it lets go. An idle
/// device therefore holds no writer task and no queue storage. Every close goes through the writer too, so only one
/// writer ever sends on the socket; enqueueing never blocks the caller. What the device is (id, budgets, lane) is
/// its <see cref="Session"/>'s.
/// </summary>
internal sealed class DeviceSocket : ISessionTransport
{
    /// <summary>Handles one complete inbound message. The buffer is only valid during the call.</summary>
    public delegate void MessageHandler(DeviceSession session, ReadOnlySpan<byte> payload, WebSocketMessageType type);

    private const int InitialReceiveBuffer = 4096;

    private WebSocket? _socket;
    // The queue (guarded by itself) and whether a writer holds the socket (1) or not (0); see Drain.
    private readonly Queue<OutboundMessage> _queue = new();
    // The oldest waiting message when it is the only one (the usual case: written at once): the queue's array is
    // made only for a second waiting message, so a broadcast does not leave one in every idle connection.
    private OutboundMessage _first;
    private bool _hasFirst;
    private bool _queueCompleted;
    private int _highWater;
    private int _writing;
    private readonly int _maxMessageBytes;
    private readonly int _maxQueuedMessages;
    private readonly long _maxQueuedBytes;
    private readonly TimeProvider _time;
    private readonly MessageHandler _onMessage;
    private readonly GatewayMetrics _metrics;
    private readonly int _maxReceivesPerMessage;
    private readonly TaskCompletionSource _closeSent = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _readDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _writesDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private QueueBudget _queued;
    private int _closeRequested;
    private volatile bool _dropBacklog;
    private int _sendCode = 1006;
    private string _sendReason = "aborted";

    /// <summary>
    /// Creates the transport before the upgrade, so its session can be registered (and receive messages) before the
    /// device sees 101; <see cref="RunAsync"/> attaches the socket.
    /// </summary>
    public DeviceSocket(DeviceSession session, LimitsOptions limits, TimeProvider time, GatewayMetrics metrics, MessageHandler onMessage)
    {
        _metrics = metrics;
        Session = session;
        _maxReceivesPerMessage = Math.Max(Defaults.MinReceivesPerMessage, limits.MaxMessageBytes / 16);
        _maxMessageBytes = limits.MaxMessageBytes;
        _maxQueuedMessages = limits.SendQueueMessages;
        _maxQueuedBytes = limits.SendQueueBytes;
        _time = time;
        _onMessage = onMessage;
    }

    public DeviceSession Session { get; }

    /// <summary>Told once when the read loop failed with an unexpected exception (the connection is then closed with 1011).</summary>
    public Action<DeviceSession, Exception>? Faulted { get; init; }

    /// <summary>
    /// Called once, on the first close request, before the close frame is written (used to leave the registry). One
    /// shared delegate per endpoint rather than an event with handlers per connection: nothing allocated per device.
    /// </summary>
    public Action<DeviceSession>? Closing { get; init; }

    /// <summary>The code this connection was closed with (sent by us, or received from the device); 1006 when the socket died.</summary>
    public int CloseCode { get; private set; } = 1006;
    public string CloseReason { get; private set; } = "aborted";

    /// <summary>True when the device sent the first close frame.</summary>
    public bool ClosedByDevice { get; private set; }

    /// <summary>Told about each message dropped by the per-device rate limit (envelope devices get an error envelope).</summary>
    public Action<DeviceSession>? RateLimited { get; init; }

    /// <summary>
    /// Whether what the peer sends is held to its session's message budget (devices: yes). The echo endpoint is not:
    /// each message it reads is answered on the same connection, so a client goes only as fast as it reads its
    /// replies, and one that stops reading fills its send queue and is closed with 4002.
    /// </summary>
    public bool HeldToRate { get; init; } = true;

    /// <summary>Completes when the connection has ended, whichever side ended it.</summary>
    public Task Completion => _done.Task;

    public bool IsClosing => Volatile.Read(ref _closeRequested) != 0;

    /// <summary>Queues a message without ever blocking. Overflow closes the connection with 4002.</summary>
    public EnqueueResult TryEnqueue(in OutboundMessage message)
    {
        if (IsClosing) return EnqueueResult.Closed;
        if (!_queued.TryTake(message.Payload.Length, _maxQueuedMessages, _maxQueuedBytes))
        {
            if (RequestClose(CloseCodes.SlowConsumer, CloseReasons.SlowConsumer, dropBacklog: true)) _metrics.SendQueueOverflows.Add(1);
            return EnqueueResult.Overflow;
        }
        lock (_queue)
        {
            if (_queueCompleted)
            {
                Dequeued(message.Payload.Length);
                return EnqueueResult.Closed;
            }
            if (!_hasFirst && _queue.Count == 0)
            {
                _first = message;
                _hasFirst = true;
            }
            else
            {
                _queue.Enqueue(message);
                if (_queue.Count > _highWater) _highWater = _queue.Count;
            }
        }
        Kick();
        return EnqueueResult.Queued;
    }

    /// <summary>
    /// Asks the writer to close with <paramref name="code"/> once its current write ends. With
    /// <paramref name="dropBacklog"/> the queued messages are discarded, otherwise they are written first.
    /// Only the first request counts.
    /// </summary>
    public bool RequestClose(int code, string reason, bool dropBacklog)
    {
        if (Interlocked.Exchange(ref _closeRequested, 1) != 0) return false;
        CloseCode = _sendCode = code;
        CloseReason = _sendReason = reason;
        _dropBacklog = dropBacklog;
        Closing?.Invoke(Session);
        lock (_queue) _queueCompleted = true;
        // Every close is bounded, except shutdown's 1001, whose drain deadline the shutdown service enforces.
        if (code != CloseCodes.GoingAway && Volatile.Read(ref _socket) is { } socket) _ = AbortIfCloseStallsAsync(socket);
        // An idle writer is woken to write the close (after the backlog, unless it is dropped).
        Kick();
        return true;
    }

    /// <summary>Drops the socket at once (no close frame). Used when a drain deadline passes.</summary>
    public void Abort()
    {
        RequestClose(1006, "aborted", dropBacklog: true);
        Volatile.Read(ref _socket)?.Abort();
    }

    /// <summary>The upgrade failed: the connection ends without ever having had a socket.</summary>
    public void Abandon()
    {
        RequestClose(1006, "aborted", dropBacklog: true);
        _done.TrySetResult();
    }

    /// <summary>Runs the connection on <paramref name="socket"/> until it is closed; never throws.</summary>
    public async Task RunAsync(WebSocket socket)
    {
        Volatile.Write(ref _socket, socket);
        try
        {
            // Closed before the upgrade finished (e.g. replaced at once): the same bound applies from now on.
            if (IsClosing && _sendCode != CloseCodes.GoingAway) _ = AbortIfCloseStallsAsync(socket);
            // What was queued before the upgrade finished (or a close requested meanwhile) is written now.
            Kick();
            await ReadLoopAsync(socket).ConfigureAwait(false);
            _readDone.TrySetResult();
            if (socket.State != WebSocketState.Closed && !IsClosing) RequestClose(1006, "aborted", dropBacklog: true);
            await _writesDone.Task.ConfigureAwait(false);
        }
        finally
        {
            _readDone.TrySetResult();
            _done.TrySetResult();
        }
    }

    private async Task ReadLoopAsync(WebSocket socket)
    {
        byte[]? buffer = null;
        try
        {
            while (true)
            {
                // A zero-byte read waits for the next frame without holding a buffer while the device is idle.
                var first = await socket.ReceiveAsync(Memory<byte>.Empty, CancellationToken.None).ConfigureAwait(false);
                if (first.MessageType == WebSocketMessageType.Close)
                {
                    OnCloseReceived(socket);
                    return;
                }
                var type = first.MessageType;
                var length = 0;
                var end = first.EndOfMessage;
                var tooBig = false;
                var receives = 0;
                if (!end)
                {
                    buffer = ArrayPool<byte>.Shared.Rent(Math.Min(InitialReceiveBuffer, _maxMessageBytes + 1));
                    while (!end)
                    {
                        if (length == Math.Min(buffer.Length, _maxMessageBytes + 1))
                        {
                            var bigger = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length * 2, _maxMessageBytes + 1));
                            buffer.AsSpan(0, length).CopyTo(bigger);
                            ArrayPool<byte>.Shared.Return(buffer);
                            buffer = bigger;
                        }
                        // Never ask for more than one byte past the limit: the WebSocket waits until the slice it was
                        // given is full (or the frame ends), and a frame may announce up to 2^63 bytes.
                        var room = Math.Min(buffer.Length, _maxMessageBytes + 1) - length;
                        var r = await socket.ReceiveAsync(buffer.AsMemory(length, room), CancellationToken.None).ConfigureAwait(false);
                        if (r.MessageType == WebSocketMessageType.Close)
                        {
                            OnCloseReceived(socket);
                            return;
                        }
                        length += r.Count;
                        end = r.EndOfMessage;
                        // Bounded assembly: by total bytes, and by reads, so a flood of empty fragments ends too.
                        if (length > _maxMessageBytes || ++receives > _maxReceivesPerMessage)
                        {
                            tooBig = true;
                            break;
                        }
                    }
                }
                if (tooBig)
                {
                    RequestClose(CloseCodes.TooBig, CloseReasons.TooBig, dropBacklog: true);
                }
                else if (!IsClosing)
                {
                    _metrics.BytesIn.Add(length);
                    var allowed = !HeldToRate || (Session.Mode == Protocol.ConnectionMode.Raw ? await ThrottleAsync().ConfigureAwait(false) : TakeMessageToken());
                    if (allowed) _onMessage(Session, buffer is null ? ReadOnlySpan<byte>.Empty : buffer.AsSpan(0, length), type);
                }
                if (buffer is not null)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = null;
                }
                if (tooBig)
                {
                    await DiscardUntilCloseAsync(socket).ConfigureAwait(false);
                    return;
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException
                                      or Microsoft.AspNetCore.Connections.ConnectionAbortedException)
        {
            // The peer vanished or we aborted: the writer learns it from the socket state.
        }
        catch (Exception e)
        {
            // A handler threw on what this device sent (a bug of ours, whatever the input): that one connection ends
            // with 1011 and its teardown runs as for any close; every other device goes on.
            Faulted?.Invoke(Session, e);
            RequestClose(CloseCodes.InternalError, CloseReasons.InternalError, dropBacklog: true);
        }
        finally
        {
            if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>After we decided to close, read (and drop) whatever is still in flight until the device's close frame.</summary>
    private static async Task DiscardUntilCloseAsync(WebSocket socket)
    {
        var scratch = ArrayPool<byte>.Shared.Rent(1024);
        try
        {
            while (true)
            {
                var r = await socket.ReceiveAsync(scratch.AsMemory(), CancellationToken.None).ConfigureAwait(false);
                if (r.MessageType == WebSocketMessageType.Close) return;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    // Whether this raw connection is being held to its rate now (logged when it starts).
    private bool _held;

    /// <summary>
    /// A raw device's (and an echo client's) message budget: a message over the rate waits here, and nothing more is
    /// read from the socket meanwhile, so TCP flow control slows the device down and nothing it sent is lost. Each
    /// wait is at most one token's refill (1/DeviceMessagesPerSecond), so the WebSocket's keep-alive pongs are read in
    /// between. A device held without a break for longer than ThrottledCloseAfter is closed with 1008 rate_limited.
    /// </summary>
    private async ValueTask<bool> ThrottleAsync()
    {
        var waited = false;
        while (Session.Budget.Throttle(out var close) is { } wait)
        {
            if (!waited)
            {
                waited = true;
                _metrics.RateLimited.Add(1);
                if (!_held) RateLimited?.Invoke(Session);
                _held = true;
            }
            if (close)
            {
                RequestClose(CloseCodes.PolicyViolation, CloseReasons.RateLimited, dropBacklog: false);
                return false;
            }
            await Task.Delay(wait, _time).ConfigureAwait(false);
            if (IsClosing) return false;
        }
        if (!waited) _held = false;
        return true;
    }

    /// <summary>
    /// An envelope device's message budget (DeviceMessagesPerSecond, DeviceMessagesBurst). A message over the rate is dropped,
    /// never waited for: reading goes on. A device that keeps going past a second budget of the same size is closed
    /// with 1008 rate_limited.
    /// </summary>
    private bool TakeMessageToken()
    {
        switch (Session.Budget.TakeMessage())
        {
            case DeviceBudget.Verdict.Allowed:
                return true;
            case DeviceBudget.Verdict.Dropped:
                _metrics.RateLimited.Add(1);
                RateLimited?.Invoke(Session);
                return false;
            default:
                _metrics.RateLimited.Add(1);
                // The error answers already queued are written before the close, so the device learns why.
                RequestClose(CloseCodes.PolicyViolation, CloseReasons.RateLimited, dropBacklog: false);
                return false;
        }
    }

    private void OnCloseReceived(WebSocket socket)
    {
        // Answer the device's close with 1000 (unless we were closing already) and remember its code for the logs.
        if (RequestClose(CloseCodes.Normal, CloseReasons.Normal, dropBacklog: true))
        {
            CloseCode = (int?)socket.CloseStatus ?? 1005;
            CloseReason = socket.CloseStatusDescription ?? "";
            ClosedByDevice = true;
        }
    }

    /// <summary>Starts a writer on this thread unless one holds the socket (or there is no socket yet).</summary>
    private void Kick()
    {
        if (Volatile.Read(ref _socket) is not null && Interlocked.CompareExchange(ref _writing, 1, 0) == 0) Drain();
    }

    /// <summary>
    /// The writer, entered only by whoever set <see cref="_writing"/>: writes the queue in order while each write
    /// finishes at once; hands over to <see cref="DrainAsync"/> at the first that does not. Once the queue is empty it
    /// lets go of the socket and looks once more (a message queued in between would otherwise wait for the next one);
    /// once a close was requested it writes the close instead and never lets go.
    /// </summary>
    private void Drain()
    {
        var socket = _socket!;
        while (true)
        {
            if (!_dropBacklog && TryDequeue(out var message))
            {
                ValueTask send;
                try
                {
                    send = socket.SendAsync(message.Payload, message.Type, endOfMessage: true, CancellationToken.None);
                    if (send.IsCompleted) send.GetAwaiter().GetResult();
                }
                catch (Exception e) when (IsConnectionFailure(e))
                {
                    WriteFailed(socket);
                    return;
                }
                if (!send.IsCompleted)
                {
                    _ = DrainAsync(socket, send, message);
                    return;
                }
                Written(message);
                continue;
            }
            if (IsClosing)
            {
                _ = CloseAsync(socket);
                return;
            }
            Volatile.Write(ref _writing, 0);
            lock (_queue)
            {
                if (_queue.Count == 0 && _highWater > 16)
                {
                    // A burst grew the queue's array: an idle device does not keep it.
                    _queue.TrimExcess();
                    _highWater = 0;
                }
                if (!_hasFirst && _queue.Count == 0 && !IsClosing) return;
            }
            if (Interlocked.CompareExchange(ref _writing, 1, 0) != 0) return;
        }
    }

    /// <summary>The writer, past a write that did not finish at once: waits for it, then goes on as <see cref="Drain"/>.</summary>
    private async Task DrainAsync(WebSocket socket, ValueTask pending, OutboundMessage message)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            WriteFailed(socket);
            return;
        }
        Written(message);
        Drain();
    }

    private bool TryDequeue(out OutboundMessage message)
    {
        lock (_queue)
        {
            if (_hasFirst)
            {
                message = _first;
                _first = default;
                _hasFirst = false;
            }
            else if (!_queue.TryDequeue(out message)) return false;
        }
        Dequeued(message.Payload.Length);
        return true;
    }

    private void Written(in OutboundMessage message)
    {
        _metrics.BytesOut.Add(message.Payload.Length);
        try
        {
            message.Observer?.OnWritten();
        }
        catch (Exception e)
        {
            // The writer may be running on a sender's thread: a failing observer (a bug of ours) ends this one
            // connection with 1011, never the sender's call.
            Faulted?.Invoke(Session, e);
            RequestClose(CloseCodes.InternalError, CloseReasons.InternalError, dropBacklog: true);
        }
    }

    private static bool IsConnectionFailure(Exception e) => e is WebSocketException or OperationCanceledException or ObjectDisposedException or IOException
        or Microsoft.AspNetCore.Connections.ConnectionAbortedException;

    /// <summary>A write failed: the connection is gone; the writer keeps the socket so nothing else writes.</summary>
    private void WriteFailed(WebSocket socket)
    {
        socket.Abort();
        RequestClose(1006, "aborted", dropBacklog: true);
        DropQueued();
        _closeSent.TrySetResult();
        _writesDone.TrySetResult();
    }

    /// <summary>The close, written by the writer after the backlog (or instead of it): bounded by CloseHandshakeTimeout.</summary>
    private async Task CloseAsync(WebSocket socket)
    {
        DropQueued();
        try
        {
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived && _sendCode != 1006)
            {
                await socket.CloseOutputAsync((WebSocketCloseStatus)_sendCode, _sendReason, CancellationToken.None).ConfigureAwait(false);
                _closeSent.TrySetResult();
                // The device has CloseHandshakeTimeout to answer our close frame.
                if (!await CompletesWithinAsync(_readDone.Task, Defaults.CloseHandshakeTimeout).ConfigureAwait(false)) socket.Abort();
            }
            else if (socket.State != WebSocketState.Closed)
            {
                socket.Abort();
            }
        }
        catch (Exception e) when (IsConnectionFailure(e))
        {
            socket.Abort();
        }
        finally
        {
            _closeSent.TrySetResult();
            DropQueued();
            _writesDone.TrySetResult();
        }
    }

    private void DropQueued()
    {
        while (TryDequeue(out _))
        {
        }
    }

    /// <summary>
    /// A write already in progress may finish, but only for CloseWriteTimeout; cancelling the pending SendAsync would
    /// abort the socket anyway, so past that we abort it ourselves.
    /// </summary>
    private async Task AbortIfCloseStallsAsync(WebSocket socket)
    {
        if (!await CompletesWithinAsync(_closeSent.Task, Defaults.CloseWriteTimeout).ConfigureAwait(false)) socket.Abort();
    }

    private async Task<bool> CompletesWithinAsync(Task task, TimeSpan timeout)
    {
        try
        {
            await task.WaitAsync(timeout, _time).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    private void Dequeued(int bytes) => _queued.Return(bytes);
}
