using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using DeviceGate.State;

namespace DeviceGate.Tests.State;

/// <summary>Merge patch (RFC 7396, its Appendix A examples) and the desired/reported delta.</summary>
public sealed class StatePatchTests
{
    private static JsonObject O(string json) => JsonNode.Parse(json)!.AsObject();

    [Theory]
    [InlineData("""{"a":"b"}""", """{"a":"c"}""", """{"a":"c"}""")]
    [InlineData("""{"a":"b"}""", """{"b":"c"}""", """{"a":"b","b":"c"}""")]
    [InlineData("""{"a":"b"}""", """{"a":null}""", """{}""")]
    [InlineData("""{"a":"b","b":"c"}""", """{"a":null}""", """{"b":"c"}""")]
    [InlineData("""{"a":["b"]}""", """{"a":"c"}""", """{"a":"c"}""")]
    [InlineData("""{"a":"c"}""", """{"a":["b"]}""", """{"a":["b"]}""")]
    [InlineData("""{"a":{"b":"c"}}""", """{"a":{"b":"d","c":null}}""", """{"a":{"b":"d"}}""")]
    [InlineData("""{"a":[{"b":"c"}]}""", """{"a":[1]}""", """{"a":[1]}""")]
    [InlineData("""{"e":null}""", """{"a":1}""", """{"e":null,"a":1}""")]
    [InlineData("""{}""", """{"a":{"bb":{"ccc":null}}}""", """{"a":{"bb":{}}}""")]
    public void Merge_patch_follows_rfc_7396(string target, string patch, string expected) =>
        Assert.True(JsonNode.DeepEquals(O(expected), StatePatch.Apply(O(target), O(patch))), StatePatch.Apply(O(target), O(patch)).ToJsonString());

    [Fact]
    public void Apply_leaves_its_inputs_alone()
    {
        var target = O("""{"a":{"b":1}}""");
        var patch = O("""{"a":{"c":2}}""");
        StatePatch.Apply(target, patch);
        Assert.Equal("""{"a":{"b":1}}""", target.ToJsonString());
        Assert.Equal("""{"a":{"c":2}}""", patch.ToJsonString());
    }

    [Fact]
    public void The_delta_holds_what_desired_has_and_reported_lacks_or_differs_in()
    {
        var desired = O("""{"fw":"1.4","screen":{"brightness":70,"mode":"day"},"tags":[1,2],"same":true}""");
        var reported = O("""{"fw":"1.3","screen":{"brightness":70},"tags":[2,1],"same":true,"extra":1}""");
        Assert.Equal("""{"fw":"1.4","screen":{"mode":"day"},"tags":[1,2]}""", StatePatch.Delta(desired, reported).ToJsonString());
        Assert.Empty(StatePatch.Delta(desired, desired));
    }

    private static readonly Gen<JsonObject> Flat =
        Gen.Select(Gen.Int[0, 5], Gen.Int[0, 3]).Array[0, 6].Select(pairs =>
        {
            var o = new JsonObject();
            foreach (var (key, value) in pairs) o[$"k{key}"] = value;
            return o;
        });

    [Fact]
    public void Reporting_the_delta_empties_it() =>
        Gen.Select(Flat, Flat).Sample((desired, reported) =>
        {
            var after = StatePatch.Apply(reported, StatePatch.Delta(desired, reported));
            Assert.Empty(StatePatch.Delta(desired, after));
        }, iter: 500);

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    [InlineData("{\"a\":\"\\ud800\"}")]
    [InlineData("{\"\\udc00\":1}")]
    [InlineData("{not json")]
    public void A_part_must_be_a_decodable_object(string body) =>
        Assert.False(StatePatch.TryParseObject(Encoding.UTF8.GetBytes(body), out _, out _));

    [Fact]
    public void Nesting_is_limited_and_size_is_counted_compact()
    {
        var deep = string.Concat(Enumerable.Repeat("{\"a\":", 33)) + "1" + new string('}', 33);
        Assert.False(StatePatch.TryParseObject(Encoding.UTF8.GetBytes(deep), out _, out _));
        Assert.True(StatePatch.TryParseObject("{ \"a\" : [ 1 , 2 ] }"u8, out var ok, out _));
        Assert.Equal("""{"a":[1,2]}""", StatePatch.ToCompactJson(ok!, out var bytes));
        Assert.Equal("""{"a":[1,2]}""".Length, bytes);
    }
}
