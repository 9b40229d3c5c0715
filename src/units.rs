//! Quantities that settings are written in: sizes (`16MiB`) and durations (`30s`). The bottom
//! layer, beside `model` and `clock`: the config, the providers' settings and the CLI read them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A byte count written with an optional unit: `1048576`, `512KiB`, `16MiB`, `1GiB`, `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n: u64 = n.parse().map_err(|_| format!("bad size {s:?}"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "bad size unit in {s:?} (use B, KB, KiB, MB, MiB, GB, GiB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n.is_multiple_of(size) {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

/// A duration written as `250ms`, `30s`, `15m`, `3h` or `7d` (plain numbers are seconds).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

impl Seconds {
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(|d| Seconds(d.as_secs_f64()))
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = (self.0 * 1000.0).round() as u64;
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

/// Parses `250ms`, `30s`, `15m`, `3h`, `7d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        _ => return Err(format!("bad duration unit in {s:?} (use ms, s, m, h or d)")),
    })
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // A plain TOML integer is accepted as well as a string with a unit.
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Int(u64),
                    Str(String),
                }
                match Raw::deserialize(d)? {
                    Raw::Int(n) => n.to_string().parse(),
                    Raw::Str(s) => s.parse(),
                }
                .map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(ByteSize);
string_serde!(Seconds);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_and_print_back() {
        assert_eq!("16MiB".parse::<ByteSize>().unwrap(), ByteSize(16 << 20));
        assert_eq!("10MB".parse::<ByteSize>().unwrap(), ByteSize(10_000_000));
        assert_eq!("123".parse::<ByteSize>().unwrap(), ByteSize(123));
        assert!("12XB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!("250ms".parse::<Seconds>().unwrap(), Seconds(0.25));
        assert_eq!(Seconds(0.25).to_string(), "250ms");
        assert_eq!("2m".parse::<Seconds>().unwrap().to_string(), "120s");
        assert!(parse_duration("5 weeks").is_err());
    }
}
