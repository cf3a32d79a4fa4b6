using System.Net;

namespace DeviceGate.Bench;

/// <summary>
/// An OTLP/HTTP receiver that takes every export and drops it: DeviceGate pays for recording, batching, encoding and
/// sending its spans, and nothing is kept. For measuring what tracing costs (<c>compare --otlp-sink</c>).
/// </summary>
internal sealed class OtlpSink : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _serving;
    private long _requests;
    private long _bytes;

    public OtlpSink()
    {
        // HttpListener needs a port up front: find a free one on loopback.
        Port = Scenarios.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _serving = ServeAsync();
    }

    public int Port { get; }

    public long Requests => Interlocked.Read(ref _requests);

    public long Bytes => Interlocked.Read(ref _bytes);

    /// <summary>What a DeviceGate server needs to send every span here (traces only, every trace sampled).</summary>
    public string[] ServerArgs =>
    [
        $"--OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{Port}", "--OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        "--OTEL_TRACES_SAMPLER=always_on", "--OTEL_METRICS_EXPORTER=none",
    ];

    private async Task ServeAsync()
    {
        var buffer = new byte[64 * 1024];
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            try
            {
                int read;
                while ((read = await context.Request.InputStream.ReadAsync(buffer)) > 0) Interlocked.Add(ref _bytes, read);
                Interlocked.Increment(ref _requests);
                // An empty ExportTraceServiceResponse: everything accepted.
                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.ContentLength64 = 0;
                context.Response.Close();
            }
            catch (Exception e) when (e is HttpListenerException or IOException)
            {
                // The exporter gave up on this one; the next export comes anyway.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        await _serving.ConfigureAwait(false);
    }
}
