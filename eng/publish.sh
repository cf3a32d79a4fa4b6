#!/usr/bin/env bash
# Builds what DeviceGate ships, into artifacts/:
#   artifacts/linux-x64/devicegate, artifacts/linux-arm64/devicegate   one self-contained executable each
#   artifacts/nuget/DeviceGate.<version>.nupkg                        the .NET tool (command: devicegate)
# and the framework-dependent build scripts use: src/DeviceGate/bin/Release/net10.0/DeviceGate.dll
# Usage: eng/publish.sh [rid ...]   (default: linux-x64 linux-arm64)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1
rids=("$@")
[ ${#rids[@]} -gt 0 ] || rids=(linux-x64 linux-arm64)

dotnet build src/DeviceGate -c Release -nologo -v q
for rid in "${rids[@]}"; do
  # Its own intermediate folder: a RID-specific restore must not rewrite the project's obj/ under other builds.
  dotnet publish src/DeviceGate -c Release -r "$rid" --self-contained -p:PublishSingleFile=true \
    --artifacts-path "artifacts/.build/$rid" -o "artifacts/$rid" -nologo -v q
  echo "artifacts/$rid/devicegate"
done
dotnet pack src/DeviceGate -c Release -nologo -v q --artifacts-path artifacts/.build/pack
ls artifacts/nuget/*.nupkg
