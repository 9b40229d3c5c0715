//! Every adapter end to end through [`Upstream`] against the fake: ranges, paging, and each
//! fault kind.

use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, NaiveDate, Weekday};

use super::*;
use crate::actions::{ActionKind, CorporateAction};
use crate::model::{MICROS_PER_DAY, Symbol};
use crate::sync::provider::{
    FetchError, FetchRequest, Fetched, KnownSplits, Provider, ProviderConfig, ProviderKind,
    Upstream, UpstreamPolicy, build,
};

const KINDS: [ProviderKind; 5] = [
    ProviderKind::Yahoo,
    ProviderKind::Polygon,
    ProviderKind::Alpaca,
    ProviderKind::Binance,
    ProviderKind::Csv,
];

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn bar(ts: i64, i: usize) -> RawBar {
    let open = 100.0 + i as f64;
    RawBar {
        ts,
        open,
        high: open + 2.0,
        low: open - 1.0,
        close: open + 0.5,
        volume: 1000.0 + i as f64,
        vwap: None,
        trades: None,
    }
}

/// Weekday daily bars of `[from, to)` and the weekly bars of their Mondays.
fn daily(from: NaiveDate, to: NaiveDate) -> (Vec<RawBar>, Vec<RawBar>) {
    let (mut d1, mut w1) = (Vec::new(), Vec::new());
    let mut d = from;
    while d < to {
        if d.weekday().num_days_from_monday() < 5 {
            d1.push(bar(apis::date_us(d), d1.len()));
        }
        if d.weekday() == Weekday::Mon {
            w1.push(bar(apis::date_us(d), w1.len()));
        }
        d = d.succ_opt().unwrap();
    }
    (d1, w1)
}

/// 1,500 one-minute bars from 2021-02-01 00:00 UTC.
fn minutes() -> Vec<RawBar> {
    let t0 = apis::date_us(day(2021, 2, 1));
    (0..1500)
        .map(|i| bar(t0 + i as i64 * 60_000_000, i))
        .collect()
}

async fn fake() -> FakeUpstream {
    let mut data = FakeData::new();
    let (d1, w1) = daily(day(2021, 1, 1), day(2022, 1, 1));
    data.insert("AAPL", Interval::D1, d1);
    data.insert("AAPL", Interval::W1, w1);
    data.insert("BTC-USD", Interval::M1, minutes());
    FakeUpstream::start(data).await.unwrap()
}

fn policy() -> UpstreamPolicy {
    UpstreamPolicy {
        timeout: Duration::from_millis(300),
        max_retries: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(5),
        breaker_failures: 1000,
        ..UpstreamPolicy::default()
    }
}

fn adapter(fake: &FakeUpstream, kind: ProviderKind) -> Arc<dyn Provider> {
    build(&ProviderConfig {
        api_key: Some("key".into()),
        api_secret: Some("secret".into()),
        url_template: Some("/csv/{symbol}?s={start}&e={end}&i={interval}".into()),
        ..ProviderConfig::new(kind, Some(fake.base_url()))
    })
    .unwrap()
}

/// A request whose caller already knows the symbol's splits (none: these tests are about
/// ranges, paging and faults; the fake holds no events unless a test adds them), so Yahoo makes
/// no events request of its own.
fn req(symbol: &str, interval: Interval, start: NaiveDate, end: NaiveDate) -> FetchRequest {
    FetchRequest {
        splits: Some(Arc::new(KnownSplits::default())),
        ..FetchRequest::new(
            Symbol::new(symbol).unwrap(),
            interval,
            apis::date_us(start),
            apis::date_us(end),
        )
    }
}

async fn fetch(
    fake: &FakeUpstream,
    kind: ProviderKind,
    r: &FetchRequest,
) -> Result<Fetched, FetchError> {
    let p = adapter(fake, kind);
    let up = Upstream::new(p.kind(), policy());
    p.fetch(&up, r).await
}

