using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace DeviceGate.Tests.Infrastructure;

public static class ApiExtensions
{
    /// <summary>An HttpClient for <paramref name="baseUri"/> that sends <paramref name="bearer"/> (an API key or token) on every request.</summary>
    public static HttpClient Client(Uri baseUri, string bearer, HttpMessageHandler? handler = null)
    {
        var http = handler is null ? new HttpClient() : new HttpClient(handler);
        http.BaseAddress = baseUri;
        http.Timeout = Timeouts.Default;
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearer);
        return http;
    }

    public static Task<HttpResponseMessage> PostTextAsync(this HttpClient http, string path, string text) =>
        http.PostAsync(path, new StringContent(text, Encoding.UTF8, "text/plain"));

    public static Task<HttpResponseMessage> PostBytesAsync(this HttpClient http, string path, byte[] bytes, string contentType = "application/octet-stream")
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return http.PostAsync(path, content);
    }

    public static async Task<JsonElement> JsonAsync(this HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<JsonElement>()).Clone();

    public static async Task<JsonElement> GetJsonAsync(this HttpClient http, string path)
    {
        using var response = await http.GetAsync(path);
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return await response.JsonAsync();
    }

    /// <summary>Polls <paramref name="condition"/> until true, failing after the bound. For state with no event to await.</summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Timeouts.Default);
        while (DateTime.UtcNow < deadline)
        {
            if (await condition()) return;
            await Task.Delay(50);
        }
        Assert.Fail($"Timed out waiting for: {what}");
    }
}
