// A simulated fleet: N devices built on DeviceGate.Client that report telemetry to the server every few seconds
// and answer rpcs ({"cmd":"status"}). Tokens are minted from the gateway's secret (the data folder's, or
// DeviceGate__Auth__TokenSecret), as a provisioning service would.
using System.Text;
using DeviceGate.Client;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

var count = args.Length > 0 && int.TryParse(args[0], out var n) ? n : 10;
var server = new Uri(Environment.GetEnvironmentVariable("DEVICEGATE_URL") ?? "http://127.0.0.1:8080");
var secret = Environment.GetEnvironmentVariable("DeviceGate__Auth__TokenSecret")
    ?? (File.Exists("data/token-secret") ? File.ReadAllText("data/token-secret").Trim() : null)
    ?? throw new InvalidOperationException("No token secret: run from the folder where `serve` keeps ./data, or set DeviceGate__Auth__TokenSecret.");
var key = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(secret));
string Mint(string device) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
{
    Claims = new Dictionary<string, object> { ["sub"] = device, ["iat"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0 },
    Expires = DateTime.UtcNow.AddHours(1),
    SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.HmacSha256),
});

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
var random = new Random();
var devices = new List<DeviceClient>();
for (var i = 0; i < count; i++)
{
    var id = $"fleet-{i:D3}";
    var handled = 0;
    var device = new DeviceClient(new DeviceClientOptions { Server = server, DeviceId = id, TokenProvider = _ => ValueTask.FromResult(Mint(id)) })
    {
        OnMessage = (m, _) => { Interlocked.Increment(ref handled); Console.WriteLine($"{id} got {m.Data?.ToString() ?? $"{m.Binary?.Length} bytes"} from {m.From}"); return Task.CompletedTask; },
        OnRpc = (rpc, _) => Task.FromResult<object?>(new { device = id, uptimeSeconds = Environment.TickCount64 / 1000, handled }),
    };
    await device.StartAsync(stop.Token);
    devices.Add(device);
}
Console.WriteLine($"{count} devices connected to {server}; sending telemetry. Ctrl-C to stop.");
try
{
    while (!stop.IsCancellationRequested)
    {
        foreach (var (device, i) in devices.Select((d, i) => (d, i)))
        {
            await device.SendAsync("server", new { temperature = Math.Round(18 + random.NextDouble() * 8, 1), seq = i }, stop.Token);
        }
        await Task.Delay(TimeSpan.FromSeconds(5), stop.Token);
    }
}
catch (OperationCanceledException)
{
}
foreach (var d in devices) await d.DisposeAsync();
