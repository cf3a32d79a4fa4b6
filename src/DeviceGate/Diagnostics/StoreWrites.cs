namespace DeviceGate.Diagnostics;

/// <summary>Store writes nobody waits for (last seen, a delivery step, a leave): a failure is logged, never thrown.</summary>
internal static class StoreWrites
{
    /// <summary>Lets <paramref name="write"/> run on; if it fails, logs it once (event 1300).</summary>
    public static async void LogFailure(this Task write, ILogger logger)
    {
        try
        {
            await write.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.StoreWriteFailed(logger, e.Message);
        }
    }
}
