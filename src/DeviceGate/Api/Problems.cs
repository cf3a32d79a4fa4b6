namespace DeviceGate.Api;

/// <summary>The API's problem-details answers (RFC 9457), each with a stable type.</summary>
internal static class Problems
{
    public static IResult InvalidId(string what) => Results.Problem(statusCode: 400, title: $"Invalid {what}",
        detail: $"A {what} is 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit ('server' is reserved for devices).",
        type: "invalid_id");

    public static IResult NotConnected(string deviceId) => Results.Problem(statusCode: 404, title: "Device not connected",
        detail: $"Device '{deviceId}' has no live connection on this gateway.",
        type: "not_connected");

    public static IResult UnknownDevice(string deviceId) => Results.Problem(statusCode: 404, title: "Unknown device",
        detail: $"Device '{deviceId}' has never been seen by this gateway.",
        type: "unknown_device");

    public static IResult SlowConsumer(string deviceId) => Results.Problem(statusCode: 503, title: "Device too slow",
        detail: $"Device '{deviceId}' did not read fast enough; its queue overflowed and it is being closed with 4002.",
        type: "slow_consumer");

    public static IResult BadQuery(string name, string detail) => Results.Problem(statusCode: 400, title: $"Invalid query parameter '{name}'",
        detail: detail, type: "invalid_query");
}
