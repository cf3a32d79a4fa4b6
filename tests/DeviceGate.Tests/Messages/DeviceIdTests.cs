using DeviceGate.Cli;
using DeviceGate.Connections;
using DeviceGate.Messages;

namespace DeviceGate.Tests.Messages;

public sealed class DeviceIdTests
{
    [Theory]
    [InlineData("a", true)]
    [InlineData("abc123", true)]
    [InlineData("A.b_c:d-e", true)]
    [InlineData("9", true)]
    [InlineData("", false)]
    [InlineData(".", false)]
    [InlineData("..", false)]
    [InlineData("_a", false)]
    [InlineData("-a", false)]
    [InlineData("a b", false)]
    [InlineData("a/b", false)]
    [InlineData("é", false)]
    [InlineData("a\n", false)]
    public void Validates_the_id_rule(string id, bool valid) => Assert.Equal(valid, DeviceId.IsValid(id));

    [Fact]
    public void Length_is_limited_to_128() 
    {
        Assert.True(DeviceId.IsValid(new string('a', 128)));
        Assert.False(DeviceId.IsValid(new string('a', 129)));
    }

    [Theory]
    [InlineData("90s", 90)]
    [InlineData("30m", 1800)]
    [InlineData("12h", 43200)]
    [InlineData("7d", 604800)]
    [InlineData("45", 45)]
    [InlineData("1.5h", 5400)]
    public void Parses_durations(string text, double seconds)
    {
        Assert.True(Durations.TryParse(text, out var value));
        Assert.Equal(TimeSpan.FromSeconds(seconds), value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("soon")]
    [InlineData("-5m")]
    [InlineData("0s")]
    [InlineData("5y")]
    public void Refuses_bad_durations(string text) => Assert.False(Durations.TryParse(text, out _));
}
