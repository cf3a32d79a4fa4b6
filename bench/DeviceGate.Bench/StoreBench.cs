using System.CommandLine;
using System.Diagnostics;
using DeviceGate.Messages;
using DeviceGate.Storage;

namespace DeviceGate.Bench;

/// <summary>The SQLite store alone: accepted + sent-recorded messages per second at a given concurrency.</summary>
internal static class StoreBench
{
    public static Command Create()
    {
        var messages = new Option<int>("--messages") { DefaultValueFactory = _ => 20_000 };
        var concurrency = new Option<int>("--concurrency") { DefaultValueFactory = _ => 32 };
        var synchronous = new Option<string>("--synchronous") { DefaultValueFactory = _ => "Full" };
        var command = new Command("store", "Micro-benchmark of the SQLite outbox: accept then record sent, per message.");
        command.Options.Add(messages);
        command.Options.Add(concurrency);
        command.Options.Add(synchronous);
        command.SetAction(async parse =>
        {
            var dir = Directory.CreateTempSubdirectory("devicegate-store-").FullName;
            await using var store = new SqliteStore(dir, parse.GetValue(synchronous)!);
            var n = parse.GetValue(messages);
            var next = -1;
            var payload = MessageData.Binary(new byte[16]);
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(Enumerable.Range(0, parse.GetValue(concurrency)).Select(_ => Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < n)
                {
                    var now = DateTimeOffset.UtcNow;
                    var m = new StoredMessage(DeviceMessage.NewId(), $"d{i % 1000}", "server", null, payload, now, now.AddMinutes(1));
                    await store.AcceptAsync(m, null, 1000);
                    await store.RecordAsync(m.Device, m.Id, MessageStatus.Sent, final: true, now);
                }
            })));
            var elapsed = Stopwatch.GetElapsedTime(started);
            Console.WriteLine($"store: {n / elapsed.TotalSeconds:F0} messages/s (accept + sent), concurrency {parse.GetValue(concurrency)}, synchronous {parse.GetValue(synchronous)}");
            Directory.Delete(dir, true);
        });
        return command;
    }
}
