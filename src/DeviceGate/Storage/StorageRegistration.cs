using Microsoft.Extensions.Options;

namespace DeviceGate.Storage;

internal static class StorageRegistration
{
    /// <summary>One node: SQLite in the data folder behind the store seams, and the directory in memory over it.</summary>
    public static IServiceCollection AddSqliteStorage(this IServiceCollection services)
    {
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            return new SqliteStore(o.Store.Path, o.Store.Synchronous);
        });
        services.AddSingleton<IMessageStore>(sp => sp.GetRequiredService<SqliteStore>());
        services.AddSingleton<IDirectoryStore>(sp => sp.GetRequiredService<SqliteStore>());
        services.AddSingleton<IStateStore>(sp => sp.GetRequiredService<SqliteStore>());
        services.AddSingleton<LocalDirectory>();
        services.AddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<LocalDirectory>());
        services.AddSingleton<IGroupDirectory>(sp => sp.GetRequiredService<LocalDirectory>());
        services.AddHostedService(sp => sp.GetRequiredService<LocalDirectory>());
        return services;
    }
}
