//! The `bars` data model: symbols, intervals, the Arrow schemas and the validation rules that
//! every entrance (import, ingest, provider) applies before anything is stored.

pub mod time;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const MICROS_PER_MINUTE: i64 = 60_000_000;
pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// 1970-01-01 was a Thursday; the first Monday after the epoch is 1970-01-05.
const MONDAY_EPOCH_OFFSET_DAYS: i64 = 4;

/// A bar's length. Parsed from and printed as `1m 5m 15m 30m 1h 4h 1d 1w`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub enum Interval {
    M1,
    M5,
    M15,
    M30,
    H1,
    H4,
    D1,
    W1,
}

impl Interval {
    pub const ALL: [Interval; 8] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H4,
        Interval::D1,
        Interval::W1,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H4 => "4h",
            Interval::D1 => "1d",
            Interval::W1 => "1w",
        }
    }

    pub fn micros(self) -> i64 {
        let minutes = match self {
            Interval::M1 => 1,
            Interval::M5 => 5,
            Interval::M15 => 15,
            Interval::M30 => 30,
            Interval::H1 => 60,
            Interval::H4 => 240,
            Interval::D1 => 1440,
            Interval::W1 => 7 * 1440,
        };
        minutes * MICROS_PER_MINUTE
    }

    pub fn is_intraday(self) -> bool {
        !matches!(self, Interval::D1 | Interval::W1)
    }

    /// Checks that `ts_us` is a valid open time for a bar of this interval: on a whole minute
    /// (and on the interval's grid, or on :30 for 1h/4h bars as US equities open at 09:30)
    /// for intraday bars, at 00:00 UTC for daily bars, on a Monday at 00:00 UTC for weekly bars.
    pub fn check_alignment(self, ts_us: i64) -> Result<(), Rule> {
        let aligned = match self {
            Interval::M1 | Interval::M5 | Interval::M15 | Interval::M30 => {
                ts_us.rem_euclid(self.micros()) == 0
            }
            Interval::H1 | Interval::H4 => ts_us.rem_euclid(30 * MICROS_PER_MINUTE) == 0,
            Interval::D1 => ts_us.rem_euclid(MICROS_PER_DAY) == 0,
            Interval::W1 => {
                ts_us.rem_euclid(MICROS_PER_DAY) == 0
                    && (ts_us.div_euclid(MICROS_PER_DAY) - MONDAY_EPOCH_OFFSET_DAYS).rem_euclid(7)
                        == 0
            }
        };
        if aligned {
            Ok(())
        } else {
            Err(Rule::Misaligned(self))
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Interval {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        s.parse()
    }
}

impl From<Interval> for String {
    fn from(i: Interval) -> String {
        i.as_str().to_string()
    }
}

/// Deserialized symbols come from the store's own records (catalog, registry, sync log).
impl TryFrom<String> for Symbol {
    type Error = Rule;
    fn try_from(s: String) -> Result<Self, Rule> {
        Symbol::stored(&s)
    }
}

impl From<Symbol> for String {
    fn from(s: Symbol) -> String {
        s.0
    }
}

impl FromStr for Interval {
    type Err = Rule;
    fn from_str(s: &str) -> Result<Self, Rule> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| Rule::UnknownInterval(shown(s)))
    }
}

/// A ticker as the provider spells it: 1 to 32 visible characters, no surrounding spaces.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Symbol(String);

impl Symbol {
    pub const MAX_CHARS: usize = 32;

    /// A symbol given to the store (import, write, API, provider, CLI): besides the rules of
    /// [`Symbol::stored`], no character that does not show or that changes how text around it
    /// shows (control, format such as U+200B or U+202E, line or paragraph separators, spaces
    /// other than U+0020), so two symbols that look alike are alike.
    pub fn new(s: &str) -> Result<Self, Rule> {
        if let Some((c, kind)) = s.chars().find_map(|c| hidden_kind(c).map(|k| (c, k))) {
            return Err(Rule::HiddenCharacter {
                symbol: shown(s),
                code_point: c as u32,
                kind,
            });
        }
        Self::stored(s)
    }