/// What the caller does: trim to the range, sort, dedupe; OHLCV only (vwap and trades are
/// filled in by some APIs).
fn normalized(bars: &[RawBar], r: &FetchRequest) -> Vec<(i64, [u64; 5])> {
    let mut out: Vec<(i64, [u64; 5])> = bars
        .iter()
        .filter(|b| (r.start..r.end).contains(&b.ts))
        .map(|b| {
            let bits = [b.open, b.high, b.low, b.close, b.volume].map(f64::to_bits);
            (b.ts, bits)
        })
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out.dedup();
    out
}

fn expected(fake: &FakeUpstream, r: &FetchRequest) -> Vec<(i64, [u64; 5])> {
    let data = fake.shared.data.lock().unwrap();
    normalized(data.bars(r.symbol.as_str(), r.interval), r)
}

#[tokio::test]
async fn full_range_equals_the_data_over_several_pages() {
    let fake = fake().await;
    for p in ["polygon", "alpaca", "binance"] {
        fake.set_page_size(p, 40);
    }
    for interval in [Interval::D1, Interval::W1] {
        let r = req("AAPL", interval, day(2021, 1, 1), day(2022, 1, 1));
        let want = expected(&fake, &r);
        assert!(want.len() > 50);
        for kind in KINDS {
            fake.clear_log();
            let got = fetch(&fake, kind, &r).await.unwrap();
            assert_eq!(normalized(&got.bars, &r), want, "{kind:?} {interval}");
            assert!(got.rejected.is_empty());
            let log = fake.requests();
            assert_eq!(got.requests as usize, log.len(), "{kind:?}");
            let pages = match kind {
                ProviderKind::Yahoo | ProviderKind::Csv => 1,
                _ => want.len().div_ceil(40),
            };
            assert_eq!(log.len(), pages, "{kind:?} {interval}");
            assert!(
                log.iter()
                    .all(|l| l.symbol == "AAPL" && l.interval == Some(interval) && l.status == 200)
            );
            // The first request asks for the range (Yahoo and Polygon weeks a day early).
            let early = matches!(
                (kind, interval),
                (ProviderKind::Yahoo, _) | (ProviderKind::Polygon, Interval::W1)
            );
            let start = r.start - if early { MICROS_PER_DAY } else { 0 };
            assert_eq!(
                (log[0].start, log[0].end),
                (Some(start), Some(r.end)),
                "{kind:?}"
            );
        }
    }
}

#[tokio::test]
async fn intraday_pages_limits_and_unsupported() {
    let fake = fake().await;
    let t0 = day(2021, 2, 1);
    let r = req("BTC-USD", Interval::M1, t0, day(2021, 2, 3));
    let want = expected(&fake, &r);
    assert_eq!(want.len(), 1500);
    for (kind, requests) in [
        (ProviderKind::Yahoo, 1),
        (ProviderKind::Polygon, 1),
        (ProviderKind::Alpaca, 1),
        // 1,000 rows a request; the data ends before the range does, so a third request
        // finds nothing.
        (ProviderKind::Binance, 3),
    ] {
        let got = fetch(&fake, kind, &r).await.unwrap();
        assert_eq!(normalized(&got.bars, &r), want, "{kind:?}");
        assert_eq!(got.requests, requests, "{kind:?}");
    }
    // Yahoo serves at most 7 days of 1m bars a request, as its max_range says.
    let yahoo = adapter(&fake, ProviderKind::Yahoo);
    assert_eq!(yahoo.max_range(Interval::M1), 7 * MICROS_PER_DAY);
    assert!(!yahoo.supports(Interval::H4));
    let long = req("BTC-USD", Interval::M1, t0, day(2021, 2, 9));
    let err = fetch(&fake, ProviderKind::Yahoo, &long).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Status { status: 422, body, .. } if body.contains("7 days")),
        "{err}"
    );
    let err = fetch(&fake, ProviderKind::Csv, &r).await.unwrap_err();
    assert!(matches!(err, FetchError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn symbols_are_encoded_and_daily_dirs_load() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    let mut data = FakeData::load_daily_dir(dir, Some(2)).unwrap();
    assert_eq!(data.symbols(), ["AAPL", "BRK.B"]);
    let aapl = data.bars("AAPL", Interval::D1);
    assert_eq!(aapl.len(), 5402);
    let sep1 = aapl
        .iter()
        .find(|b| b.ts == apis::date_us(day(2020, 9, 1)))
        .unwrap();
    assert_eq!(
        [sep1.open, sep1.high, sep1.low, sep1.close],
        [132.76, 134.8, 130.53, 134.18]
    );
    for symbol in ["^GSPC", "EURUSD=X", "ES=F"] {
        let bars = data.bars("AAPL", Interval::D1).to_vec();
        data.insert(symbol, Interval::D1, bars);
    }
    let fake = FakeUpstream::start(data).await.unwrap();
    for symbol in ["^GSPC", "EURUSD=X", "ES=F", "BRK.B"] {
        let r = req(symbol, Interval::D1, day(2020, 8, 1), day(2020, 10, 1));
        let want = expected(&fake, &r);
        assert_eq!(want.len(), 42);
        for kind in [
            ProviderKind::Yahoo,
            ProviderKind::Polygon,
            ProviderKind::Alpaca,
            ProviderKind::Csv,
        ] {
            let got = fetch(&fake, kind, &r).await.unwrap();
            assert_eq!(normalized(&got.bars, &r), want, "{kind:?} {symbol}");
        }
    }
    assert!(fake.requests().iter().all(|l| l.status == 200));
    // Unknown symbols: Yahoo answers 404, which is not retried.
    fake.clear_log();
    let r = req("NOPE", Interval::D1, day(2020, 8, 1), day(2020, 10, 1));
    let err = fetch(&fake, ProviderKind::Yahoo, &r).await.unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 404, .. }),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 1);
}

