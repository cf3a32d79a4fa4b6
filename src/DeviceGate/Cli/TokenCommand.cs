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
        var groups = new Option<string[]>("--groups")
        {
            // One value per option (comma-separated, or the option repeated): taking several values per option would
            // swallow the configuration arguments that follow (--DeviceGate:...), secrets included, into the claim.
            Description = "Groups the device may join and publish to: names, prefixes ending in *, or * (comma-separated or repeated; default: any)",
        };
        var send = new Option<string[]>("--send")
        {
            Description = "Devices the device may send to: ids, prefixes ending in *, or * (comma-separated or repeated; default: any)",
        };
        var command = new Command("token", "Print a device token signed with the configured or generated secret.")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.Options.Add(device);
        command.Options.Add(ttl);
        command.Options.Add(groups);
        command.Options.Add(send);
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
                var tokens = new DeviceTokens(GatewaySecrets.Load(options.Auth, options.Store.Path, withApiKeys: false), TimeProvider.System);
                var claims = new Dictionary<string, object>();
                if (Patterns(parse.GetValue(groups)) is { } g) claims[DevicePermissions.GroupsClaim] = g;
                if (Patterns(parse.GetValue(send)) is { } s) claims[DevicePermissions.SendClaim] = s;
                Console.WriteLine(tokens.Mint(id, lifetime, claims));
                return 0;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                return CommandLine.Fail(e.Message);
            }
        });
        return command;
    }

    /// <summary>Null when the option was not given (no restriction); its comma-separated patterns otherwise.</summary>
    private static string[]? Patterns(string[]? values) =>
        values is null || values.Length == 0 ? null
        : values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();
}
