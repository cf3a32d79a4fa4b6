// The kernel every feature may use: message data, names and statuses (Messages), options (Configuration), and
// metrics and log definitions (Diagnostics). None of them imports a feature folder; the architecture test checks it.
global using DeviceGate.Configuration;
global using DeviceGate.Diagnostics;
global using DeviceGate.Messages;
