using NetArchTest.Rules;

namespace DeviceGate.Tests.Architecture;

/// <summary>
/// The folders of src/DeviceGate (namespaces under <c>DeviceGate.</c>) and the direction their dependencies may take,
/// as docs/architecture.md draws them: a folder may use only folders of lower layers. A cycle, or an arrow pointing
/// up or sideways, fails here with the types that cause it.
/// </summary>
public sealed class FolderDependencyTests
{
    /// <summary>Lowest first. Folders on one line are siblings and must not use each other.</summary>
    public static readonly string[][] Layers =
    [
        ["Messages"],
        ["Configuration"],
        ["Diagnostics"],
        ["Protocol", "Auth"],
        ["Events", "Storage"],
        ["Sessions"],
        ["Rpc"],
        ["Delivery"],
        ["State"],
        ["Connections", "Cluster"],
        ["Api", "Webhooks", "Dashboard", "Cli"],
        ["Hosting"],
    ];

    private static readonly System.Reflection.Assembly Server = typeof(DeviceGate.Hosting.GatewayHost).Assembly;

    private static int LayerOf(string folder) => Array.FindIndex(Layers, l => l.Contains(folder));

    [Fact]
    public void Every_folder_is_in_the_picture()
    {
        var folders = Server.GetTypes()
            .Select(t => t.Namespace)
            .Where(n => n is not null && n.StartsWith("DeviceGate.", StringComparison.Ordinal))
            .Select(n => n!.Split('.')[1])
            .Distinct()
            .ToList();
        Assert.All(folders, f => Assert.True(LayerOf(f) >= 0, $"folder {f} is not in FolderDependencyTests.Layers (nor docs/architecture.md)"));
    }

    [Fact]
    public void Folders_only_use_folders_below_them()
    {
        var all = Layers.SelectMany(l => l).ToArray();
        var violations = new List<string>();
        foreach (var from in all)
        {
            foreach (var to in all)
            {
                if (from == to || LayerOf(to) < LayerOf(from)) continue;
                var result = Types.InAssembly(Server).That().ResideInNamespace($"DeviceGate.{from}")
                    .ShouldNot().HaveDependencyOn($"DeviceGate.{to}").GetResult();
                if (!result.IsSuccessful)
                {
                    violations.Add($"{from} -> {to}: {string.Join(", ", result.FailingTypeNames.Take(5))}");
                }
            }
        }
        Assert.True(violations.Count == 0, "Dependencies against the direction in docs/architecture.md:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void The_check_sees_dependencies_that_exist()
    {
        // Guards the guard: the transport does use delivery, and the cluster uses the routing seam.
        Assert.False(Types.InAssembly(Server).That().ResideInNamespace("DeviceGate.Connections").ShouldNot().HaveDependencyOn("DeviceGate.Delivery").GetResult().IsSuccessful);
        Assert.False(Types.InAssembly(Server).That().ResideInNamespace("DeviceGate.Cluster").ShouldNot().HaveDependencyOn("DeviceGate.Delivery").GetResult().IsSuccessful);
    }

    [Fact]
    public void The_kernel_uses_nothing_of_the_gateway()
    {
        var result = Types.InAssembly(Server).That().ResideInNamespace("DeviceGate.Messages")
            .ShouldNot().HaveDependencyOnAny(Layers.Skip(1).SelectMany(l => l).Select(f => $"DeviceGate.{f}").ToArray()).GetResult();
        Assert.True(result.IsSuccessful, string.Join(", ", result.FailingTypeNames ?? []));
    }
}
