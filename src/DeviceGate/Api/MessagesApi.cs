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

    private static async Task<IResult> GetAsync(string id, DeliveryService delivery)
    {
        if (await delivery.GetAsync(id).ConfigureAwait(false) is not { } r) return UnknownMessage(id);
        return TypedResults.Json(ToResponse(r), ApiJsonContext.Default.MessageResponse);
    }

    private static async Task<IResult> CancelAsync(string id, DeliveryService delivery) =>
        await delivery.CancelAsync(id).ConfigureAwait(false) switch
        {
            CancelOutcome.Cancelled => Results.NoContent(),
            CancelOutcome.AlreadySent => Results.Problem(statusCode: 409, title: "Message already sent",
                detail: $"Message '{id}' was already sent (or acked, expired, cancelled); only queued messages can be cancelled.", type: "already_sent"),
            _ => UnknownMessage(id),
        };

    internal static MessageResponse ToResponse(MessageRecord r) => new(r.Id, r.Device, r.Status, r.CreatedAt, r.UpdatedAt, r.Attempts,
        r.History.Select(h => new StatusChangeResponse(h.Status, h.At)).ToArray());

    private static IResult UnknownMessage(string id) => Results.Problem(statusCode: 404, title: "Unknown message",
        detail: $"No message '{id}' (or its status is past DeviceGate:Delivery:StatusRetention).", type: "unknown_message");
}
