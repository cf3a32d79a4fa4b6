using System.CommandLine;
using DeviceGate.Auth;
using DeviceGate.Connections;

namespace DeviceGate.Cli;

internal static class TokenCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "Device id (the token's sub)", Required = true };
        var ttl = new Option<string?>("--ttl") { Description = "Lifetime: 90s, 30m, 12h, 7d (default: no expiry)" };
        var command = new Command("token", "Print a device token signed with the configured or generated secret.")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.Options.Add(device);
        command.Options.Add(ttl);
        command.SetAction(parse =>
        {
            var id = parse.GetValue(device)!;
            if (!DeviceId.IsValid(id) || id == DeviceId.Server)
            {
                return CommandLine.Fail($"Invalid device id '{id}': 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit; 'server' is reserved.");
            }
            TimeSpan? lifetime = null;
            if (parse.GetValue(ttl) is { } text)
            {
                if (!Durations.TryParse(text, out var t)) return CommandLine.Fail($"Invalid --ttl '{text}': use e.g. 90s, 30m, 12h or 7d.");
                lifetime = t;
            }
            try
            {
                var options = CliConfig.Load(parse.UnmatchedTokens);
                var tokens = new DeviceTokens(GatewaySecrets.Load(options.Auth, options.Store.Path), TimeProvider.System);
                Console.WriteLine(tokens.Mint(id, lifetime));
                return 0;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                return CommandLine.Fail(e.Message);
            }
        });
        return command;
    }
}
