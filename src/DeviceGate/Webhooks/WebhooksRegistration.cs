namespace DeviceGate.Webhooks;

internal static class WebhooksRegistration
{
    public static IServiceCollection AddWebhooks(this IServiceCollection services)
    {
        services.AddHostedService<WebhookSender>();
        // Bounded retries with exponential backoff and jitter; a batch that still fails is logged and skipped.
        services.AddHttpClient(WebhookSender.ClientName).AddStandardResilienceHandler();
        return services;
    }
}
