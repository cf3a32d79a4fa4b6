using System.Net;
using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class BatchTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Limits:MaxBatchItems"] = "5",
        ["DeviceGate:Limits:MaxMessageBytes"] = "100",
    };

    private Task<HttpResponseMessage> PostBatchAsync(string body, string contentType = "application/json") =>
        Gw.Api.PostBytesAsync("api/messages/batch", Encoding.UTF8.GetBytes(body), contentType);

    [Fact]
    public async Task A_batch_answers_one_result_per_item_in_order_and_a_bad_item_costs_only_itself()
    {
        using var a = await Gw.ConnectAsync("b-a");
        using var b = await Gw.ConnectEnvelopeAsync("b-b");
        using var response = await PostBatchAsync("""
            [
              {"device":"b-a","text":"one"},
              {"device":"nobody","text":"lost"},
              {"device":"b-b","data":{"x":1}},
              {"device":"b-a","dataBase64":"AP8="},
              {"device":"offline-1","text":"kept","ttl":60}
            ]
            """);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await response.JsonAsync();
        var results = json.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(5, results.Length);
        Assert.Equal("sent", results[0].Str("status"));
        Assert.Equal(("not_connected", 404), (results[1].Str("type"), results[1].GetProperty("status").GetInt32()));
        Assert.Equal("sent", results[2].Str("status"));
        Assert.Equal("queued", results[4].Str("status"));
        Assert.Equal((3, 1, 1), (json.GetProperty("sent").GetInt32(), json.GetProperty("queued").GetInt32(), json.GetProperty("failed").GetInt32()));

        // Raw device: text stays text, binary stays binary, in the batch's order.
        var first = await a.ReceiveMessageAsync();
        Assert.Equal((WebSocketMessageType.Text, "one"), (first.Type, Encoding.UTF8.GetString(first.Data)));
        var second = await a.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Binary, second.Type);
        Assert.Equal(new byte[] { 0, 255 }, second.Data);
        var envelope = await b.ReceiveJsonAsync();
        Assert.Equal(results[2].Str("id"), envelope.Str("id"));
        Assert.Equal(1, envelope.GetProperty("data").GetProperty("x").GetInt32());

        // The queued item is stored like any ttl send.
        var status = await Gw.Api.GetJsonAsync($"api/messages/{results[4].Str("id")}");
        Assert.Equal("queued", status.Str("status"));
    }

    [Fact]
    public async Task Ndjson_items_to_one_device_arrive_in_order_and_idempotency_keys_hold_per_item()
    {
        using var device = await Gw.ConnectAsync("b-order");
        var lines = string.Join("\n", Enumerable.Range(0, 4).Select(i => $$"""{"device":"b-order","text":"m{{i}}","ttl":{{(i % 2) * 30}}}""")) + "\n\n";
        using (var response = await PostBatchAsync(lines, "application/x-ndjson"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(4, (await response.JsonAsync()).GetProperty("sent").GetInt32());
        }
        for (var i = 0; i < 4; i++) Assert.Equal($"m{i}", await device.ReceiveTextAsync());

        const string keyed = """[{"device":"b-order","text":"once","ttl":60,"idempotencyKey":"job-7"}]""";
        using var r1 = await PostBatchAsync(keyed);
        using var r2 = await PostBatchAsync(keyed);
        var id1 = (await r1.JsonAsync()).GetProperty("results")[0].Str("id");
        var id2 = (await r2.JsonAsync()).GetProperty("results")[0].Str("id");
        Assert.Equal(id1, id2);
        Assert.Equal("once", await device.ReceiveTextAsync());
    }

    [Theory]
    [InlineData("""[{"text":"no device"}]""", "invalid_item")]
    [InlineData("""[{"device":"server","text":"x"}]""", "invalid_item")]
    [InlineData("""[{"device":"b-x","text":"x","data":1}]""", "invalid_item")]
    [InlineData("""[{"device":"b-x"}]""", "invalid_item")]
    [InlineData("""[{"device":"b-x","dataBase64":"***"}]""", "invalid_item")]
    [InlineData("""[{"device":"b-x","text":"x","ttl":-1}]""", "invalid_item")]
    [InlineData("""[{"device":"b-x","text":"x","ttl":"soon"}]""", "invalid_item")]
    [InlineData("""[{"device":"b-x","text":"x","idempotencyKey":""}]""", "invalid_item")]
    [InlineData("""[7]""", "invalid_item")]
    public async Task Invalid_items_get_their_own_problem(string body, string type)
    {
        using var response = await PostBatchAsync(body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var result = (await response.JsonAsync()).GetProperty("results")[0];
        Assert.Equal(type, result.Str("type"));
        Assert.Equal(400, result.GetProperty("status").GetInt32());
        Assert.False(result.TryGetProperty("id", out _));
    }

    [Fact]
    public async Task An_oversized_item_is_413_and_the_rest_still_go()
    {
        using var device = await Gw.ConnectAsync("b-big");
        var big = new string('x', 101);
        using var response = await PostBatchAsync($$"""[{"device":"b-big","text":"{{big}}"},{"device":"b-big","text":"small"}]""");
        var results = (await response.JsonAsync()).GetProperty("results");
        Assert.Equal(413, results[0].GetProperty("status").GetInt32());
        Assert.Equal("sent", results[1].Str("status"));
        Assert.Equal("small", await device.ReceiveTextAsync());
    }

    [Theory]
    [InlineData("""{"device":"b-x","text":"x"}""", "application/json", "invalid_batch")]
    [InlineData("""[{"device":"b-x",""", "application/json", "invalid_batch")]
    [InlineData("""[{},{},{},{},{},{}]""", "application/json", "too_many_items")]
    [InlineData("{}\n{}\n{}\n{}\n{}\n{}\n", "application/x-ndjson", "too_many_items")]
    public async Task A_batch_that_cannot_be_read_or_is_too_long_is_refused_whole(string body, string contentType, string type)
    {
        using var device = await Gw.ConnectAsync("b-x");
        using var response = await PostBatchAsync(body, contentType);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(type, (await response.JsonAsync()).Str("type"));
    }

    [Fact]
    public async Task A_batch_needs_an_api_key()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        using var response = await anonymous.PostAsync("api/messages/batch", new StringContent("[]", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }
}
