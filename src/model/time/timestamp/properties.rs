//! The hand-written fast paths against chrono. The fast paths claim a fixed grammar (below);
//! for any text in it, they must give what chrono gives when asked to parse that shape, and
//! refuse what chrono refuses. Text outside the grammar is left to the other paths.
//!
//! - ISO: `YYYY-MM-DD`, or that, `T`/`t`/space, `HH:MM[:SS[(.|,)f{1,9}]]` and an optional
//!   offset (`Z`, `z`, `UTC`, `±HH`, `±HHMM`, `±HH:MM`, optionally after one space).
//! - US: `M/D/YYYY` (month and day of one or two digits), or that, a space or `T`,
//!   `H:MM[:SS[.f{1,9}]]` and an optional ` AM`/` PM` (any case).
//!
//! Two deliberate differences from chrono, stated in the reference: a leap second (`:60`) is
//! not the fast path's (the RFC 3339 fallback reads it), and fractions below a microsecond are
//! truncated (as chrono's `timestamp_micros` does).
//!
//! Then the whole parser on naive local times in zones with daylight saving: the day-offset
//! cache must give what chrono's `from_local_datetime` gives, for any order of rows.

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::{Parsed, TsError, TsParser, parse_iso, parse_us};

/// A text's shape: every digit is `#` (a `#` of the text itself is not).
fn shape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => '#',
            '#' => '?',
            c => c,
        })
        .collect()
}

fn digits(n: usize) -> String {
    "#".repeat(n)
}

/// Every shape of the ISO grammar.
static ISO_SHAPES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut times = vec!["##:##".to_string(), "##:##:##".to_string()];
    for sep in [".", ","] {
        for n in 1..=9 {
            times.push(format!("##:##:##{sep}{}", digits(n)));
        }
    }
    let mut offsets = vec![String::new()];
    for o in [
        "Z", "z", "UTC", "+##", "-##", "+####", "-####", "+##:##", "-##:##",
    ] {
        offsets.push(o.to_string());
        offsets.push(format!(" {o}"));
    }
    let mut shapes = HashSet::from(["####-##-##".to_string()]);
    for sep in ["T", "t", " "] {
        for time in &times {
            for offset in &offsets {
                shapes.insert(format!("####-##-##{sep}{time}{offset}"));
            }
        }
    }
    shapes
});

/// Every shape of the US grammar.
static US_SHAPES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let mut times = Vec::new();
    for hour in ["#", "##"] {
        times.push(format!("{hour}:##"));
        times.push(format!("{hour}:##:##"));
        for n in 1..=9 {
            times.push(format!("{hour}:##:##.{}", digits(n)));
        }
    }
    let mut suffixes = vec![String::new()];
    for a in ["A", "a", "P", "p"] {
        for m in ["M", "m"] {
            suffixes.push(format!(" {a}{m}"));
        }
    }
    let mut shapes = HashSet::new();
    for month in ["#", "##"] {
        for day in ["#", "##"] {
            let date = format!("{month}/{day}/####");
            shapes.insert(date.clone());
            for sep in [" ", "T"] {
                for time in &times {
                    for suffix in &suffixes {
                        shapes.insert(format!("{date}{sep}{time}{suffix}"));
                    }
                }
            }
        }
    }
    shapes
});

/// What chrono makes of an ISO-grammar text; `None` outside the grammar or where chrono
/// refuses it.
fn chrono_iso(s: &str) -> Option<Parsed> {
    if !ISO_SHAPES.contains(&shape(s)) {
        return None;
    }
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(Parsed::Date(micros(d.and_hms_opt(0, 0, 0)?)));
    }
    if s.get(17..19) == Some("60") && s.as_bytes()[16] == b':' {
        return None; // a leap second: the fallback's
    }
    // One spelling for chrono: `T`, a `.` before the fraction, `+00:00` for UTC.
    let mut t = format!("{}T{}", &s[..10], &s[11..]).replace(',', ".");
    let offset_at = t[16..].find(['+', '-', 'Z', 'z', 'U', ' ']).map(|i| i + 16);
    let Some(at) = offset_at else {
        let format = if t.len() == 16 {
            "%Y-%m-%dT%H:%M"
        } else {
            "%Y-%m-%dT%H:%M:%S%.f"
        };
        return Some(Parsed::Local(micros(
            NaiveDateTime::parse_from_str(&t, format).ok()?,
        )));
    };
    let offset = t[at..].trim_start().to_string();
    let offset = match offset.as_str() {
        "Z" | "z" | "UTC" => "+00:00".to_string(),
        o => o.to_string(),
    };
    t.truncate(at);
    let format = if t.len() == 16 {
        "%Y-%m-%dT%H:%M%#z"
    } else {
        "%Y-%m-%dT%H:%M:%S%.f%#z"
    };
    let parsed = DateTime::parse_from_str(&format!("{t}{offset}"), format).ok()?;
    Some(Parsed::Utc(parsed.timestamp_micros()))
}

