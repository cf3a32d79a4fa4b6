using System.CommandLine;

namespace DeviceGate.Cli;

/// <summary>The <c>devicegate</c> command line. Tokens a command does not know are configuration (<c>--urls</c>, <c>--DeviceGate:Store:Path=...</c>).</summary>
internal static class CommandLine
{
    /// <summary>The commands; <paramref name="server"/> builds (and checks) the gateway for <c>serve</c>: the composition root's job.</summary>
    public static RootCommand Build(Func<string[], WebApplication> server)
    {
        var root = new RootCommand("DeviceGate: a real-time WebSocket gateway for devices.");
        root.Subcommands.Add(ServeCommand.Create(server));
        root.Subcommands.Add(TokenCommand.Create());
        root.Subcommands.Add(KeyCommand.Create());
        root.Subcommands.Add(ConfigCommand.Create());
        foreach (var c in ApiCommands.Create()) root.Subcommands.Add(c);
        foreach (var c in StreamCommands.Create()) root.Subcommands.Add(c);
        root.Subcommands.Add(ConnectCommand.Create());
        return root;
    }

    /// <summary>Options every client command shares.</summary>
    public static readonly Option<string?> Server = new("--server")
    {
        Description = "Server URL (default: $DEVICEGATE_URL, else http://127.0.0.1:8080)",
        Recursive = false,
    };

    public static readonly Option<string?> ApiKey = new("--api-key")
    {
        Description = "API key (default: $DEVICEGATE_API_KEY, else the key generated in the data folder)",
    };

    public static Command Client(string name, string description)
    {
        var command = new Command(name, description) { TreatUnmatchedTokensAsErrors = false };
        command.Options.Add(Server);
        command.Options.Add(ApiKey);
        return command;
    }

    public static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 1;
    }
}
