using System.Diagnostics;
using System.Threading.RateLimiting;
using DeviceGate.Api;
using DeviceGate.Storage;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;
using Prometheus;
using Scalar.AspNetCore;
using DeviceGate.Sessions;

namespace DeviceGate.Api;

/// <summary>Metrics, health, the API description and the HTTP-level protections (forwarded headers, API rate limit).</summary>
internal static class ApiPipeline
{
    public static void AddApiPipeline(IServiceCollection services)
    {
        services.AddSingleton<ApiAccess>();
        services.AddOpenApi();
        services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            // One token bucket per node for the whole API, off unless DeviceGate:Limits:ApiRequestsPerSecond > 0.
            o.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(context =>
            {
                var rps = context.RequestServices.GetRequiredService<IOptions<GatewayOptions>>().Value.Limits.ApiRequestsPerSecond;
                return rps <= 0 || !context.Request.Path.StartsWithSegments("/api")
                    ? RateLimitPartition.GetNoLimiter("unlimited")
                    : RateLimitPartition.GetTokenBucketLimiter("api", _ => new TokenBucketRateLimiterOptions
                    {
                        TokenLimit = rps,
                        TokensPerPeriod = rps,
                        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                        QueueLimit = 0,
                    });
            });
            o.OnRejected = async (context, ct) =>
            {
                context.HttpContext.Response.Headers.RetryAfter = "1";
                await Results.Problem(statusCode: 429, title: "Too many API requests",
                    detail: "DeviceGate:Limits:ApiRequestsPerSecond was exceeded; retry after a second.", type: "rate_limited")
                    .ExecuteAsync(context.HttpContext).ConfigureAwait(false);
            };
        });
        services.AddOptions<ForwardedHeadersOptions>().Configure<IOptions<GatewayOptions>>((f, gateway) =>
        {
            f.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            // Only the configured proxies are believed (the framework's default would trust loopback).
            f.KnownProxies.Clear();
            f.KnownIPNetworks.Clear();
            foreach (var proxy in gateway.Value.Network.KnownProxies) f.KnownProxies.Add(System.Net.IPAddress.Parse(proxy));
        });
    }

    /// <summary>Middleware that runs before the endpoints.</summary>
    public static void UseApiPipeline(WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value;
        if (options.Network.KnownProxies.Length > 0) app.UseForwardedHeaders();
        app.UseRouting();
        var metrics = app.Services.GetRequiredService<GatewayMetrics>();
        // /api requests are measured and must carry a key (or API token) whose scopes cover the route. Not async itself:
        // a WebSocket request passes straight through, so nothing of this stays alive per device.
        var access = app.Services.GetRequiredService<ApiAccess>();
        app.Use(next =>
        {
            RequestDelegate withKey = c => access.InvokeAsync(c, next);
            return context => context.Request.Path.StartsWithSegments("/api") ? MeasureAsync(context, withKey, metrics) : next(context);
        });
        // Propagating traces to devices without recording them: ASP.NET Core makes the request's activity only when
        // something listens, so the caller's traceparent is taken up here, for the messages and rpcs this request makes.
        if (options.Telemetry.PropagateToDevices)
        {
            app.Use(next => context => Activity.Current is null && context.Request.Path.StartsWithSegments("/api")
                && Telemetry.TryParseTraceParent(context.Request.Headers.TraceParent, out var parent)
                ? ContinueAsync(context, next, parent)
                : next(context));
        }
        // The API rate limit is fixed at start; when it is off, its middleware is not in the pipeline at all.
        if (options.Limits.ApiRequestsPerSecond > 0) app.UseRateLimiter();
    }

    private static async Task ContinueAsync(HttpContext context, RequestDelegate next, ActivityContext parent)
    {
        using var request = new Activity("DeviceGate api").SetParentId(parent.TraceId, parent.SpanId, parent.TraceFlags).Start();
        await next(context).ConfigureAwait(false);
    }

    private static async Task MeasureAsync(HttpContext context, RequestDelegate next, GatewayMetrics metrics)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (Exception e) when (StoreFailures.Is(e) && !context.Response.HasStarted)
        {
            // Whatever route met a store or Redis that cannot answer: 503 with Retry-After and a problem body, never a bare 500.
            context.Response.Clear();
            await SendOptions.Unavailable(StoreUnavailableException.CauseOf(e)).ExecuteAsync(context).ConfigureAwait(false);
        }
        finally
        {
            var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
            metrics.ApiRequest(route, context.Response.StatusCode, Stopwatch.GetElapsedTime(started));
        }
    }

    public static void MapApiPipeline(WebApplication app)
    {
        var metrics = app.Services.GetRequiredService<GatewayMetrics>();
        var store = app.Services.GetRequiredService<IMessageStore>();
        if (store is IStoreHealth health) metrics.ObserveOutboxDepth(() => health.PendingMessages);
        app.MapMetrics("/metrics", metrics.Registry);
        app.MapGet("/healthz", () => TypedResults.Json(new HealthResponse("alive"), ApiJsonContext.Default.HealthResponse));
        app.MapGet("/readyz", async (ShutdownState shutdown, IMessageStore messages) =>
        {
            if (shutdown.IsDraining) return TypedResults.Json(new HealthResponse("draining"), ApiJsonContext.Default.HealthResponse, statusCode: 503);
            if (messages is IStoreHealth health && !await health.IsWritableAsync().ConfigureAwait(false))
            {
                return TypedResults.Json(new HealthResponse("store_unavailable"), ApiJsonContext.Default.HealthResponse, statusCode: 503);
            }
            return TypedResults.Json(new HealthResponse("ready"), ApiJsonContext.Default.HealthResponse);
        });
        app.MapOpenApi();
        app.MapScalarApiReference("/docs", o => o.WithTitle("DeviceGate API").WithOpenApiRoutePattern("/openapi/{documentName}.json"));
    }
}
