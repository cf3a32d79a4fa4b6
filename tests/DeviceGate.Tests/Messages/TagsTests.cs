using System.Text;
using DeviceGate.Messages;

namespace DeviceGate.Tests.Messages;

public sealed class TagsTests
{
    private static (bool Ok, Dictionary<string, string> Tags, string? Why) Parse(string json)
    {
        var ok = Tags.TryParse(Encoding.UTF8.GetBytes(json), out var tags, out var why);
        return (ok, tags, why);
    }

    [Fact]
    public void A_json_object_of_strings_within_the_limits_is_a_tag_set()
    {
        var (ok, tags, _) = Parse("""{"site":"berlin","model":"k2","zone:floor":"2:east","empty":""}""");
        Assert.True(ok);
        Assert.Equal(4, tags.Count);
        Assert.True(Parse("{}").Ok);
        var max = "{" + string.Join(",", Enumerable.Range(0, 32).Select(i => $"\"k{i}\":\"{new string('v', 256)}\"")) + "}";
        Assert.True(Parse(max).Ok);
    }

    [Theory]
    [InlineData("""[]""")]
    [InlineData("""{"a":1}""")]
    [InlineData("""{"a":null}""")]
    [InlineData("""{"a":{"b":"c"}}""")]
    [InlineData("""{"-a":"x"}""")]
    [InlineData("""{"a b":"x"}""")]
    [InlineData("""{"":"x"}""")]
    [InlineData("""{"a":"x","a":"y"}""")]
    [InlineData("""{"a":"\ud800"}""")]
    [InlineData("""{"\udc00":"x"}""")]
    [InlineData("""{"a":"line\nbreak"}""")]
    [InlineData("""not json""")]
    public void Anything_else_is_refused_with_a_reason(string json)
    {
        var (ok, _, why) = Parse(json);
        Assert.False(ok);
        Assert.False(string.IsNullOrEmpty(why));
    }

    [Fact]
    public void Limits_on_count_key_and_value_length()
    {
        Assert.False(Parse("{" + string.Join(",", Enumerable.Range(0, 33).Select(i => $"\"k{i}\":\"v\"")) + "}").Ok);
        Assert.False(Parse($$"""{"{{new string('k', 65)}}":"v"}""").Ok);
        Assert.True(Parse($$"""{"{{new string('k', 64)}}":"v"}""").Ok);
        Assert.False(Parse($$"""{"k":"{{new string('v', 257)}}"}""").Ok);
    }

    [Fact]
    public void A_filter_matches_any_split_into_a_valid_key_and_value()
    {
        Assert.True(TagFilter.TryParse("zone:floor:2", out var f));
        Assert.Equal([("zone", "floor:2"), ("zone:floor", "2")], f.Readings);
        Assert.True(f.Matches(new Dictionary<string, string> { ["zone:floor"] = "2" }));
        Assert.True(f.Matches(new Dictionary<string, string> { ["zone"] = "floor:2" }));
        Assert.False(f.Matches(new Dictionary<string, string> { ["zone"] = "floor" }));
        Assert.True(TagFilter.TryParse("site:", out var empty));
        Assert.True(empty.Matches(new Dictionary<string, string> { ["site"] = "" }));
        Assert.False(TagFilter.TryParse("nocolon", out _));
        Assert.False(TagFilter.TryParse(":value", out _));
    }
}
