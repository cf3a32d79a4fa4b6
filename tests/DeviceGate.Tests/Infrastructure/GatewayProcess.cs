using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>The real DeviceGate executable as a child process, for CLI, restart, signal and crash tests.</summary>
public sealed partial class GatewayProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private GatewayProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Uri BaseUri { get; private set; } = null!;

    public string Output => string.Join("\n", _output);

    public int Pid => _process.Id;

    /// <summary>The DeviceGate.dll next to the tests (the project reference copies it with its runtimeconfig).</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "DeviceGate.dll");

    /// <summary>Starts <c>serve</c> on an ephemeral loopback port in <paramref name="workingDirectory"/> and waits until it listens.</summary>
    public static Task<GatewayProcess> StartAsync(string workingDirectory, params string[] args) => StartExecutableAsync(null, workingDirectory, args);

    /// <summary>Like <see cref="StartAsync"/>, with another executable (a published single-file binary, an installed tool).</summary>
    public static async Task<GatewayProcess> StartExecutableAsync(string? executable, string workingDirectory, params string[] args)
    {
        var gp = new GatewayProcess(Process.Start(StartInfo(workingDirectory, ["serve", "--urls", "http://127.0.0.1:0", .. args], executable))!);
        gp.BaseUri = await gp._listening.Task.WaitAsync(Timeouts.Default).ConfigureAwait(false);
        return gp;
    }

    /// <summary>Runs one CLI command to completion and returns its exit code and output.</summary>
    public static async Task<(int Code, string StdOut, string StdErr)> RunCliAsync(string workingDirectory, IDictionary<string, string>? env, params string[] args)
    {
        var info = StartInfo(workingDirectory, args);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) info.Environment[k] = v;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        return (process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    public static ProcessStartInfo StartInfo(string workingDirectory, IEnumerable<string> args, string? executable = null)
    {
        var info = new ProcessStartInfo(executable ?? "dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (executable is null) info.ArgumentList.Add(Dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment.Remove("DEVICEGATE_URL");
        info.Environment.Remove("DEVICEGATE_API_KEY");
        info.Environment["DOTNET_NOLOGO"] = "1";
        return info;
    }

    /// <summary>Sends SIGTERM (what systemd and Kubernetes send) and waits, bounded, for the exit code.</summary>
    public async Task<int> TerminateAsync()
    {
        Assert.Equal(0, Kill(_process.Id, 15));
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        return _process.ExitCode;
    }

    /// <summary>SIGKILL: no drain, no flush, no goodbye. What a power cut or the OOM killer does to the process.</summary>
    public async Task KillHardAsync()
    {
        Assert.Equal(0, Kill(_process.Id, 9));
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await _process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(Timeouts.Default).ConfigureAwait(false);
        }
        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null) return;
        _output.Enqueue(line);
        // Plain or JSON console lines ("...Now listening on: http://127.0.0.1:41234"...); this runs on the process's
        // reader thread, where an exception would take the whole test host down, so nothing here may throw.
        var m = ListeningRegex().Match(line);
        if (m.Success && Uri.TryCreate(m.Groups[1].Value + "/", UriKind.Absolute, out var uri)) _listening.TrySetResult(uri);
    }

    [GeneratedRegex(@"Now listening on: (http://[0-9A-Za-z.\[\]:]+)")]
    private static partial Regex ListeningRegex();

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
