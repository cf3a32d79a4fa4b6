using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace DeviceGate.Tests.Functional;

public sealed class WebhookTests
{
    private const string Secret = "webhook-secret-0123456789";

    private sealed record Delivery(string Timestamp, string Signature, byte[] Body);

    [Fact]
    public async Task Events_are_posted_in_signed_batches_that_a_receiver_can_verify()
    {
        var deliveries = new BlockingCollection<Delivery>();
        var failFirst = 1;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var receiver = builder.Build();
        receiver.MapPost("/hook", async (HttpRequest request) =>
        {
            using var body = new MemoryStream();
            await request.Body.CopyToAsync(body);
            // The first POST fails: the gateway must retry it.
            if (Interlocked.Exchange(ref failFirst, 0) == 1) return Results.StatusCode(503);
            deliveries.Add(new Delivery(request.Headers["X-DeviceGate-Timestamp"].ToString(), request.Headers["X-DeviceGate-Signature"].ToString(), body.ToArray()));
            return Results.Ok();
        });
        await receiver.StartAsync();

        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Webhooks:Url"] = receiver.Urls.First() + "/hook",
            ["DeviceGate:Webhooks:Secret"] = Secret,
        });
        using (var device = await gw.ConnectAsync("hooked"))
        {
            await device.SendTextAsync("reading=7");
            await device.CloseCleanlyAsync();
        }

        var seen = new List<JsonElement>();
        while (seen.Count < 3)
        {
            Assert.True(deliveries.TryTake(out var d, Timeouts.Default), "no webhook arrived");
            // Verified here independently of the gateway's code: HMAC-SHA256 over "<timestamp>.<body>".
            var expected = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), (byte[])[.. Encoding.UTF8.GetBytes(d.Timestamp + "."), .. d.Body]));
            Assert.Equal(expected, d.Signature);
            Assert.InRange(long.Parse(d.Timestamp, System.Globalization.CultureInfo.InvariantCulture), DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeSeconds());
            var batch = JsonDocument.Parse(d.Body).RootElement;
            Assert.Equal(JsonValueKind.Array, batch.ValueKind);
            seen.AddRange(batch.EnumerateArray().Select(e => e.Clone()).Where(e => e.Str("device") == "hooked"));
        }
        Assert.Equal(["connected", "message", "disconnected"], seen.Select(e => e.Str("type")).ToArray());
        Assert.Equal("reading=7", seen[1].Str("data"));
        await receiver.StopAsync();
    }
}
