using DeviceGate.Delivery;
using DeviceGate.Storage;

namespace DeviceGate.Api;

/// <summary>Message status and cancellation.</summary>
internal static class MessagesApi
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapGet("/messages/{id}", GetAsync).WithName("GetMessage").Produces<MessageResponse>(200).ProducesProblem(404);
        api.MapDelete("/messages/{id}", CancelAsync).WithName("CancelMessage").Produces(204).ProducesProblem(404).ProducesProblem(409);
    }

    private static async Task<IResult> GetAsync(string id, HttpContext context, DeliveryService delivery)
    {
        if (await delivery.GetAsync(id).ConfigureAwait(false) is not { } r) return UnknownMessage(id);
        // A key narrowed to some devices reads only their messages' status.
        if (!ApiAccess.CallerOf(context).Allows(Auth.ApiScopes.MessagesRead, r.Device)) return ApiProblem.InsufficientScope(Auth.ApiScopes.MessagesRead, r.Device);
        return TypedResults.Json(ToResponse(r), ApiJsonContext.Default.MessageResponse);
    }

    private static async Task<IResult> CancelAsync(string id, HttpContext context, DeliveryService delivery)
    {
        var caller = ApiAccess.CallerOf(context);
        if (!caller.Allows(Auth.ApiScopes.MessagesCancel) && await delivery.GetAsync(id).ConfigureAwait(false) is { } r
            && !caller.Allows(Auth.ApiScopes.MessagesCancel, r.Device))
        {
            return ApiProblem.InsufficientScope(Auth.ApiScopes.MessagesCancel, r.Device);
        }
        return await delivery.CancelAsync(id).ConfigureAwait(false) switch
        {
            CancelOutcome.Cancelled => Results.NoContent(),
            CancelOutcome.AlreadySent => Results.Problem(statusCode: 409, title: "Message already sent",
                detail: $"Message '{id}' was already sent (or acked, expired, cancelled); only queued messages can be cancelled.", type: "already_sent"),
            _ => UnknownMessage(id),
        };
    }

    internal static MessageResponse ToResponse(MessageRecord r) => new(r.Id, r.Device, r.Status, r.CreatedAt, r.UpdatedAt, r.Attempts,
        r.History.Select(h => new StatusChangeResponse(h.Status, h.At)).ToArray());

    private static IResult UnknownMessage(string id) => Results.Problem(statusCode: 404, title: "Unknown message",
        detail: $"No message '{id}' (or its status is past DeviceGate:Delivery:StatusRetention).", type: "unknown_message");
}
