//! Plaintext values as sops sees them: the Go yaml.v3 type of a scalar, and the exact bytes sops
//! feeds to the MAC and to AES-GCM for each type.
//!
//! sops walks a document as Go values (`string`, `int`, `float64`, `bool`, `time.Time`, `nil`), so
//! interoperating means resolving a YAML plain scalar exactly as `gopkg.in/yaml.v3` does and
//! printing numbers and times exactly as Go's `strconv` and `time` packages do.

use std::sync::OnceLock;

use regex::Regex;
use zeroize::Zeroizing;

/// One leaf value, typed as sops types it.
///
/// Strings and bytes are zeroized on drop; the type has no `Display` and its `Debug` hides
/// the content, so a secret never reaches a log line by accident.
#[derive(Clone, PartialEq)]
pub enum Plain {
    /// YAML/JSON `null`: never encrypted, not part of the MAC.
    Null,
    /// A string (`type:str`).
    Str(Zeroizing<String>),
    /// Bytes that are not UTF-8 (binary files only); encrypted as `type:str`.
    Bytes(Zeroizing<Vec<u8>>),
    /// A Go `int` (`type:int`).
    Int(i64),
    /// A Go `float64` (`type:float`).
    Float(f64),
    /// A Go `bool` (`type:bool`).
    Bool(bool),
    /// A timestamp (`type:time`), held as Go's `time.MarshalText` (RFC 3339 with nanoseconds).
    Time(String),
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Plain::Null => "Plain::Null",
            Plain::Str(_) => "Plain::Str(<redacted>)",
            Plain::Bytes(_) => "Plain::Bytes(<redacted>)",
            Plain::Int(_) => "Plain::Int(<redacted>)",
            Plain::Float(_) => "Plain::Float(<redacted>)",
            Plain::Bool(_) => "Plain::Bool(<redacted>)",
            Plain::Time(_) => "Plain::Time(<redacted>)",
        })
    }
}

impl Plain {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Plain {
        Plain::Str(Zeroizing::new(s.into()))
    }

    /// True for the values sops leaves unencrypted whatever the rules say: `""` and `null`.
    pub fn is_empty(&self) -> bool {
        match self {
            Plain::Null => true,
            Plain::Str(s) => s.is_empty(),
            Plain::Bytes(b) => b.is_empty(),
            _ => false,
        }
    }

    /// The bytes this value contributes to the MAC (Go `sops.ToBytes`).
    pub fn mac_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Plain::Null => Vec::new(),
            Plain::Str(s) => s.as_bytes().to_vec(),
            Plain::Bytes(b) => b.to_vec(),
            Plain::Int(i) => i.to_string().into_bytes(),
            Plain::Float(f) => go_format_float(*f).into_bytes(),
            Plain::Bool(true) => b"True".to_vec(),
            Plain::Bool(false) => b"False".to_vec(),
            Plain::Time(t) => t.as_bytes().to_vec(),
        })
    }

    /// The plaintext bytes and the `type:` tag sops encrypts this value with.
    pub fn to_cipher_input(&self) -> (Zeroizing<Vec<u8>>, &'static str) {
        let ty = match self {
            Plain::Null | Plain::Str(_) | Plain::Bytes(_) => "str",
            Plain::Int(_) => "int",
            Plain::Float(_) => "float",
            Plain::Bool(_) => "bool",
            Plain::Time(_) => "time",
        };
        // For every type, sops encrypts exactly the MAC bytes (Title-case bools included).
        (self.mac_bytes(), ty)
    }

    /// Rebuilds a value from decrypted bytes and its `type:` tag, as sops' `aes.Cipher.Decrypt`.
    pub fn from_decrypted(bytes: Zeroizing<Vec<u8>>, ty: &str) -> Result<Plain, String> {
        let text = || std::str::from_utf8(&bytes).map_err(|_| format!("{ty} value is not UTF-8"));
        match ty {
            "str" => match String::from_utf8(bytes.to_vec()) {
                Ok(s) => Ok(Plain::Str(Zeroizing::new(s))),
                Err(_) => Ok(Plain::Bytes(bytes)),
            },
            "int" => text()?
                .parse::<i64>()
                .map(Plain::Int)
                .map_err(|_| "int value is not a decimal integer".to_string()),
            "float" => go_parse_float_text(text()?)
                .map(Plain::Float)
                .ok_or_else(|| "float value is not a number".to_string()),
            "bool" => match text()? {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(Plain::Bool(true)),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(Plain::Bool(false)),
                _ => Err("bool value is not a boolean".to_string()),
            },
            "time" => parse_timestamp(text()?)
                .map(Plain::Time)
                .ok_or_else(|| "time value is not RFC 3339".to_string()),
            other => Err(format!("unknown value type `{other}`")),
        }
    }
}

/// Go `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, never an exponent.
pub fn go_format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's `Display` for f64 is also shortest-round-trip without exponent.
        format!("{f}")
    }
}

