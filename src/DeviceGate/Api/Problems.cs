namespace DeviceGate.Api;

/// <summary>The API's problem-details answers (RFC 9457), each with a stable type.</summary>
internal static class Problems
{
    public static IResult InvalidId(string what) => Results.Problem(statusCode: 400, title: $"Invalid {what}",
        detail: $"A {what} is 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit ('server' is reserved for devices).",
        type: "invalid_id");

    public static ApiProblem NotConnected(string deviceId) => new(404, "not_connected", "Device not connected",
        $"Device '{deviceId}' has no live connection on this gateway.");

    public static IResult UnknownDevice(string deviceId) => Results.Problem(statusCode: 404, title: "Unknown device",
        detail: $"Device '{deviceId}' has never been seen by this gateway.",
        type: "unknown_device");

    public static IResult BadQuery(string name, string detail) => Results.Problem(statusCode: 400, title: $"Invalid query parameter '{name}'",
        detail: detail, type: "invalid_query");
}

/// <summary>
/// One problem answer (RFC 9457) as data, so the same refusal can be a whole response or one item of a batch's
/// results. As a result it sets <c>Retry-After</c> first when it has one.
/// </summary>
internal sealed record ApiProblem(int Status, string Type, string Title, string Detail, int? RetryAfterSeconds = null, string? Scope = null) : IResult
{
    /// <summary>For 503 <c>store_unavailable</c>: why, as the metric's cause label.</summary>
    public string? Cause { get; init; }

    public Task ExecuteAsync(HttpContext context)
    {
        if (Cause is not null) context.RequestServices.GetService<GatewayMetrics>()?.StoreUnavailable.Add(Cause);
        if (RetryAfterSeconds is { } seconds) context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var extensions = Scope is null ? null : new Dictionary<string, object?> { ["scope"] = Scope };
        return Results.Problem(statusCode: Status, title: Title, detail: Detail, type: Type, extensions: extensions).ExecuteAsync(context);
    }

    /// <summary>403 <c>insufficient_scope</c> naming the scope needed (with the device pattern it would have to cover).</summary>
    public static ApiProblem InsufficientScope(string scope, string? device = null) => new(403, "insufficient_scope", "Insufficient scope",
        device is null
            ? $"This API key (or token) lacks the scope '{scope}' for this request."
            : $"This API key (or token) lacks the scope '{scope}' for device '{device}'.",
        Scope: scope);
}
