// These tests drive real processes and signals; they run on Linux (and CI).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
