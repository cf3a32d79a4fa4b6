using System.CommandLine;
using DeviceGate.Hosting;
using Microsoft.Extensions.Options;

namespace DeviceGate.Cli;

internal static class ServeCommand
{
    public static Command Create()
    {
        var command = new Command("serve", "Run the gateway (configuration: appsettings.json, DeviceGate__* env vars, --DeviceGate:...=... and --urls).")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction((parse, _) => RunAsync(parse.UnmatchedTokens.ToArray()));
        return command;
    }

    private static async Task<int> RunAsync(string[] args)
    {
        WebApplication app;
        try
        {
            app = GatewayHost.Build(args);
            GatewayHost.Prepare(app);
        }
        catch (Exception e) when (e is OptionsValidationException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            return CommandLine.Fail($"DeviceGate cannot start: {e.Message}");
        }
        await app.RunAsync().ConfigureAwait(false);
        return 0;
    }
}
