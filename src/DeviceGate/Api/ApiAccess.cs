using DeviceGate.Auth;

namespace DeviceGate.Api;

/// <summary>
/// Who may call which <c>/api</c> route: the caller is resolved from the bearer credential (401 without one), each
/// route's scope is looked up by its endpoint name in <see cref="Rules"/> (a route missing from the table needs
/// <c>admin</c>: closed by default), and every call that changes something is audited once (log event 1600 and
/// <c>devicegate_api_audit_total</c>). A middleware rather than endpoint filters: one table to read, and no
/// per-call invocation context.
/// </summary>
internal sealed class ApiAccess(ApiCallers callers, GatewayMetrics metrics, ILoggerFactory loggers)
{
    /// <summary>The audit's own log category, so it can be routed or turned down alone (Logging:LogLevel:DeviceGate.Audit).</summary>
    public const string AuditCategory = "DeviceGate.Audit";

    private readonly ILogger _audit = loggers.CreateLogger(AuditCategory);

    /// <summary>Where a route's device comes from, for scopes narrowed by a device pattern.</summary>
    public enum Target
    {
        /// <summary>The <c>{id}</c> route value: a pattern must match it.</summary>
        Device,

        /// <summary>The handler checks each device it touches (batch items, a message's device, events): any grant of the scope lets the request in.</summary>
        Inside,

        /// <summary>No single device (broadcast, groups, lists, stats): only a grant without a pattern.</summary>
        Everyone,
    }

    /// <summary>A route's requirement; a null scope means any authenticated caller.</summary>
    public readonly record struct Rule(string? Scope, Target Target);

    public static readonly IReadOnlyDictionary<string, Rule> Rules = new Dictionary<string, Rule>(StringComparer.Ordinal)
    {
        ["SendToDevice"] = new(ApiScopes.MessagesSend, Target.Device),
        ["SendBatch"] = new(ApiScopes.MessagesSend, Target.Inside),
        ["Broadcast"] = new(ApiScopes.MessagesSend, Target.Everyone),
        ["PublishToGroup"] = new(ApiScopes.MessagesSend, Target.Everyone),
        ["GetMessage"] = new(ApiScopes.MessagesRead, Target.Inside),
        ["DeviceMessages"] = new(ApiScopes.MessagesRead, Target.Device),
        ["CancelMessage"] = new(ApiScopes.MessagesCancel, Target.Inside),
        ["ListDevices"] = new(ApiScopes.DevicesRead, Target.Everyone),
        ["GetDevice"] = new(ApiScopes.DevicesRead, Target.Device),
        ["ListGroups"] = new(ApiScopes.DevicesRead, Target.Everyone),
        ["GetGroup"] = new(ApiScopes.DevicesRead, Target.Everyone),
        ["Stats"] = new(ApiScopes.DevicesRead, Target.Everyone),
        ["DisconnectDevice"] = new(ApiScopes.DevicesManage, Target.Device),
        ["RevokeDeviceTokens"] = new(ApiScopes.DevicesManage, Target.Device),
        ["ForgetDevice"] = new(ApiScopes.DevicesManage, Target.Device),
        ["AddToGroup"] = new(ApiScopes.DevicesManage, Target.Device),
        ["RemoveFromGroup"] = new(ApiScopes.DevicesManage, Target.Device),
        ["SetDeviceTags"] = new(ApiScopes.DevicesManage, Target.Device),
        ["CallDevice"] = new(ApiScopes.RpcCall, Target.Device),
        ["EventStream"] = new(ApiScopes.EventsRead, Target.Inside),
        ["GetDeviceState"] = new(ApiScopes.StateRead, Target.Device),
        ["PatchDesiredState"] = new(ApiScopes.StateWrite, Target.Device),
        ["PutDesiredState"] = new(ApiScopes.StateWrite, Target.Device),
        ["PatchReportedState"] = new(ApiScopes.StateWrite, Target.Device),
        ["WhoAmI"] = new(null, Target.Everyone),
    };

    private static readonly Rule AdminOnly = new(ApiScopes.Admin, Target.Everyone);

    /// <summary>The caller of this request (set before any <c>/api</c> endpoint runs).</summary>
    public static ApiCaller CallerOf(HttpContext context) => context.Features.Get<ApiCaller>()!;

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var credential = BearerToken.From(context.Request);
        var caller = credential is null ? null : await callers.FindAsync(credential).ConfigureAwait(false);
        if (caller is null)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await Results.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "API key required",
                detail: "Send a valid API key (or API token) as 'Authorization: Bearer <key>'.", type: "unauthorized").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }
        context.Features.Set(caller);
        var endpoint = context.GetEndpoint();
        if (endpoint is not null)
        {
            var name = endpoint.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName;
            var rule = name is not null && Rules.TryGetValue(name, out var r) ? r : AdminOnly;
            if (Refusal(caller, rule, context.Request.RouteValues["id"] as string) is { } refusal)
            {
                await refusal.ExecuteAsync(context).ConfigureAwait(false);
                Audit(context, caller);
                return;
            }
        }
        try
        {
            await next(context).ConfigureAwait(false);
        }
        finally
        {
            Audit(context, caller);
        }
    }

    private static ApiProblem? Refusal(ApiCaller caller, Rule rule, string? device)
    {
        if (rule.Scope is not { } scope) return null;
        var allowed = rule.Target switch
        {
            Target.Device => caller.Allows(scope, device),
            Target.Inside => caller.Allows(scope, anyPattern: true),
            _ => caller.Allows(scope),
        };
        return allowed ? null : ApiProblem.InsufficientScope(scope, rule.Target == Target.Device ? device : null);
    }

    /// <summary>Calls that may change something are audited: who, what, on which device or group, and how it ended.</summary>
    private void Audit(HttpContext context, ApiCaller caller)
    {
        var method = context.Request.Method;
        if (HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method)) return;
        var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
        var values = context.Request.RouteValues;
        var target = values["id"] is string id ? values["group"] is string g ? $"{g}/{id}" : id : values["group"] as string ?? "-";
        var status = context.Response.StatusCode;
        // Device ids and group names follow the id rule: nothing a caller chooses beyond that reaches the log.
        Log.ApiAudit(_audit, LogText.Safe(caller.Name), method, route, LogText.Safe(target), status);
        metrics.ApiAudit(caller.IsToken ? "token" : caller.Name, route, status);
    }
}
