using DeviceGate.Auth;

namespace DeviceGate.Cli;

/// <summary>Configuration for the commands that are not the server: the same sources as <c>serve</c>.</summary>
internal static class CliConfig
{
    public static GatewayOptions Load(IReadOnlyList<string> configArgs)
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(Path.Combine(Directory.GetCurrentDirectory(), "appsettings.json"), optional: true)
            .AddEnvironmentVariables()
            .AddCommandLine(configArgs.ToArray())
            .Build();
        var options = new GatewayOptions();
        configuration.GetSection(GatewayOptions.SectionName).Bind(options);
        return options;
    }

    /// <summary>Server URL: --server, then DEVICEGATE_URL, then the local default.</summary>
    public static Uri ServerUrl(string? option) =>
        new((option ?? Environment.GetEnvironmentVariable("DEVICEGATE_URL") ?? Defaults.Url).TrimEnd('/') + "/");

    /// <summary>API key: --api-key, then DEVICEGATE_API_KEY, then the key generated in the data folder.</summary>
    public static string? ApiKey(string? option, GatewayOptions options) =>
        option
        ?? Environment.GetEnvironmentVariable("DEVICEGATE_API_KEY")
        ?? options.Auth.ApiKeys.FirstOrDefault()
        ?? GatewaySecrets.TryReadGeneratedApiKey(options.Store.Path);

    /// <summary>Whether a command-line payload is JSON (sent as JSON) or text (sent as a JSON string).</summary>
    public static bool IsJson(string text)
    {
        try
        {
            using var _ = System.Text.Json.JsonDocument.Parse(text);
            return true;
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }
}
