using System.Security.Cryptography;
using Microsoft.Extensions.Options;

namespace DeviceGate.Configuration;

/// <summary>This node's id: DeviceGate:Cluster:NodeId, or one generated per process.</summary>
internal sealed class NodeIdentity(IOptions<GatewayOptions> options)
{
    public string Id { get; } = options.Value.Cluster.NodeId ?? "node-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
}
