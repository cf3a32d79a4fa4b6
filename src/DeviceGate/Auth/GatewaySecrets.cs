using System.Security.Cryptography;
using System.Text;

namespace DeviceGate.Auth;

/// <summary>
/// The token secret and API keys in force: the configured ones, or ones generated into the data folder on first
/// start (file mode 0600) and reused afterwards.
/// </summary>
public sealed class GatewaySecrets
{
    public const string TokenSecretFile = "token-secret";
    public const string ApiKeyFile = "api-key";

    private GatewaySecrets(byte[] tokenSecret, IReadOnlyList<byte[]> previousTokenSecrets, IReadOnlyList<string> apiKeys, string? generatedApiKeyPath, bool apiKeyCreatedNow)
    {
        TokenSecret = tokenSecret;
        PreviousTokenSecrets = previousTokenSecrets;
        ApiKeys = apiKeys;
        GeneratedApiKeyPath = generatedApiKeyPath;
        ApiKeyCreatedNow = apiKeyCreatedNow;
    }

    public byte[] TokenSecret { get; }

    /// <summary>Former secrets: device tokens signed with them still validate; nothing is signed with them.</summary>
    public IReadOnlyList<byte[]> PreviousTokenSecrets { get; }
    public IReadOnlyList<string> ApiKeys { get; }

    /// <summary>Where the generated API key lives, when the key in force was generated; null when keys are configured.</summary>
    public string? GeneratedApiKeyPath { get; }

    public bool ApiKeyCreatedNow { get; }

    /// <summary>
    /// Resolves the secrets, generating the missing ones into <paramref name="dataPath"/>. Tools that only mint
    /// tokens pass <paramref name="withApiKeys"/> false, so they never create an API key.
    /// </summary>
    public static GatewaySecrets Load(AuthOptions auth, string dataPath, bool withApiKeys = true)
    {
        var secret = auth.TokenSecret ?? ReadOrCreate(Path.Combine(dataPath, TokenSecretFile), () => RandomString(48), out _);
        string? generatedKeyPath = null;
        var created = false;
        IReadOnlyList<string> keys = auth.ApiKeys;
        // Named keys (DeviceGate:Auth:Keys) are configured access: no admin key is generated beside them.
        if (keys.Count == 0 && auth.Keys.Count == 0 && withApiKeys)
        {
            generatedKeyPath = Path.Combine(dataPath, ApiKeyFile);
            keys = [ReadOrCreate(generatedKeyPath, () => "dg_" + RandomString(32), out created)];
        }
        var secretBytes = Encoding.UTF8.GetBytes(secret);
        if (secretBytes.Length < Defaults.MinTokenSecretBytes)
        {
            throw new InvalidOperationException($"DeviceGate:Auth:TokenSecret must be at least {Defaults.MinTokenSecretBytes} bytes (UTF-8).");
        }
        var previous = auth.PreviousTokenSecrets.Select(p => Encoding.UTF8.GetBytes(p)).ToArray();
        return new GatewaySecrets(secretBytes, previous, keys, generatedKeyPath, created);
    }

    /// <summary>The generated API key if one exists in the data folder, without creating it (for CLI clients).</summary>
    public static string? TryReadGeneratedApiKey(string dataPath)
    {
        var path = Path.Combine(dataPath, ApiKeyFile);
        return File.Exists(path) ? File.ReadAllText(path).Trim() : null;
    }

    private static string ReadOrCreate(string path, Func<string> create, out bool created)
    {
        created = false;
        if (File.Exists(path))
        {
            var existing = File.ReadAllText(path).Trim();
            if (existing.Length > 0) return existing;
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(dir))
        {
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(dir);
            else Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        var value = create();
        // Written to a temporary file first so a crash never leaves a half-written secret behind.
        var tmp = path + ".tmp";
        var fileOptions = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var fs = new FileStream(tmp, fileOptions))
        {
            fs.Write(Encoding.UTF8.GetBytes(value + "\n"));
            fs.Flush(flushToDisk: true);
        }
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(tmp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(tmp, path, overwrite: true);
        created = true;
        return value;
    }

    private static string RandomString(int bytes) =>
        Convert.ToBase64String(RandomNumberGenerator.GetBytes(bytes)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
