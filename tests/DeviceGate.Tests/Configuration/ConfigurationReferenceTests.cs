using DeviceGate.Auth;
using DeviceGate.Configuration;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace DeviceGate.Tests.Configuration;

public sealed class ConfigurationReferenceTests
{
    private static string Generate() => ConfigurationReference.Generate(Path.Combine(AppContext.BaseDirectory, "DeviceGate.xml"),
        [new GatewayOptionsValidator(), new IdentityValidator()]);

    /// <summary>Run with DEVICEGATE_UPDATE_DOCS=1 to rewrite docs/configuration.md after changing an option.</summary>
    [Fact]
    public void Docs_configuration_md_is_what_the_options_classes_say()
    {
        var path = Path.Combine(Repository.Root, "docs", "configuration.md");
        var generated = Generate();
        if (Environment.GetEnvironmentVariable("DEVICEGATE_UPDATE_DOCS") == "1") File.WriteAllText(path, generated);
        Assert.True(File.ReadAllText(path) == generated,
            "docs/configuration.md is stale: run  DEVICEGATE_UPDATE_DOCS=1 dotnet test --filter Docs_configuration_md  and commit the file.");
        // The executable prints the same text.
        Assert.Equal(generated, ConfigurationReference.Embedded());
    }

    [Fact]
    public void Every_setting_has_a_meaning_and_rules_come_from_the_validators()
    {
        var text = Generate();
        var rows = text.Split('\n').Where(l => l.StartsWith("| `DeviceGate:", StringComparison.Ordinal)).ToList();
        Assert.True(rows.Count > 60, $"{rows.Count} rows");
        Assert.All(rows, r => Assert.False(r.TrimEnd().EndsWith("|  |", StringComparison.Ordinal), $"no meaning: {r}"));
        Assert.Contains(rows, r => r.StartsWith("| `DeviceGate:Limits:MaxBatchItems` | integer | `1000` | must be between 1 and 100000 |", StringComparison.Ordinal));
        Assert.Contains(rows, r => r.StartsWith("| `DeviceGate:Auth:Keys:<name>:Scopes` (array) | strings |", StringComparison.Ordinal));
        Assert.Contains(rows, r => r.StartsWith("| `DeviceGate:Delivery:AckTimeout` | duration | `00:00:30` | must be positive |", StringComparison.Ordinal));
    }
}