/// Go `strconv.FormatFloat(f, 'e', -1, 64)` for a finite, non-zero `f`: the shortest
/// round-trip digits with an exponent of at least two digits (`1.234568e+09`), and that exponent.
fn go_format_e(f: f64) -> (String, i32) {
    // `{:e}` gives the same shortest digits as Go, as `d.ddde-x`.
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    (format!("{mantissa}e{sign}{:02}", exp.unsigned_abs()), exp)
}

/// Go `strconv.FormatFloat(f, 'g', -1, 64)`, which yaml.v3 prints floats with: the shortest
/// round-trip digits, in exponent form (`1.234568e+09`, `1e-06`) when the decimal exponent is
/// below -4 or at least 6.
pub fn go_format_float_g(f: f64) -> String {
    if !f.is_finite() || f == 0.0 {
        return go_format_float(f);
    }
    match go_format_e(f) {
        (text, exp) if !(-4..6).contains(&exp) => text,
        _ => go_format_float(f),
    }
}

/// sops's `ValToString` for a float (dotenv and INI values, exec-env): Go's
/// `FormatFloat(f, 'G', -1, 64)`, with `.0` added when that would read as an integer.
pub fn go_val_to_string_float(f: f64) -> String {
    let g = go_format_float_g(f).replace('e', "E");
    if !f.is_finite() || g.contains(['.', 'E']) {
        g
    } else {
        format!("{g}.0")
    }
}

/// Go `encoding/json`'s float: decimal, but with an exponent (`1e+21`, `1e-7`) below 1e-6 and
/// from 1e21 on.
pub fn go_format_float_json(f: f64) -> String {
    let abs = f.abs();
    if !f.is_finite() || f == 0.0 || (1e-6..1e21).contains(&abs) {
        return go_format_float(f);
    }
    let text = go_format_e(f).0;
    // encoding/json writes `e-7`, not `e-07`.
    match text.split_once("e-0") {
        Some((m, d)) if d.len() == 1 => format!("{m}e-{d}"),
        _ => text,
    }
}

/// Go `strconv.ParseFloat` for the texts sops writes (decimal, `NaN`, `±Inf`).
fn go_parse_float_text(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

/// Resolves an untagged plain YAML scalar to its Go value, exactly as yaml.v3 `resolve` does.
///
/// Returns `Err` for integers that only fit a `uint64`, which sops refuses to walk.
pub fn resolve_plain(s: &str) -> Result<Plain, String> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Plain::Null),
        "true" | "True" | "TRUE" => return Ok(Plain::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Plain::Bool(false)),
        ".nan" | ".NaN" | ".NAN" => return Ok(Plain::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Ok(Plain::Float(f64::INFINITY))
        }
        "-.inf" | "-.Inf" | "-.INF" => return Ok(Plain::Float(f64::NEG_INFINITY)),
        "<<" => return Err("merge keys (`<<`) are not supported".to_string()),
        _ => {}
    }
    let first = s.as_bytes()[0];
    match first {
        b'.' => {
            if let Ok(f) = s.parse::<f64>() {
                if f.is_finite() {
                    return Ok(Plain::Float(f));
                }
            }
            Ok(Plain::str(s))
        }
        b'0'..=b'9' | b'+' | b'-' => {
            if let Some(t) = parse_timestamp(s) {
                return Ok(Plain::Time(t));
            }
            let plain = s.replace('_', "");
            match go_parse_int(&plain) {
                IntParse::Int(i) => return Ok(Plain::Int(i)),
                IntParse::Uint => {
                    return Err(format!("integer {s} does not fit a signed 64-bit int"))
                }
                IntParse::No => {}
            }
            if yaml_float_re().is_match(&plain) {
                if let Ok(f) = plain.parse::<f64>() {
                    if f.is_finite() {
                        return Ok(Plain::Float(f));
                    }
                }
            }
            for (prefix, radix, neg) in [
                ("0b", 2, false),
                ("-0b", 2, true),
                ("0o", 8, false),
                ("-0o", 8, true),
            ] {
                if let Some(rest) = plain.strip_prefix(prefix) {
                    if let Ok(v) = i64::from_str_radix(rest, radix) {
                        return Ok(Plain::Int(if neg { -v } else { v }));
                    }
                    if !neg && u64::from_str_radix(rest, radix).is_ok() {
                        return Err(format!("integer {s} does not fit a signed 64-bit int"));
                    }
                }
            }
            Ok(Plain::str(s))
        }
        _ => Ok(Plain::str(s)),
    }
}

fn yaml_float_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // The pattern is a constant that compiles.
    #[allow(clippy::unwrap_used)]
    RE.get_or_init(|| Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").unwrap())
}

enum IntParse {
    Int(i64),
    Uint,
    No,
}

