using System.CommandLine;
using Microsoft.Extensions.Options;

namespace DeviceGate.Cli;

/// <summary>
/// <c>config check [configuration]</c>: validates a configuration the way <c>serve</c> does (appsettings.json in the
/// working directory, <c>DeviceGate__*</c> environment variables, <c>--DeviceGate:...=...</c>) without starting
/// anything, and prints the effective settings with secrets shown as <c>***</c>. Exit 0 when valid, 1 with the
/// messages (each naming its key) when not.
/// </summary>
internal static class ConfigCommand
{
    public static Command Create()
    {
        var config = new Command("config", "Inspect a configuration.");
        var check = new Command("check", "Validate the configuration without starting the gateway and print the effective settings (secrets as ***).")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        check.SetAction(parse => Check(parse.UnmatchedTokens.ToArray()));
        config.Subcommands.Add(check);
        var reference = new Command("reference", "Print every DeviceGate:* setting with its type, default, allowed values and meaning (docs/configuration.md).");
        reference.SetAction(_ =>
        {
            Console.Write(ConfigurationReference.Embedded());
            return 0;
        });
        config.Subcommands.Add(reference);
        return config;
    }

    private static int Check(string[] args)
    {
        GatewayOptions options;
        try
        {
            options = CliConfig.Load(args);
        }
        catch (InvalidOperationException e)
        {
            // A value that does not convert (a duration that is no TimeSpan, a word where a number goes).
            return CommandLine.Fail($"Invalid configuration: {e.Message}{(e.InnerException is { } inner ? " " + inner.Message : "")}");
        }
        var failures = new List<string>();
        foreach (var validator in new IValidateOptions<GatewayOptions>[] { new GatewayOptionsValidator(), new Auth.IdentityValidator() })
        {
            var result = validator.Validate(null, options);
            if (result.Failed) failures.AddRange(result.Failures);
        }
        foreach (var (key, value) in OptionsWalker.Settings(options)) Console.WriteLine($"{key} = {value}");
        if (failures.Count == 0)
        {
            Console.Error.WriteLine("configuration is valid");
            return 0;
        }
        foreach (var f in failures) Console.Error.WriteLine(f);
        return 1;
    }
}
