using System.CommandLine;
using DeviceGate.Bench;

var root = new RootCommand("DeviceGate load tool: drives a server over loopback, bounded in count and time.");
root.Subcommands.Add(Compare.Create());
root.Subcommands.Add(Scenarios.Durable());
root.Subcommands.Add(StoreBench.Create());
root.Subcommands.Add(ClusterBench.Create());
root.Subcommands.Add(MqttBench.Create());
return await root.Parse(args).InvokeAsync();
