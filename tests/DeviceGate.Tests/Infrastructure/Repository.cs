namespace DeviceGate.Tests.Infrastructure;

/// <summary>The checkout the tests run from (docs and deploy files are read from it, so they cannot drift from what is tested).</summary>
public static class Repository
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        var dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "test.sh"))) dir = Path.GetDirectoryName(dir) ?? throw new InvalidOperationException("repository root not found");
        return dir;
    }
}
