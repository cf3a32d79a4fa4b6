#!/usr/bin/env bash
# Runs every test: the .NET suite, then the JavaScript SDK's. On a fresh machine (only the .NET SDK and Node) it
# first installs what the tests drive for real: redis-server (cluster tests start their own processes on loopback
# ports), Debian's Chromium (dashboard and browser-example tests, through Playwright; never a browser download) and
# nginx (the reverse-proxy tests run it on loopback with the configuration docs/operations.md documents), and
# systemd's systemd-analyze (it checks deploy/devicegate.service; nothing is started under systemd), and
# mosquitto-clients and python3-paho-mqtt (the MQTT tests connect mosquitto_sub, mosquitto_pub and a paho device).
# As root it installs them with apt-get; otherwise it names the packages and stops, so no test silently skips.
set -euo pipefail
cd "$(dirname "$0")"
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
/usr/bin/python3 -c 'import paho.mqtt' >/dev/null 2>&1 || missing+=(python3-paho-mqtt)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "test.sh: the tests need these Debian packages, which are missing: ${missing[*]}" >&2
    echo "         install them first:  sudo apt-get install -y ${missing[*]}" >&2
    exit 2
  fi
fi

dotnet test
# The functional suite once more with device upgrades through ASP.NET Core's HTTP pipeline instead of at the
# connection level (DeviceGate:WebSockets:ConnectionLevelUpgrade=false): both paths must pass all of it.
DeviceGate__WebSockets__ConnectionLevelUpgrade=false dotnet test tests/DeviceGate.Tests --no-build --filter "FullyQualifiedName~DeviceGate.Tests.Functional"
(cd clients/js && npm ci --no-audit --no-fund && npm test)
