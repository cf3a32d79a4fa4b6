using System.CommandLine;
using DeviceGate.Hosting;

// The command line, with the composition root (Hosting) as what `serve` runs.
return await DeviceGate.Cli.CommandLine.Build(serverArgs =>
{
    var app = GatewayHost.Build(serverArgs);
    GatewayHost.Prepare(app);
    return app;
}).Parse(args).InvokeAsync(new InvocationConfiguration
{
    // The web host handles Ctrl-C / SIGTERM itself and drains devices; System.CommandLine must not race it.
    ProcessTerminationTimeout = null,
}).ConfigureAwait(false);
