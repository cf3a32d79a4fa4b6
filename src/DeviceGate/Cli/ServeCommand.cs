using System.CommandLine;
using Microsoft.Extensions.Options;

namespace DeviceGate.Cli;

internal static class ServeCommand
{
    public static Command Create(Func<string[], WebApplication> server)
    {
        var command = new Command("serve", "Run the gateway (configuration: appsettings.json, DeviceGate__* env vars, --DeviceGate:...=... and --urls).")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction((parse, _) => RunAsync(server, parse.UnmatchedTokens.ToArray()));
        return command;
    }

    private static async Task<int> RunAsync(Func<string[], WebApplication> server, string[] args)
    {
        WebApplication app;
        try
        {
            app = server(args);
        }
        catch (Exception e) when (e is OptionsValidationException or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            return CommandLine.Fail($"DeviceGate cannot start: {e.Message}");
        }
        await app.RunAsync().ConfigureAwait(false);
        return 0;
    }
}
