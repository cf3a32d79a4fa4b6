using System.Text;
using System.Text.Json;
using CsCheck;
using DeviceGate.Protocol;

namespace DeviceGate.Tests.Protocol;

/// <summary>The envelope parser never throws: any input is an envelope or one of its own refusals.</summary>
public sealed class ParserPropertyTests
{
    private static readonly string[] Known = [ErrorCodes.BadJson, ErrorCodes.MissingField, ErrorCodes.InvalidField];

    private static void ParsesOrRefuses(byte[] input)
    {
        if (EnvelopeReader.TryParse(input, out var envelope, out var problem))
        {
            Assert.NotNull(envelope!.Type); // possibly empty: the handler answers unknown_type
            envelope.Dispose();
        }
        else
        {
            Assert.Contains(problem.Code, Known);
            Assert.False(string.IsNullOrEmpty(problem.Message));
        }
    }

    [Fact]
    public void Random_bytes_never_throw() => Gen.Byte.Array[0, 512].Sample(ParsesOrRefuses, iter: 20_000);

    private static readonly Gen<string> Strings = Gen.OneOf(Gen.String[0, 80], Gen.Const("send"), Gen.Const("publish"), Gen.Const("server"), Gen.Const(new string('r', 65)));

    private static readonly Gen<JsonNodeish> Values = Gen.Recursive<JsonNodeish>((depth, self) =>
        depth > 4
            ? Gen.OneOf(Gen.Double.Select(d => new JsonNodeish(d)), Strings.Select(s => new JsonNodeish(s)), Gen.Const(new JsonNodeish(null)))
            : Gen.OneOf(
                Gen.Double.Select(d => new JsonNodeish(d)),
                Gen.Long.Select(l => new JsonNodeish(l)),
                Strings.Select(s => new JsonNodeish(s)),
                Gen.Bool.Select(b => new JsonNodeish(b)),
                self.Array[0, 4].Select(a => new JsonNodeish(a)),
                Gen.Dictionary(Strings, self)[0, 4].Select(d => new JsonNodeish(d))));

    private static readonly string[] Fields = ["type", "to", "group", "data", "ref", "id", "ttl", "error", "from"];

    [Fact]
    public void Random_envelopes_never_throw() =>
        Gen.Dictionary(Gen.OneOf(Gen.Int[0, Fields.Length - 1].Select(i => Fields[i]), Gen.String[0, 10]), Values)[0, 8]
            .Select(d => Encoding.UTF8.GetBytes(new JsonNodeish(d).ToJson()))
            .Sample(ParsesOrRefuses, iter: 10_000);

    /// <summary>A tiny JSON value model for generation (numbers as text so that huge and odd ones survive).</summary>
    public sealed class JsonNodeish(object? value)
    {
        public string ToJson() => value switch
        {
            null => "null",
            bool b => b ? "true" : "false",
            double d => double.IsFinite(d) ? d.ToString("R", System.Globalization.CultureInfo.InvariantCulture) : "1e999",
            long l => l.ToString(System.Globalization.CultureInfo.InvariantCulture),
            string s => JsonSerializer.Serialize(s),
            JsonNodeish[] a => "[" + string.Join(",", a.Select(x => x.ToJson())) + "]",
            Dictionary<string, JsonNodeish> o => "{" + string.Join(",", o.Select(kv => JsonSerializer.Serialize(kv.Key) + ":" + kv.Value.ToJson())) + "}",
            _ => "null",
        };
    }
}
