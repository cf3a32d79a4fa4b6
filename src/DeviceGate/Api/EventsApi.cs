using System.Buffers;
using System.Globalization;
using System.Text;
using DeviceGate.Connections;
using Microsoft.Extensions.Options;
using DeviceGate.Events;

namespace DeviceGate.Api;

/// <summary>
/// <c>GET /api/events</c>: Server-Sent Events. Each event is <c>id:</c>, <c>event:</c> and one JSON <c>data:</c> line;
/// comments keep proxies from timing the stream out. Resumes from <c>Last-Event-ID</c>.
/// </summary>
internal static class EventsEndpoint
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapGet("/events", StreamAsync).WithName("EventStream")
            .Produces(200, contentType: "text/event-stream").ProducesProblem(400);

    private static async Task<IResult> StreamAsync(HttpContext context, EventHub hub, IOptions<GatewayOptions> options, TimeProvider time,
        IHostApplicationLifetime lifetime, GatewayMetrics metrics, string? types, string? device)
    {
        var wanted = EventTypes.All.ToHashSet(StringComparer.Ordinal);
        if (!string.IsNullOrEmpty(types))
        {
            wanted = types.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
            var unknown = wanted.Where(t => !EventTypes.All.Contains(t)).ToList();
            if (unknown.Count > 0) return Api.Problems.BadQuery("types", $"Unknown event types: {string.Join(", ", unknown)}. Known: {string.Join(", ", EventTypes.All)}.");
        }
        if (device is not null && !DeviceId.IsValid(device)) return Api.Problems.InvalidId("device id");
        // events:read:<pattern> sees only the events of matching devices.
        var patterns = ApiAccess.CallerOf(context).PatternsOf(Auth.ApiScopes.EventsRead);
        if (device is not null && patterns is not null && !Auth.DevicePermissions.Matches(patterns, device)) return ApiProblem.InsufficientScope(Auth.ApiScopes.EventsRead, device);

        long? lastEventId = null;
        var header = context.Request.Headers["Last-Event-ID"].ToString();
        if (string.IsNullOrEmpty(header)) header = context.Request.Query["lastEventId"].ToString();
        if (!string.IsNullOrEmpty(header))
        {
            if (!long.TryParse(header, NumberStyles.None, CultureInfo.InvariantCulture, out var last)) return Api.Problems.BadQuery("Last-Event-ID", "Last-Event-ID must be an event id from this stream.");
            lastEventId = last;
        }

        var o = options.Value.Events;
        using var subscription = await hub.SubscribeAsync(lastEventId, o.SubscriberBuffer, e => wanted.Contains(e.Type) && (device is null || e.Device == device)
            && (patterns is null || e.Device is null || Auth.DevicePermissions.Matches(patterns, e.Device))).ConfigureAwait(false);
        // Over its byte or event budget: disconnected at once, even while a write to it is stuck.
        subscription.OnDropped = context.Abort;
        var response = context.Response;
        response.Headers.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        // Ends with the request, or when the server starts shutting down (readers resume elsewhere with Last-Event-ID).
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, lifetime.ApplicationStopping);
        var ct = linked.Token;
        await response.StartAsync(ct).ConfigureAwait(false);
        await response.WriteAsync($"retry: 2000\n: DeviceGate events, last id {hub.LastId}\n\n", ct).ConfigureAwait(false);

        var reader = subscription.Reader;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var ready = reader.WaitToReadAsync(ct).AsTask();
                var tick = Task.Delay(o.KeepAliveInterval, time, ct);
                if (await Task.WhenAny(ready, tick).ConfigureAwait(false) == tick)
                {
                    response.BodyWriter.Write(": keep-alive\n\n"u8);
                    await FlushAsync(response, o.StalledReaderTimeout, time, ct).ConfigureAwait(false);
                    await ready.ConfigureAwait(false);
                }
                if (!await ready.ConfigureAwait(false)) break;
                while (reader.TryRead(out var e))
                {
                    subscription.Consumed(e);
                    Write(response.BodyWriter, e);
                }
                await FlushAsync(response, o.StalledReaderTimeout, time, ct).ConfigureAwait(false);
            }
        }
        catch (EventHub.DroppedException)
        {
            // Too slow: end the stream; the reader reconnects with Last-Event-ID and gets what it missed (or a reset).
            context.Abort();
        }
        catch (TimeoutException)
        {
            // The reader took no bytes for StalledReaderTimeout: a stalled client would otherwise hold its queue forever.
            metrics.EventReadersDropped.Add("stalled");
            context.Abort();
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            // The request ends here: a drop noticed from now on must not touch it.
            subscription.OnDropped = null;
        }
        return Results.Empty;
    }

    /// <summary>Flushes, or throws <see cref="TimeoutException"/> when the client has not taken the bytes within <paramref name="timeout"/>.</summary>
    private static async Task FlushAsync(HttpResponse response, TimeSpan timeout, TimeProvider time, CancellationToken ct)
    {
        var flush = response.BodyWriter.FlushAsync(ct);
        if (!flush.IsCompleted) await flush.AsTask().WaitAsync(timeout, time, ct).ConfigureAwait(false);
    }

    private static void Write(System.IO.Pipelines.PipeWriter w, GatewayEvent e)
    {
        w.Write(Encoding.UTF8.GetBytes($"id: {e.Id}\nevent: {e.Type}\ndata: ").AsSpan());
        w.Write(e.Json.AsSpan());
        w.Write("\n\n"u8);
    }
}
