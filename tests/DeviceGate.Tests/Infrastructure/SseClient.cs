using System.Net.Http.Headers;
using System.Text.Json;

namespace DeviceGate.Tests.Infrastructure;

public sealed record SseEvent(long Id, string Event, JsonElement Data);

/// <summary>A real Server-Sent Events reader over HttpClient; every read is bounded.</summary>
public sealed class SseClient : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private SseClient(HttpResponseMessage response, StreamReader reader)
    {
        _response = response;
        _reader = reader;
    }

    public HttpResponseMessage Response => _response;

    public static async Task<SseClient> OpenAsync(HttpClient api, string path = "api/events", long? lastEventId = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        if (lastEventId is { } id) request.Headers.Add("Last-Event-ID", id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var response = await api.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeouts.Default);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return new SseClient(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
    }

    /// <summary>The next event (comments skipped).</summary>
    public async Task<SseEvent> NextAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeouts.Default);
        long id = 0;
        string? type = null;
        string? data = null;
        while (true)
        {
            var line = await _reader.ReadLineAsync(cts.Token) ?? throw new EndOfStreamException("event stream ended");
            if (line.Length == 0)
            {
                if (data is not null) return new SseEvent(id, type ?? "message", JsonDocument.Parse(data).RootElement.Clone());
                continue;
            }
            if (line.StartsWith(':')) continue;
            if (line.StartsWith("id: ", StringComparison.Ordinal)) id = long.Parse(line[4..], System.Globalization.CultureInfo.InvariantCulture);
            else if (line.StartsWith("event: ", StringComparison.Ordinal)) type = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) data = line[6..];
        }
    }

    /// <summary>The next event's data line exactly as the server wrote it.</summary>
    public async Task<string> NextRawAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeouts.Default);
        while (true)
        {
            var line = await _reader.ReadLineAsync(cts.Token) ?? throw new EndOfStreamException("event stream ended");
            if (line.StartsWith("data: ", StringComparison.Ordinal)) return line[6..];
        }
    }

    /// <summary>Skips events until one matches.</summary>
    public async Task<SseEvent> NextWhereAsync(Func<SseEvent, bool> match)
    {
        var deadline = DateTime.UtcNow + Timeouts.Default;
        while (true)
        {
            var e = await NextAsync(deadline - DateTime.UtcNow);
            if (match(e)) return e;
        }
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        return ValueTask.CompletedTask;
    }
}
