using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// Every Lua script runs through here: its keys must share one hash slot, as a Redis Cluster requires. A script
/// that names keys of two slots is a bug in this codebase, so it fails here, on a single Redis too, before Redis
/// would answer CROSSSLOT in a cluster. Scripts build no key names of their own beyond their KEYS' tags
/// (OneSlotTests reads every script and call site).
/// </summary>
internal static class OneSlot
{
    public static Task<RedisResult> EvaluateAsync(IDatabaseAsync db, string script, RedisKey[] keys, RedisValue[]? args = null)
    {
        Check(db.Multiplexer, keys);
        return db.ScriptEvaluateAsync(script, keys, args);
    }

    public static void Check(IConnectionMultiplexer redis, IReadOnlyList<RedisKey> keys)
    {
        if (keys.Count == 0) throw new InvalidOperationException("a script names no key: Redis Cluster could not route it");
        var slot = Of(keys[0]);
        for (var i = 1; i < keys.Count; i++)
        {
            if (Of(keys[i]) != slot) throw new InvalidOperationException($"a script names keys of two hash slots: {keys[0]} and {keys[i]}");
        }
    }

    /// <summary>
    /// A key's Redis Cluster slot, whatever Redis this node talks to (StackExchange.Redis computes slots only when
    /// connected to a cluster): CRC16 (XMODEM) of the hash tag, or of the whole key when it has none, mod 16384.
    /// </summary>
    public static int Of(RedisKey key)
    {
        ReadOnlySpan<byte> k = (byte[])key!;
        var open = k.IndexOf((byte)'{');
        if (open >= 0)
        {
            var close = k[(open + 1)..].IndexOf((byte)'}');
            if (close > 0) k = k.Slice(open + 1, close);
        }
        ushort crc = 0;
        foreach (var b in k)
        {
            crc ^= (ushort)(b << 8);
            for (var i = 0; i < 8; i++) crc = (crc & 0x8000) != 0 ? (ushort)((crc << 1) ^ 0x1021) : (ushort)(crc << 1);
        }
        return crc % 16384;
    }
}