/// What chrono makes of a US-grammar text.
fn chrono_us(s: &str) -> Option<Parsed> {
    if !US_SHAPES.contains(&shape(s)) {
        return None;
    }
    let Some(space) = s.find([' ', 'T']) else {
        let d = NaiveDate::parse_from_str(s, "%m/%d/%Y").ok()?;
        return Some(Parsed::Date(micros(d.and_hms_opt(0, 0, 0)?)));
    };
    let t = format!("{} {}", &s[..space], &s[space + 1..]).to_ascii_uppercase();
    let seconds = t[space..].matches(':').count() == 2;
    if seconds && t.get(t.rfind(':')? + 1..t.rfind(':')? + 3) == Some("60") {
        return None; // a leap second
    }
    let format = match (seconds, t.ends_with('M')) {
        (false, false) => "%m/%d/%Y %H:%M",
        (true, false) => "%m/%d/%Y %H:%M:%S%.f",
        (false, true) => "%m/%d/%Y %I:%M %p",
        (true, true) => "%m/%d/%Y %I:%M:%S%.f %p",
    };
    Some(Parsed::Local(micros(
        NaiveDateTime::parse_from_str(&t, format).ok()?,
    )))
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

/// Fields of a date-time, each a little past its valid range at times.
#[derive(Debug, Clone)]
struct Fields {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    fraction: String,
    offset: (bool, u32, u32),
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (
            prop_oneof![0u32..=9999, 1969u32..2100],
            0u32..=13,
            prop_oneof![1u32..=28, 0u32..=32],
        ),
        (
            prop_oneof![0u32..=23, 0u32..=25],
            prop_oneof![0u32..=59, 0u32..=61],
            prop_oneof![0u32..=59, 58u32..=61],
        ),
        "[0-9]{1,10}",
        (any::<bool>(), prop_oneof![0u32..=14, 0u32..=25], 0u32..=61),
    )
        .prop_map(
            |((year, month, day), (hour, minute, second), fraction, offset)| Fields {
                year,
                month,
                day,
                hour,
                minute,
                second,
                fraction,
                offset,
            },
        )
}

/// An ISO text of the fields, in one of the grammar's spellings.
fn iso_text(f: &Fields, parts: u8, sep: &str, fraction_sep: &str, offset: u8) -> String {
    let mut s = format!("{:04}-{:02}-{:02}", f.year, f.month, f.day);
    if parts == 0 {
        return s;
    }
    s += &format!("{sep}{:02}:{:02}", f.hour, f.minute);
    if parts >= 2 {
        s += &format!(":{:02}", f.second);
    }
    if parts >= 3 {
        s += &format!("{fraction_sep}{}", f.fraction);
    }
    let (east, h, m) = f.offset;
    let sign = if east { '+' } else { '-' };
    s += &match offset {
        0 => String::new(),
        1 => "Z".into(),
        2 => " UTC".into(),
        3 => format!("{sign}{h:02}"),
        4 => format!("{sign}{h:02}{m:02}"),
        5 => format!("{sign}{h:02}:{m:02}"),
        _ => format!(" {sign}{h:02}:{m:02}"),
    };
    s
}

/// A US text of the fields (month and day unpadded or padded, 12- or 24-hour clock).
fn us_text(f: &Fields, parts: u8, padded: bool, sep: &str, am_pm: Option<&str>) -> String {
    let mut s = if padded {
        format!("{:02}/{:02}/{:04}", f.month, f.day, f.year)
    } else {
        format!("{}/{}/{:04}", f.month, f.day, f.year)
    };
    if parts == 0 {
        return s;
    }
    let hour = if am_pm.is_some() { f.hour % 13 } else { f.hour };
    s += &format!("{sep}{hour}:{:02}", f.minute);
    if parts >= 2 {
        s += &format!(":{:02}", f.second);
    }
    if parts >= 3 {
        s += &format!(".{}", f.fraction);
    }
    if let Some(suffix) = am_pm {
        s += &format!(" {suffix}");
    }
    s
}

