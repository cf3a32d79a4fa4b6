using System.Text;
using System.Text.Json;
using CsCheck;
using DeviceGate.Hosting;
using DeviceGate.Protocol;
using DeviceGate.Diagnostics;
using DeviceGate.Messages;

namespace DeviceGate.Tests.Messages;

public sealed class JsonTextTests
{
    [Fact]
    public void Compact_drops_whitespace_between_tokens_only()
    {
        var json = "{ \"a\" :\r\n [1 ,\t2],\n \"s\": \"keep  \\\" \\n spaces\" }"u8;
        Assert.Equal("{\"a\":[1,2],\"s\":\"keep  \\\" \\n spaces\"}", Encoding.UTF8.GetString(JsonText.Compact(json)));
    }

    [Fact]
    public void Compact_json_means_the_same_and_has_no_line_breaks() =>
        Gen.Select(Gen.Int[0, 3], Gen.String[0, 20], Gen.Double).Sample((indent, text, number) =>
        {
            var value = new Dictionary<string, object?> { ["text"] = text, ["n"] = double.IsFinite(number) ? number : 0, ["list"] = new object?[] { text, null, true } };
            var pretty = JsonSerializer.SerializeToUtf8Bytes(value, new JsonSerializerOptions { WriteIndented = indent > 0 });
            var compact = JsonText.Compact(pretty);
            Assert.DoesNotContain((byte)'\n', compact);
            Assert.DoesNotContain((byte)'\r', compact);
            using var a = JsonDocument.Parse(pretty);
            using var b = JsonDocument.Parse(compact);
            Assert.True(JsonElement.DeepEquals(a.RootElement, b.RootElement));
        }, iter: 2000);

    [Fact]
    public void A_lone_surrogate_escape_is_not_a_string()
    {
        using var doc = JsonDocument.Parse("[\"\\ud800\", \"\\ud83d\\ude00\", 1]");
        var items = doc.RootElement.EnumerateArray().ToArray();
        Assert.False(JsonText.TryGetString(items[0], out _));
        Assert.True(JsonText.TryGetString(items[1], out var emoji));
        Assert.Equal("😀", emoji);
        Assert.False(JsonText.TryGetString(items[2], out _));
    }

    [Theory]
    [InlineData("plain", "plain")]
    [InlineData("a\r\nb", "a\\u000d\\u000ab")]
    [InlineData("\u001b[31mred", "\\u001b[31mred")]
    [InlineData("c1\u0085", "c1\\u0085")]
    public void Device_text_is_safe_to_log(string input, string expected) => Assert.Equal(expected, LogText.Safe(input));
}
