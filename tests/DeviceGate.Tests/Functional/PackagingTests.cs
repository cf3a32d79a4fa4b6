using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>
/// What DeviceGate ships (issue 17): the self-contained single-file binary, published here and run copied alone into
/// an empty folder; the .NET tool installed from a local folder; the systemd unit checked by systemd-analyze.
/// </summary>
public sealed class PackagingTests : IDisposable
{
    private readonly string _dir = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_dir);

    private static async Task<(int Code, string Output)> RunAsync(string file, string workingDirectory, params string[] args)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var p = Process.Start(info)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromMinutes(5)).Token);
        return (p.ExitCode, await stdout + await stderr);
    }

    [Fact]
    public async Task The_single_file_binary_runs_alone_serves_the_dashboard_takes_a_device_and_stops_on_sigterm_with_1001()
    {
        var build = Path.Combine(_dir, "build");
        var (code, output) = await RunAsync("dotnet", Repository.Root, "publish", "src/DeviceGate", "-c", "Release", "-r", "linux-x64", "--self-contained",
            "-p:PublishSingleFile=true", "--artifacts-path", build, "-o", Path.Combine(build, "out"), "-nologo");
        Assert.True(code == 0, output);
        var alone = Path.Combine(_dir, "alone");
        Directory.CreateDirectory(alone);
        File.Copy(Path.Combine(build, "out", "devicegate"), Path.Combine(alone, "devicegate"));
        Directory.Delete(build, recursive: true);
        Assert.Equal(["devicegate"], Directory.GetFiles(alone).Select(Path.GetFileName));

        await using var gw = await GatewayProcess.StartExecutableAsync(Path.Combine(alone, "devicegate"), alone,
            $"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}", $"--DeviceGate:Auth:ApiKeys:0={TestGateway.ApiKey}");
        using var http = new HttpClient { BaseAddress = gw.BaseUri, Timeout = Timeouts.Default };
        Assert.Contains("app.js", await http.GetStringAsync("/"));
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/dashboard/app.js")).StatusCode);
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", TestGateway.ApiKey);

        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + TestGateway.MintWithSecret("single-file"));
        await device.ConnectAsync(new Uri(gw.BaseUri.ToString().Replace("http", "ws") + "ws?deviceId=single-file"), new CancellationTokenSource(Timeouts.Default).Token);
        // A durable message: the store (the bundled native SQLite) takes it.
        using var sent = await http.PostAsync("api/devices/single-file/messages?ttl=60", new StringContent("from the binary"));
        Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
        Assert.Equal("from the binary", await device.ReceiveTextAsync());

        var closing = device.ReceiveCloseAsync();
        Assert.Equal(0, await gw.TerminateAsync());
        Assert.Equal(1001, (await closing).Code);
        Assert.True(File.Exists(Path.Combine(alone, "data", "devicegate.db")));
    }

    [Fact]
    public async Task The_tool_installs_from_a_local_folder_and_runs()
    {
        var build = Path.Combine(_dir, "pack");
        var (code, output) = await RunAsync("dotnet", Repository.Root, "pack", "src/DeviceGate", "-c", "Release", "--artifacts-path", build,
            "-p:PackageOutputPath=" + Path.Combine(_dir, "feed"), "-nologo");
        Assert.True(code == 0, output);
        var tools = Path.Combine(_dir, "tools");
        (code, output) = await RunAsync("dotnet", _dir, "tool", "install", "DeviceGate", "--tool-path", tools, "--add-source", Path.Combine(_dir, "feed"));
        Assert.True(code == 0, output);
        (code, output) = await RunAsync(Path.Combine(tools, "devicegate"), _dir, "key", "hash", "abc");
        Assert.Equal((0, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), (code, output.Trim()));
        await using var gw = await GatewayProcess.StartExecutableAsync(Path.Combine(tools, "devicegate"), _dir);
        using var http = new HttpClient { BaseAddress = gw.BaseUri, Timeout = Timeouts.Default };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
    }

    [Fact]
    public async Task The_systemd_unit_passes_systemd_analyze_verify()
    {
        var unit = File.ReadAllText(Path.Combine(Repository.Root, "deploy", "devicegate.service"));
        Assert.Contains("Type=notify", unit);
        Assert.Contains("DynamicUser=yes", unit);
        Assert.Contains("StateDirectory=devicegate", unit);
        // verify wants ExecStart's program to exist: point it at a stand-in executable, nothing else changes.
        var program = Path.Combine(_dir, "devicegate");
        File.WriteAllText(program, "#!/bin/sh\n");
        File.SetUnixFileMode(program, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var copy = Path.Combine(_dir, "devicegate.service");
        File.WriteAllText(copy, unit.Replace("/usr/local/bin/devicegate", program, StringComparison.Ordinal));
        var (code, output) = await RunAsync("systemd-analyze", _dir, "verify", copy);
        Assert.True(code == 0 && output.Trim().Length == 0, output);
    }
}
