using System.Net.Http.Headers;
using DeviceGate.Events;
using Microsoft.Extensions.Options;

namespace DeviceGate.Webhooks;

/// <summary>
/// Posts events to DeviceGate:Webhooks:Url as signed JSON arrays. It reads the event hub like any stream reader, so
/// it never slows delivery: when it falls behind it resumes from the replay buffer (or posts a <c>reset</c>).
/// Retries with backoff come from the resilience handler on the named HttpClient.
/// </summary>
internal sealed class WebhookSender(
    EventHub hub,
    IHttpClientFactory clients,
    IOptions<GatewayOptions> options,
    GatewayMetrics metrics,
    NodeIdentity node,
    TimeProvider time,
    ILogger<WebhookSender> logger) : BackgroundService
{
    public const string ClientName = "webhooks";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value.Webhooks;
        if (string.IsNullOrEmpty(o.Url)) return;
        var url = new Uri(o.Url);
        long? last = null;
        var batch = new List<GatewayEvent>(o.BatchSize);
        while (!stoppingToken.IsCancellationRequested)
        {
            // In a cluster every node sees every event; each sends only those that happened on it (once per cluster).
            using var subscription = await hub.SubscribeAsync(last, o.QueueSize, e => e.Node == node.Id).ConfigureAwait(false);
            try
            {
                while (await subscription.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
                {
                    batch.Clear();
                    while (batch.Count < o.BatchSize && subscription.Reader.TryRead(out var e))
                    {
                        subscription.Consumed(e);
                        batch.Add(e);
                    }
                    await PostAsync(url, o.Secret!, batch, stoppingToken).ConfigureAwait(false);
                    last = batch[^1].Id;
                }
            }
            catch (EventHub.DroppedException)
            {
                Log.WebhookBehind(logger, last ?? 0);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task PostAsync(Uri url, string secret, List<GatewayEvent> batch, CancellationToken ct)
    {
        var body = new MemoryStream();
        body.WriteByte((byte)'[');
        for (var i = 0; i < batch.Count; i++)
        {
            if (i > 0) body.WriteByte((byte)',');
            body.Write(batch[i].Json);
        }
        body.WriteByte((byte)']');
        var bytes = body.ToArray();
        var timestamp = time.GetUtcNow().ToUnixTimeSeconds();
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(bytes) };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            request.Headers.Add(WebhookSigner.TimestampHeader, timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture));
            request.Headers.Add(WebhookSigner.SignatureHeader, WebhookSigner.Sign(secret, timestamp, bytes));
            using var response = await clients.CreateClient(ClientName).SendAsync(request, ct).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                metrics.WebhookFailures.Add(1);
                Log.WebhookFailed(logger, batch.Count, url.Host, $"HTTP {(int)response.StatusCode}");
            }
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            // Anything (refused connection, open circuit breaker, timeout) only costs this batch: the sender lives on.
            metrics.WebhookFailures.Add(1);
            Log.WebhookFailed(logger, batch.Count, url.Host, e.Message);
        }
    }
}
