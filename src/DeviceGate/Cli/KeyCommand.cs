using System.CommandLine;
using System.Security.Cryptography;
using DeviceGate.Auth;

namespace DeviceGate.Cli;

/// <summary>
/// <c>key new</c> prints a fresh API key and its <c>sha256:</c> hash (configure the hash, hand out the key);
/// <c>key hash &lt;key&gt;</c> prints the hash of an existing key. Nothing is written anywhere.
/// </summary>
internal static class KeyCommand
{
    public static Command Create()
    {
        var key = new Command("key", "Make API keys and their hashes for DeviceGate:Auth:Keys:<name>:Hash.");
        var create = new Command("new", "Generate an API key; prints the key, then its hash.");
        create.SetAction(_ =>
        {
            var value = "dg_" + Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
            Console.WriteLine($"key:  {value}");
            Console.WriteLine($"hash: {ApiCallers.HashText(value)}");
            return 0;
        });
        var existing = new Argument<string>("key") { Description = "The API key to hash" };
        var hash = new Command("hash", "Print the sha256: hash of an API key (what DeviceGate:Auth:Keys:<name>:Hash holds).");
        hash.Arguments.Add(existing);
        hash.SetAction(parse =>
        {
            Console.WriteLine(ApiCallers.HashText(parse.GetValue(existing)!));
            return 0;
        });
        key.Subcommands.Add(create);
        key.Subcommands.Add(hash);
        return key;
    }
}