    /// A symbol read back from what the store wrote (catalog, WAL, file paths), under the rules
    /// it was written with: a store written before [`Symbol::new`] refused hidden characters
    /// still opens.
    pub fn stored(s: &str) -> Result<Self, Rule> {
        let chars = s.chars().count();
        let printable = s.chars().all(|c| !c.is_control());
        let trimmed = s.trim() == s;
        if chars == 0 || chars > Self::MAX_CHARS || !printable || !trimmed {
            return Err(Rule::BadSymbol(shown(s)));
        }
        Ok(Symbol(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A refused symbol as an error shows it: a long one is cut (an error must not echo megabytes).
fn shown(s: &str) -> String {
    const MAX: usize = 2 * Symbol::MAX_CHARS;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}

/// What a character is when it does not show as itself: Unicode control (Cc), format (Cf, such
/// as U+200B zero-width space or U+202E right-to-left override), line and paragraph separators
/// (Zl, Zp) and spaces other than U+0020.
fn hidden_kind(c: char) -> Option<&'static str> {
    /// The format characters (Cf) of Unicode 16.
    const FORMAT: [(u32, u32); 20] = [
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let u = c as u32;
    Some(match c {
        _ if c.is_control() => "a control character",
        '\u{2028}' => "a line separator",
        '\u{2029}' => "a paragraph separator",
        _ if FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u)) => {
            "an invisible formatting character"
        }
        _ if c.is_whitespace() && c != ' ' => "a space other than U+0020",
        _ => return None,
    })
}

/// A validation rule a bar broke. The message names the rule; callers add where (file and line,
/// or request row).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rule {
    #[error("{0} is not a finite number")]
    NotFinite(&'static str),
    #[error("low {low} is above min(open, close) {min}")]
    LowAboveBody { low: f64, min: f64 },
    #[error("high {high} is below max(open, close) {max}")]
    HighBelowBody { high: f64, max: f64 },
    #[error("volume {0} is negative")]
    NegativeVolume(f64),
    #[error("trades {0} is negative")]
    NegativeTrades(i64),
    #[error("unknown timeframe {0:?} (expected one of 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w)")]
    UnknownInterval(String),
    #[error("{}", misaligned_message(*.0))]
    Misaligned(Interval),
    #[error("symbol {0:?} must be 1 to 32 printable characters without surrounding spaces")]
    BadSymbol(String),
    #[error("symbol {symbol:?} contains U+{code_point:04X}, {kind}; a symbol must be visible text")]
    HiddenCharacter {
        symbol: String,
        code_point: u32,
        kind: &'static str,
    },
    #[error("timestamp is outside the supported range")]
    TimestampOutOfRange,
}

fn misaligned_message(interval: Interval) -> String {
    let rule = match interval {
        Interval::H1 | Interval::H4 => "on a whole hour or half hour",
        Interval::D1 => "at 00:00 UTC",
        Interval::W1 => "on a Monday at 00:00 UTC",
        _ => "on a whole multiple of the interval",
    };
    format!("timestamp of a {interval} bar must be {rule}")
}

/// The latest year we accept; keeps years four digits and timestamps far from overflow.
pub const MAX_TS_MICROS: i64 = 253_402_300_799_000_000; // 9999-12-31T23:59:59Z
pub const MIN_TS_MICROS: i64 = -62_135_596_800_000_000; // 0001-01-01T00:00:00Z

/// Validates one bar's values. `vwap` and `trades` are optional.
#[allow(clippy::too_many_arguments)]
pub fn check_bar(
    interval: Interval,
    ts_us: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    vwap: Option<f64>,
    trades: Option<i64>,
) -> Result<(), Rule> {
    if !(MIN_TS_MICROS..=MAX_TS_MICROS).contains(&ts_us) {
        return Err(Rule::TimestampOutOfRange);
    }
    interval.check_alignment(ts_us)?;
    for (name, v) in [
        ("open", open),
        ("high", high),
        ("low", low),
        ("close", close),
        ("volume", volume),
    ] {
        if !v.is_finite() {
            return Err(Rule::NotFinite(name));
        }
    }
    if let Some(v) = vwap
        && !v.is_finite()
    {
        return Err(Rule::NotFinite("vwap"));
    }
    let body_min = open.min(close);
    let body_max = open.max(close);
    if low > body_min {
        return Err(Rule::LowAboveBody { low, min: body_min });
    }
    if high < body_max {
        return Err(Rule::HighBelowBody {
            high,
            max: body_max,
        });
    }
    if volume < 0.0 {
        return Err(Rule::NegativeVolume(volume));
    }
    if let Some(t) = trades
        && t < 0
    {
        return Err(Rule::NegativeTrades(t));
    }
    Ok(())
}

/// Calendar year (UTC) of a timestamp in microseconds: the partition a bar belongs to.
pub fn year_of(ts_us: i64) -> i32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_micros(ts_us)
        .map(|t| t.year())
        .unwrap_or(if ts_us < 0 { 1 } else { 9999 })
}

pub const COL_SYMBOL: &str = "symbol";
pub const COL_TIMEFRAME: &str = "timeframe";
pub const COL_TS: &str = "ts";

/// The timeframe a request gives under either name: `timeframe`, or `interval` (its name before
/// the column was renamed, still accepted from HTTP and the CLI). Both given and different is an
/// error naming both; the same value twice is fine.
pub fn either_timeframe<'a>(
    timeframe: Option<&'a str>,
    interval: Option<&'a str>,
) -> Result<Option<&'a str>, String> {
    match (timeframe, interval) {
        (Some(t), Some(i)) if t != i => Err(format!(
            "timeframe {t:?} and interval {i:?} disagree (interval is the old name of \
             timeframe; give one)"
        )),
        (t, i) => Ok(t.or(i)),
    }
}

pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The value columns as stored in every Parquet file (symbol and timeframe live in the path).
pub static FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(COL_TS, ts_type(), false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
        Field::new("vwap", DataType::Float64, true),
        Field::new("trades", DataType::Int64, true),
    ]))
});

/// The logical `bars` table: symbol, timeframe (the bar size; `Interval` in the code), then the
/// file columns.
pub static BARS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(COL_SYMBOL, DataType::Utf8, false),
        Field::new(COL_TIMEFRAME, DataType::Utf8, false),
    ];
    fields.extend(FILE_SCHEMA.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
});

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_609_459_200_000_000; // 2021-01-01T00:00:00Z, a Friday

    #[test]
    fn either_timeframe_name() {
        assert_eq!(either_timeframe(Some("1d"), None), Ok(Some("1d")));
        assert_eq!(either_timeframe(None, Some("1m")), Ok(Some("1m")));
        assert_eq!(either_timeframe(Some("1m"), Some("1m")), Ok(Some("1m")));
        assert_eq!(either_timeframe(None, None), Ok(None));
        let e = either_timeframe(Some("1d"), Some("1m")).unwrap_err();
        assert!(
            e.contains("timeframe \"1d\" and interval \"1m\" disagree"),
            "{e}"
        );
        assert_eq!(
            "2m".parse::<Interval>().unwrap_err().to_string(),
            "unknown timeframe \"2m\" (expected one of 1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w)"
        );
    }

    #[test]
    fn interval_round_trips() {
        for i in Interval::ALL {
            assert_eq!(i.as_str().parse::<Interval>().unwrap(), i);
        }
        assert!(matches!(
            "2m".parse::<Interval>(),
            Err(Rule::UnknownInterval(_))
        ));
    }

    #[test]
    fn alignment_rules() {
        assert!(Interval::M1.check_alignment(T0 + 60_000_000).is_ok());
        assert!(Interval::M1.check_alignment(T0 + 1).is_err());
        assert!(
            Interval::M5
                .check_alignment(T0 + 5 * MICROS_PER_MINUTE)
                .is_ok()
        );
        assert!(
            Interval::M5
                .check_alignment(T0 + 3 * MICROS_PER_MINUTE)
                .is_err()
        );
        // US equities open at 09:30: hourly bars may start on the half hour.
        assert!(
            Interval::H1
                .check_alignment(T0 + 30 * MICROS_PER_MINUTE)
                .is_ok()
        );
        assert!(
            Interval::H1
                .check_alignment(T0 + 15 * MICROS_PER_MINUTE)
                .is_err()
        );
        assert!(Interval::D1.check_alignment(T0).is_ok());
        assert!(Interval::D1.check_alignment(T0 + 3_600_000_000).is_err());
        // 2021-01-04 is a Monday.
        assert!(
            Interval::W1
                .check_alignment(T0 + 3 * MICROS_PER_DAY)
                .is_ok()
        );
        assert!(Interval::W1.check_alignment(T0).is_err());
    }

    #[test]
    fn bar_rules() {
        let ok = |o, h, l, c, v| check_bar(Interval::D1, T0, o, h, l, c, v, None, None);
        assert!(ok(10.0, 11.0, 9.0, 10.5, 100.0).is_ok());
        assert!(matches!(
            ok(f64::NAN, 11.0, 9.0, 10.5, 1.0),
            Err(Rule::NotFinite("open"))
        ));
        assert!(matches!(
            ok(10.0, 10.2, 9.0, 10.5, 1.0),
            Err(Rule::HighBelowBody { .. })
        ));
        assert!(matches!(
            ok(10.0, 11.0, 10.1, 10.5, 1.0),
            Err(Rule::LowAboveBody { .. })
        ));
        assert!(matches!(
            ok(10.0, 11.0, 9.0, 10.5, -1.0),
            Err(Rule::NegativeVolume(_))
        ));
    }

    #[test]
    fn symbols() {
        for s in ["AAPL", "BRK.B", "^GSPC", "EURUSD=X", "A/B", "..", "BTC-USD"] {
            assert_eq!(Symbol::new(s).unwrap().as_str(), s);
        }
        for s in ["", " AAPL", "A\nB", &"X".repeat(33)] {
            assert!(Symbol::new(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn hidden_characters_are_refused_by_code_point() {
        for (s, code) in [
            ("AA\u{200B}PL", "U+200B"),
            ("\u{202E}LPAA", "U+202E"),
            ("AAPL\u{FEFF}X", "U+FEFF"),
            ("A\u{00A0}B", "U+00A0"),
            ("A\u{2028}B", "U+2028"),
            ("A\u{2029}B", "U+2029"),
            ("A\u{0007}B", "U+0007"),
            ("A\u{E0041}", "U+E0041"),
            ("A\u{00AD}B", "U+00AD"),
        ] {
            let e = Symbol::new(s).unwrap_err();
            assert!(matches!(e, Rule::HiddenCharacter { .. }), "{s:?}: {e}");
            assert!(e.to_string().contains(code), "{s:?}: {e}");
        }
        // Visible non-ASCII text and inner spaces stay allowed.
        for s in ["Nestlé", "7203.T", "BRK B", "ÅÄÖ"] {
            assert!(Symbol::new(s).is_ok(), "{s:?}");
        }
        // A long symbol is shown cut.
        let e = Symbol::new(&"X".repeat(100_000)).unwrap_err().to_string();
        assert!(e.len() < 200 && e.contains("XXX..."), "{e}");
        // What the store already holds still reads back.
        assert!(Symbol::stored("AA\u{200B}PL").is_ok());
        assert!(serde_json::from_str::<Symbol>("\"AA\\u200bPL\"").is_ok());
    }

    #[test]
    fn years() {
        assert_eq!(year_of(T0), 2021);
        assert_eq!(year_of(T0 - 1), 2020);
    }
}