/// January 2021 of AAPL daily: 21 weekdays. The range ends with the last bar (Friday the
/// 29th), so Binance needs no request past it to know the range is done.
fn january() -> FetchRequest {
    req("AAPL", Interval::D1, day(2021, 1, 1), day(2021, 1, 30))
}

#[tokio::test]
async fn throttling_with_retry_after_is_honoured() {
    let fake = fake().await;
    fake.inject(FaultRule {
        provider: Some("polygon"),
        ..FaultRule::times(
            1,
            Fault::Status {
                code: 429,
                retry_after: Some(1),
            },
        )
    });
    let got = fetch(&fake, ProviderKind::Polygon, &january())
        .await
        .unwrap();
    assert_eq!(got.bars.len(), 21);
    let log = fake.requests();
    assert_eq!(log.iter().map(|l| l.status).collect::<Vec<_>>(), [429, 200]);
    assert!(log[1].at - log[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_when_persistent() {
    let fake = fake().await;
    for code in [500, 503] {
        fake.inject(FaultRule::times(
            1,
            Fault::Status {
                code,
                retry_after: None,
            },
        ));
    }
    let got = fetch(&fake, ProviderKind::Alpaca, &january())
        .await
        .unwrap();
    assert_eq!(got.bars.len(), 21);
    let statuses: Vec<u16> = fake.requests().iter().map(|l| l.status).collect();
    assert_eq!(statuses, [500, 503, 200]);

    fake.clear_log();
    fake.inject(FaultRule::always(Fault::Status {
        code: 503,
        retry_after: None,
    }));
    let err = fetch(&fake, ProviderKind::Binance, &january())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Status { status: 503, .. }),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn transport_faults_are_retried_then_fail_when_persistent() {
    let fake = fake().await;
    let r = january();
    let faults = [
        Fault::Delay(Duration::from_millis(600)),
        Fault::Reset,
        Fault::Truncated,
        Fault::Malformed,
    ];
    for fault in &faults {
        for kind in KINDS {
            fake.clear_log();
            fake.clear_faults();
            fake.inject(FaultRule::times(1, fault.clone()));
            let got = fetch(&fake, kind, &r).await;
            let got = got.unwrap_or_else(|e| panic!("{kind:?} {fault:?}: {e}"));
            assert_eq!(normalized(&got.bars, &r).len(), 21, "{kind:?} {fault:?}");
            assert_eq!(fake.requests().len(), 2, "{kind:?} {fault:?}");
        }
    }
    for (fault, kind) in faults.into_iter().zip(KINDS) {
        fake.clear_log();
        fake.clear_faults();
        fake.inject(FaultRule::always(fault.clone()));
        let err = fetch(&fake, kind, &r).await.unwrap_err();
        let expected = match fault {
            Fault::Delay(_) => {
                matches!(&err, FetchError::Transport { message, .. } if message.contains("timed out"))
            }
            Fault::Reset => matches!(err, FetchError::Transport { .. }),
            Fault::Truncated => {
                matches!(
                    err,
                    FetchError::Transport { .. } | FetchError::Malformed { .. }
                )
            }
            _ => matches!(err, FetchError::Malformed { .. }),
        };
        assert!(expected, "{kind:?} {fault:?}: {err}");
        assert_eq!(fake.requests().len(), 3, "{kind:?} {fault:?}");
    }
}

#[tokio::test]
async fn bar_faults_reach_the_caller() {
    let fake = fake().await;
    let r = january();
    let want = expected(&fake, &r);
    for kind in KINDS {
        let run = |fault: Fault| {
            fake.clear_log();
            fake.clear_faults();
            fake.inject(FaultRule {
                symbol: Some("aapl".into()),
                ..FaultRule::always(fault)
            });
            fetch(&fake, kind, &r)
        };
        let empty = run(Fault::Empty).await.unwrap();
        assert!(
            empty.bars.is_empty() && empty.rejected.is_empty(),
            "{kind:?}"
        );
        assert_eq!(empty.requests, 1);

        let twice = run(Fault::Duplicated).await.unwrap();
        let in_range = |f: &Fetched| {
            f.bars
                .iter()
                .filter(|b| (r.start..r.end).contains(&b.ts))
                .count()
        };
        assert_eq!(in_range(&twice), 42, "{kind:?}");
        assert_eq!(normalized(&twice.bars, &r), want, "{kind:?}");

        let reversed = run(Fault::OutOfOrder).await.unwrap();
        assert!(
            reversed.bars.windows(2).all(|w| w[0].ts > w[1].ts),
            "{kind:?}"
        );
        assert_eq!(normalized(&reversed.bars, &r), want, "{kind:?}");

        let err = run(Fault::WrongSymbol).await.unwrap_err();
        match kind {
            // Klines name no symbol: the fake answers `Invalid symbol`, not retried.
            ProviderKind::Binance => {
                assert!(
                    matches!(err, FetchError::Status { status: 400, .. }),
                    "{err}"
                );
                assert_eq!(fake.requests().len(), 1);
            }
            _ => {
                assert!(
                    matches!(&err, FetchError::Malformed { message, .. } if message == "answer is for WRONG, asked for AAPL"),
                    "{kind:?}: {err}"
                );
                assert_eq!(fake.requests().len(), 3);
            }
        }

        let nan = run(Fault::NaN).await.unwrap();
        let first = want[0].0;
        match kind {
            // JSON has no NaN: the APIs send null, a row the adapter rejects.
            ProviderKind::Yahoo | ProviderKind::Polygon | ProviderKind::Alpaca => {
                assert_eq!(nan.rejected.len(), 1, "{kind:?}");
                assert!(nan.rejected[0].raw.contains("null"));
                assert!(nan.rejected[0].ts.is_some());
                assert!(!nan.bars.iter().any(|b| b.ts == first && b.close.is_nan()));
            }
            _ => {
                let b = nan.bars.iter().find(|b| b.ts == first).unwrap();
                assert!(b.close.is_nan(), "{kind:?}");
            }
        }
    }
}

#[tokio::test]
async fn new_data_and_missing_keys() {
    let fake = fake().await;
    let r = req("AAPL", Interval::D1, day(2022, 1, 1), day(2022, 2, 1));
    assert!(
        fetch(&fake, ProviderKind::Csv, &r)
            .await
            .unwrap()
            .bars
            .is_empty()
    );
    let (d1, _) = daily(day(2022, 1, 1), day(2022, 2, 1));
    fake.set_data("AAPL", Interval::D1, d1);
    assert_eq!(
        fetch(&fake, ProviderKind::Csv, &r)
            .await
            .unwrap()
            .bars
            .len(),
        21
    );
    let keyless = build(&ProviderConfig::new(
        ProviderKind::Polygon,
        Some(fake.base_url()),
    ))
    .unwrap();
    let err = keyless
        .fetch(&Upstream::new("polygon", policy()), &r)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Invalid(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Corporate actions and adjusted prices

fn split(symbol: &str, date: NaiveDate, ratio: f64) -> CorporateAction {
    CorporateAction::split(Symbol::new(symbol).unwrap(), date, ratio, "truth", 0).unwrap()
}

fn dividend(symbol: &str, date: NaiveDate, amount: f64) -> CorporateAction {
    CorporateAction::dividend(Symbol::new(symbol).unwrap(), date, amount, "truth", 0).unwrap()
}

/// AAPL's 2021 bars with a 4:1 split on 2021-06-01 (and a 1:2 reverse one on 2021-09-01 that is
/// not public yet), a dividend on 2021-03-01 and one on 2021-07-01; the fake's now is
/// 2021-08-01.
async fn fake_with_actions() -> FakeUpstream {
    let fake = fake().await;
    fake.set_actions(
        "AAPL",
        vec![
            split("AAPL", day(2021, 6, 1), 4.0),
            split("AAPL", day(2021, 9, 1), 0.5),
            dividend("AAPL", day(2021, 3, 1), 0.8),
            dividend("AAPL", day(2021, 7, 1), 0.25),
        ],
    );
    fake.set_now(apis::date_us(day(2021, 8, 1)));
    fake
}

/// OHLCV of bars, for exact comparison.
fn ohlcv(bars: &[RawBar]) -> Vec<(i64, [f64; 5])> {
    bars.iter()
        .map(|b| (b.ts, [b.open, b.high, b.low, b.close, b.volume]))
        .collect()
}

fn within(bars: &[RawBar], r: &FetchRequest) -> Vec<RawBar> {
    let mut out: Vec<RawBar> = bars
        .iter()
        .filter(|b| b.ts >= r.start && b.ts < r.end)
        .cloned()
        .collect();
    out.sort_by_key(|b| b.ts);
    out
}

#[tokio::test]
async fn yahoo_serves_prices_adjusted_as_of_its_now_and_the_adapter_returns_them_raw() {
    let fake = fake_with_actions().await;
    let raw = fake.raw_bars("AAPL", Interval::D1);
    let adjusted = fake.split_adjusted_bars("AAPL", Interval::D1);
    // Before the public split: divided by 4; after it (and the split not public yet): as is.
    let at = |bars: &[RawBar], d: NaiveDate| {
        bars.iter()
            .find(|b| b.ts == apis::date_us(d))
            .unwrap()
            .clone()
    };
    assert_eq!(
        at(&adjusted, day(2021, 5, 28)).close,
        at(&raw, day(2021, 5, 28)).close / 4.0
    );
    assert_eq!(
        at(&adjusted, day(2021, 5, 28)).volume,
        at(&raw, day(2021, 5, 28)).volume * 4.0
    );
    assert_eq!(
        at(&adjusted, day(2021, 6, 1)).close,
        at(&raw, day(2021, 6, 1)).close
    );
    assert_eq!(
        at(&adjusted, day(2021, 9, 2)).close,
        at(&raw, day(2021, 9, 2)).close
    );

    // A range before the split, no splits known by the caller: the adapter asks for the events
    // up to now (one more request) and returns the bars as traded.
    let p = adapter(&fake, ProviderKind::Yahoo);
    let up = Upstream::new("yahoo", policy());
    let january = FetchRequest::new(
        Symbol::new("AAPL").unwrap(),
        Interval::D1,
        apis::date_us(day(2021, 1, 1)),
        apis::date_us(day(2021, 2, 1)),
    );
    let got = p.fetch(&up, &january).await.unwrap();
    assert_eq!(got.requests, 2);
    let log = fake.requests();
    assert_eq!(log.iter().filter(|l| l.actions).count(), 1, "{log:?}");
    assert_eq!(
        ohlcv(&within(&got.bars, &january)),
        ohlcv(&within(&raw, &january))
    );

    // The splits the caller read this sync: no request of its own.
    fake.clear_log();
    let known = FetchRequest {
        splits: Some(Arc::new(KnownSplits {
            as_of: fake.now(),
            splits: vec![(day(2021, 6, 1), 4.0)],
        })),
        ..january.clone()
    };
    let got = p.fetch(&up, &known).await.unwrap();
    assert_eq!((got.requests, fake.requests().len()), (1, 1));
    assert_eq!(
        ohlcv(&within(&got.bars, &january)),
        ohlcv(&within(&raw, &january))
    );

    // Without any split the bars would stay divided by 4: what the adapter must not store.
    let blind = FetchRequest {
        splits: Some(Arc::new(KnownSplits::default())),
        ..january.clone()
    };
    let got = p.fetch(&up, &blind).await.unwrap();
    assert_eq!(
        ohlcv(&within(&got.bars, &january)),
        ohlcv(&within(&adjusted, &january))
    );

    // A range that spans the split: the chart's own events are enough.
    let spring = FetchRequest {
        splits: Some(Arc::new(KnownSplits::default())),
        ..FetchRequest::new(
            Symbol::new("AAPL").unwrap(),
            Interval::D1,
            apis::date_us(day(2021, 5, 1)),
            apis::date_us(day(2021, 8, 1)),
        )
    };
    let got = p.fetch(&up, &spring).await.unwrap();
    assert_eq!(
        ohlcv(&within(&got.bars, &spring)),
        ohlcv(&within(&raw, &spring))
    );
}

#[tokio::test]
async fn polygon_honours_adjusted_and_every_api_serves_the_public_events() {
    let fake = fake_with_actions().await;
    let raw = fake.raw_bars("AAPL", Interval::D1);
    let adjusted = fake.split_adjusted_bars("AAPL", Interval::D1);
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{}{path}", fake.base_url());
        async move {
            let r = client
                .get(url)
                .header("APCA-API-KEY-ID", "k")
                .header("APCA-API-SECRET-KEY", "s")
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let (from, to) = (
        apis::date_us(day(2021, 5, 28)) / 1000,
        apis::date_us(day(2021, 5, 28)) / 1000,
    );
    for (flag, want) in [("true", &adjusted), ("false", &raw), ("", &adjusted)] {
        let query = if flag.is_empty() {
            String::new()
        } else {
            format!("&adjusted={flag}")
        };
        let v = get(format!(
            "/v2/aggs/ticker/AAPL/range/1/day/{}/{}?apiKey=k{query}",
            from - 86_400_000,
            to + 86_400_000
        ))
        .await;
        let close = v["results"][0]["c"].as_f64().unwrap();
        let want = want
            .iter()
            .find(|b| b.ts == apis::date_us(day(2021, 5, 27)))
            .unwrap()
            .close;
        assert_eq!(close, want, "adjusted={flag}");
    }

    // Polygon: splits and dividends, paged by next_url; the 0.5 split is not public yet.
    fake.set_page_size("polygon", 1);
    let v = get("/v3/reference/dividends?ticker=AAPL&apiKey=k".into()).await;
    assert_eq!(v["results"][0]["cash_amount"], 0.8);
    let next = v["next_url"].as_str().unwrap().to_string();
    assert!(!next.contains("apiKey"), "{next}");
    let path = next.strip_prefix(&fake.base_url()).unwrap().to_string();
    let v = get(format!("{path}&apiKey=k")).await;
    assert_eq!(v["results"][0]["ex_dividend_date"], "2021-07-01");
    assert!(v["next_url"].is_null());
    let v = get("/v3/reference/splits?ticker=AAPL&apiKey=k".into()).await;
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        (
            v["results"][0]["split_from"].as_f64(),
            v["results"][0]["split_to"].as_f64()
        ),
        (Some(1.0), Some(4.0))
    );

    // Alpaca: one page per event here, raw amounts.
    fake.set_page_size("alpaca", 10);
    let v =
        get("/v1/corporate-actions?symbols=AAPL&types=forward_split,cash_dividend".into()).await;
    assert_eq!(v["corporate_actions"]["forward_splits"][0]["new_rate"], 4.0);
    assert_eq!(v["corporate_actions"]["cash_dividends"][0]["rate"], 0.8);

    // Yahoo: events of the chart's range; the dividend before the split is divided by it.
    let period = |d: NaiveDate| apis::date_us(d) / 1_000_000;
    let v = get(format!(
        "/v8/finance/chart/AAPL?period1={}&period2={}&interval=1mo&events=div,split",
        period(day(2021, 1, 1)),
        period(day(2022, 1, 1))
    ))
    .await;
    let events = &v["chart"]["result"][0]["events"];
    let dividends: Vec<f64> = events["dividends"]
        .as_object()
        .unwrap()
        .values()
        .map(|d| d["amount"].as_f64().unwrap())
        .collect();
    assert!(
        dividends.contains(&0.2) && dividends.contains(&0.25),
        "{events}"
    );
    assert_eq!(events["splits"].as_object().unwrap().len(), 1, "{events}");
    assert!(v["chart"]["result"][0]["timestamp"].is_null());

    // Moving the fake's now makes the reverse split public and changes Yahoo's prices.
    fake.set_now(apis::date_us(day(2021, 12, 1)));
    assert_eq!(fake.public_actions("AAPL").len(), 4);
    let adjusted_now = fake.split_adjusted_bars("AAPL", Interval::D1);
    let jan4 = |bars: &[RawBar]| bars[0].close;
    assert_eq!(jan4(&adjusted_now), jan4(&raw) / 4.0 / 0.5);
}

#[tokio::test]
async fn every_adapter_reads_the_events_through_the_fake() {
    let fake = fake_with_actions().await;
    fake.set_page_size("polygon", 1);
    fake.set_page_size("alpaca", 1);
    let aapl = Symbol::new("AAPL").unwrap();
    for (kind, requests) in [
        (ProviderKind::Yahoo, 1),
        // Splits: one page; dividends: two pages of one.
        (ProviderKind::Polygon, 3),
        // Three events, one a page.
        (ProviderKind::Alpaca, 3),
    ] {
        fake.clear_log();
        let p = adapter(&fake, kind);
        let up = Upstream::new(p.kind(), policy());
        assert!(p.serves_actions());
        let got = p
            .fetch_actions(&up, &aapl, day(2021, 1, 1), day(2021, 12, 31))
            .await
            .unwrap();
        assert_eq!(got.requests, requests, "{kind:?}");
        assert_eq!(fake.requests().len(), requests as usize, "{kind:?}");
        assert!(fake.requests().iter().all(|l| l.actions && l.status == 200));
        assert!(got.rejected.is_empty(), "{kind:?} {:?}", got.rejected);
        let mut events: Vec<(NaiveDate, ActionKind, Option<f64>, Option<f64>)> = got
            .actions
            .iter()
            .map(|a| (a.ex_date, a.kind, a.ratio, a.amount))
            .collect();
        events.sort_by_key(|e| (e.0, e.1));
        assert_eq!(
            events,
            vec![
                (day(2021, 3, 1), ActionKind::Dividend, None, Some(0.8)),
                (day(2021, 6, 1), ActionKind::Split, Some(4.0), None),
                (day(2021, 7, 1), ActionKind::Dividend, None, Some(0.25)),
            ],
            "{kind:?}"
        );
    }
    for kind in [ProviderKind::Binance, ProviderKind::Csv] {
        let p = adapter(&fake, kind);
        assert!(!p.serves_actions());
        let up = Upstream::new(p.kind(), policy());
        let err = p
            .fetch_actions(&up, &aapl, day(2021, 1, 1), day(2021, 12, 31))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Invalid(_)), "{err}");
    }
}

#[tokio::test]
async fn polygon_asks_for_bars_as_traded() {
    let fake = fake_with_actions().await;
    let r = req("AAPL", Interval::D1, day(2021, 1, 1), day(2021, 2, 1));
    let got = fetch(&fake, ProviderKind::Polygon, &r).await.unwrap();
    let log = fake.requests();
    assert!(log[0].path_and_query.contains("adjusted=false"), "{log:?}");
    let raw = fake.raw_bars("AAPL", Interval::D1);
    assert_eq!(ohlcv(&within(&got.bars, &r)), ohlcv(&within(&raw, &r)));
}
