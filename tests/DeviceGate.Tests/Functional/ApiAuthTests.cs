using System.Net;
using System.Net.Http.Headers;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class ApiAuthTests : GatewayTest
{
    [Theory]
    [InlineData("GET", "api/devices")]
    [InlineData("GET", "api/devices/x")]
    [InlineData("POST", "api/devices/x/messages")]
    [InlineData("POST", "api/broadcast")]
    [InlineData("PUT", "api/groups/g/devices/x")]
    [InlineData("DELETE", "api/groups/g/devices/x")]
    [InlineData("GET", "api/groups/g")]
    [InlineData("POST", "api/groups/g/messages")]
    [InlineData("DELETE", "api/devices/x/connection")]
    public async Task Every_api_route_needs_a_valid_key(string method, string path)
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        using var none = await anonymous.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("x") });
        Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);
        Assert.Equal("application/problem+json", none.Content.Headers.ContentType?.MediaType);

        var wrong = new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("x") };
        wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", TestGateway.ApiKey + "x");
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.SendAsync(wrong)).StatusCode);
    }

    [Fact]
    public async Task Health_endpoints_need_no_key()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("healthz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("readyz")).StatusCode);
    }
}
