using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Microsoft.Extensions.Options;

namespace DeviceGate.Configuration;

/// <summary>
/// Writes docs/configuration.md from the options classes: every settable property of <see cref="GatewayOptions"/> and
/// the classes below it is a key, its doc comment the meaning, a fresh instance's value the default, and the
/// validators the allowed values (each is asked about an out-of-range value and its message, which starts with the
/// key, is the rule). So a new option cannot be undocumented: a test compares this output with the file.
/// </summary>
internal static partial class ConfigurationReference
{
    public const string ResourceName = "DeviceGate.configuration.md";

    /// <summary>The checked-in reference, as embedded in the executable (what <c>config reference</c> prints).</summary>
    public static string Embedded()
    {
        using var stream = typeof(ConfigurationReference).Assembly.GetManifestResourceStream(ResourceName)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <param name="xmlDocs">The compiler's documentation file of this assembly (DeviceGate.xml).</param>
    /// <param name="validators">The start-up validators, asked for each key's rule.</param>
    public static string Generate(string xmlDocs, IReadOnlyList<IValidateOptions<GatewayOptions>> validators)
    {
        var docs = XDocument.Load(xmlDocs).Descendants("member")
            .ToDictionary(m => (string)m.Attribute("name")!, m => Text(m.Element("summary")), StringComparer.Ordinal);
        var md = new StringBuilder();
        md.Append("""
            # Configuration reference

            Every `DeviceGate:*` setting, generated from the options classes (`src/DeviceGate/Configuration/GatewayOptions.cs`)
            by `ConfigurationReference`; a test fails when this file and the code disagree. `devicegate config reference`
            prints it; `devicegate config check` validates a configuration and prints its effective values.

            Settings come from `appsettings.json` in the working directory, then environment variables
            (`DeviceGate__Limits__MaxConnections=50000`; array items and names as further segments:
            `DeviceGate__Auth__ApiKeys__0`, `DeviceGate__Auth__Keys__ops__Scopes__0`), then the command line
            (`--DeviceGate:Limits:MaxConnections=50000`), the last one winning. Durations are `[d.]hh:mm:ss[.fff]`.
            Everything is validated at start; the "allowed" column is what the validation says about a value outside it.

            """.Replace("\r", ""));
        var root = new GatewayOptions();
        foreach (var section in typeof(GatewayOptions).GetProperties().Where(p => p.CanWrite && IsOptionsClass(p.PropertyType)))
        {
            md.Append(CultureInfo.InvariantCulture, $"\n## {section.Name}\n\n");
            if (Summary(docs, section.PropertyType) is { Length: > 0 } about) md.Append(about).Append("\n\n");
            md.Append("| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
            foreach (var row in Rows($"{GatewayOptions.SectionName}:{section.Name}", section.PropertyType, section.GetValue(root)!, docs, validators,
                         o => section.GetValue(o)!))
            {
                md.Append(row).Append('\n');
            }
        }
        return md.ToString();
    }

    private static IEnumerable<string> Rows(string prefix, Type type, object defaults, IReadOnlyDictionary<string, string> docs,
        IReadOnlyList<IValidateOptions<GatewayOptions>> validators, Func<GatewayOptions, object> locate)
    {
        foreach (var p in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite && p.GetIndexParameters().Length == 0))
        {
            var key = $"{prefix}:{p.Name}";
            var meaning = docs.GetValueOrDefault($"P:{type.FullName}.{p.Name}") ?? "";
            if (IsOptionsClass(p.PropertyType))
            {
                foreach (var r in Rows(key, p.PropertyType, p.GetValue(defaults)!, docs, validators, o => p.GetValue(locate(o))!)) yield return r;
                continue;
            }
            if (p.PropertyType.IsGenericType && p.PropertyType.GetGenericTypeDefinition() == typeof(Dictionary<,>))
            {
                // A named entry per item: DeviceGate:Auth:Keys:<name>:Key, ...
                var item = p.PropertyType.GetGenericArguments()[1];
                var sample = Activator.CreateInstance(item)!;
                foreach (var r in Rows($"{key}:<name>", item, sample, docs, [], _ => sample)) yield return r;
                continue;
            }
            var allowed = Rule(key, p, validators, locate);
            yield return $"| `{key}`{(p.PropertyType.IsArray ? " (array)" : "")} | {TypeOf(p)} | {Default(p.GetValue(defaults))} | {allowed} | {Cell(meaning)} |";
        }
    }

    /// <summary>What the validators say about a value outside every range (for numbers and durations), without the key.</summary>
    private static string Rule(string key, PropertyInfo p, IReadOnlyList<IValidateOptions<GatewayOptions>> validators, Func<GatewayOptions, object> locate)
    {
        object? probe = p.PropertyType switch
        {
            var t when t == typeof(int) => int.MinValue,
            var t when t == typeof(long) => long.MinValue,
            var t when t == typeof(double) => double.MinValue,
            var t when t == typeof(TimeSpan) => TimeSpan.MinValue,
            var t when t == typeof(string) => "",
            _ => null,
        };
        if (probe is null || validators.Count == 0) return "";
        var options = new GatewayOptions();
        p.SetValue(locate(options), probe);
        var prefix = key + " ";
        foreach (var v in validators)
        {
            var result = v.Validate(null, options);
            if (!result.Failed) continue;
            foreach (var f in result.Failures)
            {
                if (f.StartsWith(prefix, StringComparison.Ordinal)) return Cell(f[prefix.Length..].TrimEnd('.'));
            }
        }
        return "";
    }

    private static bool IsOptionsClass(Type t) => t.IsClass && t != typeof(string) && !t.IsArray && t.Namespace == typeof(GatewayOptions).Namespace
        && !(t.IsGenericType);

    private static string TypeOf(PropertyInfo p)
    {
        var t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
        var name = p.Name;
        var unit = name.EndsWith("Bytes", StringComparison.Ordinal) ? " (bytes)"
            : name.EndsWith("PerSecond", StringComparison.Ordinal) ? " (per second)"
            : name.EndsWith("PerMinute", StringComparison.Ordinal) ? " (per minute)"
            : name.EndsWith("Seconds", StringComparison.Ordinal) ? " (seconds)"
            : "";
        return t switch
        {
            _ when t == typeof(string) => "string",
            _ when t == typeof(string[]) => "strings",
            _ when t == typeof(bool) => "bool",
            _ when t == typeof(int) || t == typeof(long) => "integer" + unit,
            _ when t == typeof(double) => "number" + unit,
            _ when t == typeof(TimeSpan) => "duration",
            _ => t.Name,
        };
    }

    private static string Default(object? value) => value switch
    {
        null => "unset",
        string { Length: 0 } => "empty",
        string s => $"`{s}`",
        bool b => b ? "`true`" : "`false`",
        TimeSpan t => $"`{t.ToString("c", CultureInfo.InvariantCulture)}`",
        Array { Length: 0 } => "none",
        Array a => string.Join(", ", a.Cast<object>().Select(x => $"`{x}`")),
        IFormattable f => $"`{f.ToString(null, CultureInfo.InvariantCulture)}`",
        IEnumerable => "none",
        _ => $"`{value}`",
    };

    private static string? Summary(IReadOnlyDictionary<string, string> docs, Type type) => docs.GetValueOrDefault($"T:{type.FullName}");

    /// <summary>A doc comment as one line of Markdown: code and references in backticks, whitespace collapsed.</summary>
    private static string Text(XElement? summary)
    {
        if (summary is null) return "";
        var sb = new StringBuilder();
        foreach (var node in summary.Nodes())
        {
            sb.Append(node switch
            {
                XText text => text.Value,
                XElement { Name.LocalName: "c" } c => $"`{c.Value}`",
                XElement { Name.LocalName: "see" } see => $"`{ShortName((string?)see.Attribute("cref") ?? (string?)see.Attribute("langword") ?? "")}`",
                XElement { Name.LocalName: "paramref" } pr => $"`{(string?)pr.Attribute("name")}`",
                XElement e => e.Value,
                _ => "",
            });
        }
        return Spaces().Replace(sb.ToString(), " ").Trim();
    }

    private static string ShortName(string cref) => cref.Contains(':') ? cref[(cref.LastIndexOf('.') + 1)..] : cref;

    private static string Cell(string text) => text.Replace("|", "\\|", StringComparison.Ordinal);

    [GeneratedRegex("\\s+")]
    private static partial Regex Spaces();
}