/// A text a little off: a byte replaced, dropped, doubled or added, or the end cut.
fn mutate(s: &str, how: u8, at: usize, with: char) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let at = at % (chars.len() + 1);
    match how {
        0 if at < chars.len() => chars[at] = with,
        1 if at < chars.len() => {
            chars.remove(at);
        }
        2 if at < chars.len() => chars.insert(at, chars[at]),
        3 => chars.insert(at, with),
        4 => chars.truncate(at),
        _ => {}
    }
    chars.into_iter().collect()
}

fn near_char() -> impl Strategy<Value = char> {
    prop::sample::select("0123456789-:/ T+Z.,tzUAPMx#".chars().collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn the_iso_fast_path_agrees_with_chrono(
        f in fields(),
        parts in 0u8..4,
        sep in prop::sample::select(vec!["T", "t", " "]),
        fraction_sep in prop::sample::select(vec![".", ","]),
        offset in 0u8..7,
        mutation in (0u8..8, any::<usize>(), near_char()),
    ) {
        let text = iso_text(&f, parts, sep, fraction_sep, offset);
        let (how, at, with) = mutation;
        let text = mutate(&text, how, at, with);
        prop_assert_eq!(parse_iso(text.as_bytes()), chrono_iso(&text), "{:?}", text);
    }

    #[test]
    fn the_us_fast_path_agrees_with_chrono(
        f in fields(),
        parts in 0u8..4,
        padded in any::<bool>(),
        sep in prop::sample::select(vec![" ", "T"]),
        am_pm in prop::option::of(prop::sample::select(vec!["AM", "PM", "am", "pM"])),
        mutation in (0u8..8, any::<usize>(), near_char()),
    ) {
        let text = us_text(&f, parts, padded, sep, am_pm);
        let (how, at, with) = mutation;
        let text = mutate(&text, how, at, with);
        prop_assert_eq!(parse_us(text.as_bytes()), chrono_us(&text), "{:?}", text);
    }
}

/// Zones with daylight saving of every sort: an hour, half an hour (Lord Howe), two hours
/// (Troll), southern summers, a day skipped (Apia, 2011), offsets that changed for good.
const ZONES: [Tz; 10] = [
    Tz::UTC,
    Tz::America__New_York,
    Tz::Europe__London,
    Tz::Australia__Lord_Howe,
    Tz::Antarctica__Troll,
    Tz::America__Sao_Paulo,
    Tz::Pacific__Apia,
    Tz::Africa__Casablanca,
    Tz::Asia__Kathmandu,
    Tz::Europe__Moscow,
];

/// A naive local time, most of them in the small hours of the months clocks change in.
fn local_time() -> impl Strategy<Value = NaiveDateTime> {
    let near_a_change = (
        1990i32..2030,
        prop::sample::select(vec![3u32, 4, 9, 10, 11, 12]),
        1u32..=31,
        0u32..4,
        0u32..60,
    );
    let anywhen = (1900i32..2100, 1u32..=12, 1u32..=31, 0u32..24, 0u32..60);
    prop_oneof![near_a_change, anywhen].prop_filter_map("a real date", |(y, mo, d, h, mi)| {
        NaiveDate::from_ymd_opt(y, mo, d)?.and_hms_opt(h, mi, 0)
    })
}

proptest! {
    /// The whole parser, reused over rows as an import does (its per-day offset cache warm),
    /// reads a naive local time as chrono does: the one instant, or a refusal of a time the
    /// zone skips or repeats.
    #[test]
    fn naive_local_times_convert_as_chrono_says(
        zone in prop::sample::select(ZONES.to_vec()),
        days in prop::collection::vec(local_time(), 1..6),
        rows in prop::collection::vec((0usize..6, 0i64..(2 * 24 * 60)), 1..40),
    ) {
        let mut parser = TsParser::new(zone);
        for (day, minutes) in rows {
            // Rows cluster on a few days, some crossing into the next, so the cache is used.
            let local = days[day % days.len()] + chrono::Duration::minutes(minutes % (26 * 60));
            let text = local.format("%Y-%m-%d %H:%M:%S").to_string();
            let want = match zone.from_local_datetime(&local) {
                LocalResult::Single(t) => Ok(t.timestamp_micros()),
                LocalResult::Ambiguous(..) => Err(TsError::AmbiguousLocal),
                LocalResult::None => Err(TsError::NonexistentLocal),
            };
            prop_assert_eq!(parser.parse(text.as_bytes()), want, "{} in {}", text, zone);
        }
    }
}