/// Go `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint` to detect uint64-only values.
fn go_parse_int(s: &str) -> IntParse {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(d) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
            (16, d)
        } else if let Some(d) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
            (8, d)
        } else if let Some(d) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
            (2, d)
        } else if body.len() > 1 && body.starts_with('0') {
            (8, &body[1..])
        } else {
            (10, body)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return IntParse::No;
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) if neg && v <= (i64::MAX as u128) + 1 => IntParse::Int((-(v as i128)) as i64),
        Ok(v) if !neg && v <= i64::MAX as u128 => IntParse::Int(v as i64),
        Ok(v) if !neg && !s.starts_with('+') && v <= u64::MAX as u128 => IntParse::Uint,
        _ => IntParse::No,
    }
}

/// yaml.v3 `parseTimestamp`, returning Go's `time.MarshalText` of the result.
pub fn parse_timestamp(s: &str) -> Option<String> {
    // yaml.v3's quick check first (every timestamp starts `YYYY-`), so the regex is compiled
    // only for a document that holds something like a date.
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    static RE: OnceLock<Regex> = OnceLock::new();
    // The pattern is a constant that compiles.
    #[allow(clippy::unwrap_used)]
    let re = RE.get_or_init(|| {
        Regex::new(
            // Go's `\d` is ASCII only.
            r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?:([Tt ])([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})?)?$",
        )
        .unwrap()
    });
    let c = re.captures(s)?;
    let num = |i: usize| c.get(i).map(|m| m.as_str().parse::<u32>().unwrap_or(99));
    let (y, mo, d) = (num(1)?, num(2)?, num(3)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let Some(sep) = c.get(4) else {
        return Some(format!("{y:04}-{mo:02}-{d:02}T00:00:00Z"));
    };
    let (h, mi, se) = (num(5)?, num(6)?, num(7)?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let zone = c.get(9).map(|m| m.as_str());
    // "T" forms need a zone; the space form must not have one.
    match (sep.as_str(), zone) {
        (" ", Some(_)) | ("T" | "t", None) => return None,
        _ => {}
    }
    let frac = c
        .get(8)
        .map(|m| m.as_str().trim_end_matches('0'))
        .filter(|f| !f.is_empty())
        .map(|f| format!(".{f}"))
        .unwrap_or_default();
    let zone = match zone {
        None | Some("Z") | Some("+00:00") | Some("-00:00") => "Z".to_string(),
        Some(z) => z.to_string(),
    };
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}{frac}{zone}"
    ))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    fn mac(s: &str) -> String {
        String::from_utf8(resolve_plain(s).unwrap().mac_bytes().to_vec()).unwrap()
    }

    #[test]
    fn floats_as_sops_val_to_string() {
        for (f, want) in [
            (1234568000.5, "1.2345680005E+09"),
            (1e21, "1E+21"),
            (1e-7, "1E-07"),
            (100.0, "100.0"),
            (0.0, "0.0"),
            (1.5, "1.5"),
            (0.0001, "0.0001"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(go_val_to_string_float(f), want, "{f}");
        }
    }

    #[test]
    fn yaml_v3_normalisation() {
        assert_eq!(mac("0x1F"), "31");
        assert_eq!(mac("0o17"), "15");
        assert_eq!(mac("017"), "15");
        assert_eq!(mac("1_000"), "1000");
        assert_eq!(mac("1.50"), "1.5");
        assert_eq!(mac("1e3"), "1000");
        assert_eq!(mac("true"), "True");
        assert_eq!(mac("FALSE"), "False");
        assert_eq!(mac("yes"), "yes");
        assert_eq!(mac("2024-01-01"), "2024-01-01T00:00:00Z");
        assert_eq!(
            mac("2024-01-01T10:00:00.500+02:00"),
            "2024-01-01T10:00:00.5+02:00"
        );
        assert_eq!(mac("2024-13-01"), "2024-13-01");
        assert_eq!(mac("-.inf"), "-Inf");
        assert_eq!(mac(".5"), "0.5");
        assert!(resolve_plain("18446744073709551615").is_err());
        assert_eq!(resolve_plain("~").unwrap(), Plain::Null);
    }

    #[test]
    fn floats_print_as_yaml_v3_prints_them() {
        for (f, want) in [
            (1.234568e9, "1.234568e+09"),
            (1000.0, "1000"),
            (100000.5, "100000.5"),
            (1e6, "1e+06"),
            (1.2345678901234567e19, "1.2345678901234567e+19"),
            (0.000001, "1e-06"),
            (0.0001, "0.0001"),
            (1e21, "1e+21"),
            (-2.5e-7, "-2.5e-07"),
            (1.5, "1.5"),
            (0.0, "0"),
            (1e300, "1e+300"),
        ] {
            assert_eq!(go_format_float_g(f), want, "{f}");
        }
        for (f, want) in [
            (1.234568e9, "1234568000"),
            (1e21, "1e+21"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (0.000001, "0.000001"),
            (1.5, "1.5"),
        ] {
            assert_eq!(go_format_float_json(f), want, "{f}");
        }
    }

    #[test]
    fn debug_hides_secrets() {
        assert_eq!(
            format!("{:?}", Plain::str("hunter2")),
            "Plain::Str(<redacted>)"
        );
    }
}
