using System.Collections;
using System.Globalization;
using System.Reflection;

namespace DeviceGate.Configuration;

/// <summary>
/// Every setting of <see cref="GatewayOptions"/> as its configuration key (<c>DeviceGate:Section:Name</c>) and value,
/// found by reflection over the options classes: what <c>config check</c> prints, so a new option appears without
/// anyone listing it. Secrets are masked.
/// </summary>
internal static class OptionsWalker
{
    /// <summary>Keys whose values are secrets (a <c>*</c> stands for one key segment, such as a key's name).</summary>
    private static readonly string[] Secrets =
    [
        "DeviceGate:Auth:TokenSecret", "DeviceGate:Auth:PreviousTokenSecrets", "DeviceGate:Auth:ApiKeys", "DeviceGate:Auth:Keys:*:Key",
        "DeviceGate:Webhooks:Secret",
    ];

    public static IEnumerable<(string Key, string Value)> Settings(GatewayOptions options) => Walk(GatewayOptions.SectionName, options);

    private static IEnumerable<(string, string)> Walk(string prefix, object options)
    {
        foreach (var p in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite && p.GetIndexParameters().Length == 0))
        {
            var key = $"{prefix}:{p.Name}";
            var value = p.GetValue(options);
            if (value is not null && IsOptionsClass(p.PropertyType))
            {
                foreach (var s in Walk(key, value)) yield return s;
            }
            else if (value is IDictionary dictionary)
            {
                foreach (DictionaryEntry e in dictionary)
                {
                    foreach (var s in Walk($"{key}:{e.Key}", e.Value!)) yield return s;
                }
            }
            else
            {
                yield return (key, IsSecret(key) && !IsEmpty(value) ? "***" : Format(key, value));
            }
        }
    }

    private static bool IsOptionsClass(Type t) => t.IsClass && t != typeof(string) && t.Namespace == typeof(GatewayOptions).Namespace && !t.IsArray;

    private static bool IsEmpty(object? value) => value is null || value is string { Length: 0 } || value is Array { Length: 0 };

    private static bool IsSecret(string key) => Secrets.Any(pattern =>
    {
        var a = pattern.Split(':');
        var b = key.Split(':');
        return a.Length == b.Length && a.Zip(b).All(x => x.First == "*" || x.First == x.Second);
    });

    private static string Format(string key, object? value) => value switch
    {
        null => "(unset)",
        string s when key.EndsWith(":Redis:Configuration", StringComparison.Ordinal) => MaskPassword(s),
        string s => s,
        TimeSpan t => t.ToString("c", CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        Array a => a.Length == 0 ? "(none)" : string.Join(", ", a.Cast<object>()),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>A Redis connection string may carry <c>password=...</c>; that part is masked.</summary>
    private static string MaskPassword(string configuration) => string.Join(",", configuration.Split(',').Select(part =>
        part.TrimStart().StartsWith("password=", StringComparison.OrdinalIgnoreCase) ? "password=***" : part));
}
