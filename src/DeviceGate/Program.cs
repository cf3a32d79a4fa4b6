using System.CommandLine;

return await DeviceGate.Cli.CommandLine.Build().Parse(args).InvokeAsync(new InvocationConfiguration
{
    // The web host handles Ctrl-C / SIGTERM itself and drains devices; System.CommandLine must not race it.
    ProcessTerminationTimeout = null,
}).ConfigureAwait(false);
