using System.Reflection;

namespace DeviceGate.Dashboard;

/// <summary>
/// Serves the dashboard at <c>/</c> from files embedded in the server (no build step, nothing to deploy beside
/// the executable), with a strict Content-Security-Policy on those responses only (the API reference at /docs keeps its own).
/// </summary>
internal static class DashboardEndpoints
{
    private const string Csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    private static readonly (string Path, string Resource, string ContentType)[] Files =
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/dashboard/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "app.css", "text/css; charset=utf-8"),
    ];

    public static void MapDashboard(this WebApplication app)
    {
        var assembly = typeof(DashboardEndpoints).Assembly;
        foreach (var (path, resource, contentType) in Files)
        {
            var bytes = Read(assembly, resource);
            app.MapGet(path, (HttpContext context) =>
            {
                var headers = context.Response.Headers;
                headers.ContentSecurityPolicy = Csp;
                headers.XContentTypeOptions = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
                headers.CacheControl = "no-cache";
                return Results.Bytes(bytes, contentType);
            }).ExcludeFromDescription();
        }
    }

    private static byte[] Read(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream($"DeviceGate.Dashboard.{name}")
            ?? throw new InvalidOperationException($"dashboard file {name} is not embedded");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
