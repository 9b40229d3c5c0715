//! The us-equity calendar against real history: every trading day of AAPL's daily bars from
//! Alpha Vantage (1999-11-01 to 2021-04-21, tests/fixtures/sample) and no other day.

use std::io::Read;

use tickvault::calendar::Calendar;
use tickvault::model::Interval;

#[test]
fn us_equity_trading_days_equal_21_years_of_real_daily_bars() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sample/DA-AAPL-T-2021-04-21.csv.gz"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let stored: Vec<i64> = text
        .lines()
        .skip(1)
        .map(|l| {
            let day = chrono::NaiveDate::parse_from_str(&l[..10], "%Y-%m-%d").unwrap();
            day.and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros()
        })
        .collect();
    let (first, last) = (stored[0], *stored.last().unwrap());
    let expected = Calendar::UsEquity.expected_bars(Interval::D1, first, last + 1);
    let missing: Vec<_> = expected
        .iter()
        .filter(|t| stored.binary_search(t).is_err())
        .collect();
    let extra: Vec<_> = stored
        .iter()
        .filter(|t| expected.binary_search(t).is_err())
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(expected.len(), 5402);
}
