//! Stage 2 of the sync against a fake upstream on loopback that serves the real daily bars of
//! AAPL, MSFT and BRK.B (and real MSFT minutes) in each provider's own format, with faults
//! injected. Request counts are asserted from the fake's log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tickvault::Store;
use tickvault::actions::{ActionKind, CorporateAction};
use tickvault::calendar::Calendar;
use tickvault::clock::{Clock, ManualClock};
use tickvault::model::{Interval, Symbol};
use tickvault::sync::fake_upstream::{FakeData, FakeUpstream, Fault, FaultRule};
use tickvault::sync::provider::{self, ProviderConfig, ProviderKind, RawBar, UpstreamPolicy};
use tickvault::sync::registry::{SeriesState, SymbolSpec};
use tickvault::sync::syncer::{BackfillRequest, ProviderHandle, SyncOptions, Syncer};

use crate::common::{DAY, contents};

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub(crate) fn day(y: i32, m: u32, d: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// The real daily bars of AAPL, MSFT and BRK.B, 1999-11-01 to 2021-04-21.
pub(crate) fn daily_data() -> FakeData {
    FakeData::load_daily_dir(&fixtures(), None).unwrap()
}

/// Retries fast, never opens the circuit unless a test says so.
pub(crate) fn fast_policy() -> UpstreamPolicy {
    UpstreamPolicy {
        timeout: Duration::from_secs(5),
        max_retries: 1,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        breaker_failures: 1000,
        ..UpstreamPolicy::default()
    }
}

fn adapter(kind: ProviderKind, fake: &FakeUpstream) -> ProviderConfig {
    ProviderConfig {
        api_key: Some("key".into()),
        api_secret: Some("secret".into()),
        url_template: Some("/csv/{symbol}?s={start}&e={end}&i=d".into()),
        ..ProviderConfig::new(kind, Some(fake.base_url()))
    }
}

async fn syncer_with(
    store: Arc<Store>,
    fake: &FakeUpstream,
    kind: ProviderKind,
    policy: UpstreamPolicy,
    options: SyncOptions,
) -> Syncer {
    let handle = ProviderHandle::new("up", provider::build(&adapter(kind, fake)).unwrap(), policy);
    Syncer::open(store, vec![handle], options).await.unwrap()
}

/// Test options: an empty answer counts as known-empty at once (no settle window), so a
/// second sync asks for nothing whatever the time of day.
pub(crate) fn options() -> SyncOptions {
    SyncOptions {
        settle: Duration::ZERO,
        ..SyncOptions::default()
    }
}

async fn syncer(store: Arc<Store>, fake: &FakeUpstream, kind: ProviderKind) -> Syncer {
    syncer_with(store, fake, kind, fast_policy(), options()).await
}

async fn memory_store() -> Arc<Store> {
    Arc::new(Store::open("memory://").await.unwrap())
}

/// A weekday noon long after the fixtures end: what the tests on a manual clock start at.
const T0: i64 = 1_748_865_600_000_000; // 2025-06-02T12:00:00Z

fn manual_clock() -> (Arc<ManualClock>, Option<Arc<dyn Clock>>) {
    let clock = ManualClock::new(T0);
    (Arc::clone(&clock), Some(clock as Arc<dyn Clock>))
}

async fn track(syncer: &Syncer, symbol: &str, interval: Interval, since: i64) {
    syncer
        .track(SymbolSpec {
            symbol: Symbol::new(symbol).unwrap(),
            intervals: vec![interval],
            provider: "up".into(),
            since,
            calendar: Calendar::UsEquity,
            added_at: 0,
        })
        .await
        .unwrap();
}

/// What upstream holds for a series, as (symbol, interval, ts) -> close.
fn upstream(
    data: &FakeData,
    symbol: &str,
    interval: Interval,
) -> BTreeMap<(String, String, i64), f64> {
    data.bars(symbol, interval)
        .iter()
        .map(|b| ((symbol.to_string(), interval.to_string(), b.ts), b.close))
        .collect()
}

fn only(
    all: &BTreeMap<(String, String, i64), f64>,
    symbol: &str,
) -> BTreeMap<(String, String, i64), f64> {
    all.iter()
        .filter(|(k, _)| k.0 == symbol)
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn state_of(syncer: &Syncer, symbol: &str, interval: Interval) -> SeriesState {
    syncer.state().status[&(Symbol::new(symbol).unwrap(), interval)].state
}

const SYMBOLS: [&str; 3] = ["AAPL", "MSFT", "BRK.B"];

#[tokio::test]
async fn new_symbols_are_backfilled_completely_and_a_second_sync_fetches_nothing() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let store = memory_store().await;
    let syncer = syncer(Arc::clone(&store), &fake, ProviderKind::Yahoo).await;
    for s in SYMBOLS {
        track(&syncer, s, Interval::D1, day(1999, 11, 1)).await;
    }
    let first = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    // Yahoo serves a daily history in one request, and the symbol's corporate actions (the
    // splits after the bars, to return them as traded) in one more: two per symbol.
    assert_eq!(fake.requests().len(), 6);
    assert_eq!(fake.requests().iter().filter(|r| r.actions).count(), 3);
    assert_eq!((first.requests, first.action_requests), (6, 3));
    let stored = contents(&store).await;
    for s in SYMBOLS {
        assert_eq!(only(&stored, s), upstream(&data, s, Interval::D1), "{s}");
        assert_eq!(state_of(&syncer, s, Interval::D1), SeriesState::Fresh);
    }
    assert_eq!(first.rows, 3 * 5402);

    // Nothing to fetch, and the events were read within `actions_every`.
    let second = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(second.requests, 0, "{second:?}");
    assert_eq!(fake.requests().len(), 6);
    // The registry, ledger and run history are SQL tables.
    let n = store
        .query("SELECT count(*) AS n FROM symbols WHERE state = 'fresh' AND timeframe = '1d'")
        .await
        .unwrap();
    assert_eq!(
        n[0].column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0),
        3
    );
    let covered = store
        .query(
            "SELECT count(*) FROM coverage WHERE has_data AND source = 'up' AND timeframe = '1d'",
        )
        .await
        .unwrap();
    assert_eq!(
        covered[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0),
        3
    );
}

#[tokio::test]
async fn a_deleted_range_is_healed_by_fetching_exactly_that_range() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let store = memory_store().await;
    let syncer = syncer(Arc::clone(&store), &fake, ProviderKind::Yahoo).await;
    for s in SYMBOLS {
        track(&syncer, s, Interval::D1, day(1999, 11, 1)).await;
    }
    syncer.backfill(&BackfillRequest::default()).await.unwrap();
    let before = contents(&store).await;

    // Thanksgiving week 2020: Monday to Friday, the holiday on Thursday.
    let aapl = Symbol::new("AAPL").unwrap();
    let deleted = syncer
        .delete_bars(&aapl, Interval::D1, day(2020, 11, 23), day(2020, 11, 30))
        .await
        .unwrap();
    assert_eq!(deleted.rows, 4);
    assert_eq!(contents(&store).await.len(), before.len() - 4);
    fake.clear_log();
    let heal = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    // One chart request, and one events request for the splits after the range (Yahoo's
    // prices are adjusted as of the request).
    let all = fake.requests();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].actions && all[0].symbol == "AAPL", "{all:?}");
    let log: Vec<_> = all.into_iter().filter(|r| !r.actions).collect();
    assert_eq!(log[0].symbol, "AAPL");
    // Exactly the deleted trading days, from the Monday to the end of the Friday bar.
    assert!(log[0].start.unwrap() <= day(2020, 11, 23), "{:?}", log[0]);
    assert_eq!(
        heal.fetched,
        vec!["AAPL 1d 2020-11-23T00:00:00Z..2020-11-28T00:00:00Z"]
    );
    assert_eq!(contents(&store).await, before);
    // The holiday was covered by that fetch: nothing is asked again.
    fake.clear_log();
    syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_long_gap_is_fetched_in_provider_sized_chunks() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let store = memory_store().await;
    // Binance klines: at most 1000 bars a request, so 1000 days a chunk.
    let syncer = syncer(Arc::clone(&store), &fake, ProviderKind::Binance).await;
    track(&syncer, "MSFT", Interval::D1, day(1999, 11, 1)).await;
    syncer.backfill(&BackfillRequest::default()).await.unwrap();
    let before = contents(&store).await;
    assert_eq!(before, upstream(&data, "MSFT", Interval::D1));

    let msft = Symbol::new("MSFT").unwrap();
    syncer
        .delete_bars(&msft, Interval::D1, day(2005, 1, 1), day(2012, 1, 1))
        .await
        .unwrap();
    fake.clear_log();
    let heal = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    let log = fake.requests();
    // Seven years of trading days: ceil(2555 days / 1000) chunks, one request each.
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(heal.chunks, 3);
    for r in &log {
        let (start, end) = (r.start.unwrap(), r.end.unwrap());
        assert!(end - start <= 1000 * DAY, "{r:?}");
        assert!(start >= day(2005, 1, 1) && end <= day(2012, 1, 1), "{r:?}");
    }
    assert_eq!(contents(&store).await, before);
}

/// Real MSFT minutes (Alpha Vantage, 2020-11-23 to 2020-12-18, minutes without trades missing).
fn msft_minutes() -> Vec<RawBar> {
    let text = std::fs::read_to_string(
        fixtures().join("alphavantage_MSFT_1min_2020-11-23_2020-12-18_extended_hours.csv"),
    )
    .unwrap();
    let mut bars = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let naive = chrono::NaiveDateTime::parse_from_str(f[0], "%Y-%m-%d %H:%M:%S").unwrap();
        let ts = naive
            .and_local_timezone(chrono_tz::America::New_York)
            .unwrap()
            .timestamp_micros();
        let v = |i: usize| f[i].parse::<f64>().unwrap();
        bars.push(RawBar {
            ts,
            open: v(1),
            high: v(2),
            low: v(3),
            close: v(4),
            volume: v(5),
            vwap: None,
            trades: None,
        });
    }
    bars
}

#[tokio::test]
async fn holidays_and_known_empty_minutes_are_fetched_once_then_never_again() {
    let mut data = FakeData::new();
    let minutes = msft_minutes();
    data.insert("MSFT", Interval::M1, minutes.clone());
    let fake = FakeUpstream::start(data).await.unwrap();
    let store = memory_store().await;
    let syncer = syncer(Arc::clone(&store), &fake, ProviderKind::Yahoo).await;
    let (start, end) = (day(2020, 11, 23), day(2020, 12, 19));
    track(&syncer, "MSFT", Interval::M1, start).await;
    let range = BackfillRequest {
        range: Some((start, end)),
        ..Default::default()
    };
    let first = syncer.backfill(&range).await.unwrap();
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    // Yahoo serves 1m bars 7 days a request: 26 days from the first session minute; and the
    // events in one more.
    assert_eq!(fake.requests().len(), 4 + 1, "{:?}", first.fetched);
    assert_eq!(first.action_requests, 1);
    // Some session minutes had no trades: the calendar expects them, upstream has none.
    let expected = Calendar::UsEquity.expected_bars(Interval::M1, start, end);
    let have: std::collections::HashSet<i64> = minutes.iter().map(|b| b.ts).collect();
    let empty_minutes = expected.iter().filter(|t| !have.contains(t)).count();
    assert!(empty_minutes > 0);
    // Every bar upstream had in the ranges asked for is stored (extended hours too, as sent).
    let asked: Vec<(i64, i64)> = fake
        .requests()
        .iter()
        .filter(|r| !r.actions)
        .map(|r| (r.start.unwrap(), r.end.unwrap()))
        .collect();
    let in_asked = minutes
        .iter()
        .filter(|b| asked.iter().any(|(a, z)| b.ts >= *a && b.ts < *z))
        .count();
    assert!(in_asked > 9000, "{in_asked}");
    assert_eq!(contents(&store).await.len(), in_asked);
    // Known-empty minutes, Thanksgiving and weekends are covered: nothing is fetched again.
    fake.clear_log();
    let second = syncer.backfill(&range).await.unwrap();
    assert_eq!(second.requests, 0, "{second:?}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_failing_symbol_leaves_the_others_fresh_and_recovers_with_backoff() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let store = memory_store().await;
    let (clock, dyn_clock) = manual_clock();
    let options = SyncOptions {
        retry_base: Duration::from_millis(400),
        clock: dyn_clock,
        ..options()
    };
    let syncer = syncer_with(
        Arc::clone(&store),
        &fake,
        ProviderKind::Yahoo,
        fast_policy(),
        options,
    )
    .await;
    for s in SYMBOLS {
        track(&syncer, s, Interval::D1, day(1999, 11, 1)).await;
    }
    fake.inject(FaultRule {
        symbol: Some("MSFT".into()),
        ..FaultRule::always(Fault::Status {
            code: 500,
            retry_after: None,
        })
    });
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(run.failures.len(), 1, "{run:?}");
    assert!(run.failures[0].starts_with("MSFT 1d: HTTP 500"), "{run:?}");
    assert_eq!(state_of(&syncer, "AAPL", Interval::D1), SeriesState::Fresh);
    assert_eq!(state_of(&syncer, "BRK.B", Interval::D1), SeriesState::Fresh);
    let status = syncer.state().status[&(Symbol::new("MSFT").unwrap(), Interval::D1)].clone();
    assert_eq!(status.state, SeriesState::Failing);
    assert_eq!(status.attempts, 1);
    assert_eq!(status.next_retry, Some(T0 + 400_000));
    assert!(status.last_error.as_deref().unwrap().contains("500"));
    // One request and one retry, no more (for bars; the events request failed the same way).
    let msft_requests = || {
        fake.requests()
            .iter()
            .filter(|r| r.symbol == "MSFT" && !r.actions)
            .count()
    };
    assert_eq!(msft_requests(), 2);
    assert_eq!(run.action_failures.len(), 1, "{run:?}");

    // Within its backoff a failing symbol is not asked again, up to its last microsecond.
    syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(msft_requests(), 2);
    clock.set(T0 + 400_000 - 1);
    syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(msft_requests(), 2);
    // At its retry time it is; the second failure doubles the wait.
    clock.set(T0 + 400_000);
    syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(msft_requests(), 4);
    let status = syncer.state().status[&(Symbol::new("MSFT").unwrap(), Interval::D1)].clone();
    assert_eq!(status.attempts, 2);
    assert_eq!(status.next_retry, Some(T0 + 400_000 + 800_000));

    // The provider recovers: so does the symbol, and its history is complete.
    fake.clear_faults();
    clock.advance(Duration::from_millis(800));
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(run.failures.is_empty(), "{run:?}");
    assert_eq!(state_of(&syncer, "MSFT", Interval::D1), SeriesState::Fresh);
    let status = syncer.state().status[&(Symbol::new("MSFT").unwrap(), Interval::D1)].clone();
    assert_eq!(status.last_update, Some(T0 + 1_200_000));
    assert_eq!((status.attempts, status.next_retry), (0, None));
    assert_eq!(
        only(&contents(&store).await, "MSFT"),
        upstream(&data, "MSFT", Interval::D1)
    );
}

#[tokio::test]
async fn the_circuit_opens_on_repeated_failures_and_closes_after_a_good_trial() {
    let fake = FakeUpstream::start(daily_data()).await.unwrap();
    let store = memory_store().await;
    let policy = UpstreamPolicy {
        max_retries: 0,
        breaker_failures: 3,
        breaker_open: Duration::from_millis(300),
        max_concurrency: 1,
        ..fast_policy()
    };
    let (clock, dyn_clock) = manual_clock();
    let options = SyncOptions {
        retry_base: Duration::from_millis(1),
        concurrency: 1,
        clock: dyn_clock,
        ..options()
    };
    let syncer = syncer_with(
        Arc::clone(&store),
        &fake,
        ProviderKind::Yahoo,
        policy,
        options,
    )
    .await;
    for s in ["AAPL", "MSFT", "BRK.B", "IBM", "KO"] {
        track(&syncer, s, Interval::D1, day(2020, 1, 1)).await;
    }
    fake.inject(FaultRule::always(Fault::Status {
        code: 503,
        retry_after: None,
    }));
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(run.failures.len(), 5);
    // Three requests (the events of the first three symbols) opened the circuit; the other
    // events requests and every chart failed fast without a request.
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(run.action_failures.len(), 5, "{run:?}");
    assert!(
        run.failures
            .iter()
            .filter(|f| f.contains("circuit open"))
            .count()
            == 5,
        "{run:?}"
    );
    let provider = syncer.providers().next().unwrap();
    assert_eq!(provider.upstream.stats().circuit, "open");
    assert_eq!(provider.upstream.stats().circuit_opens, 1);

    fake.clear_faults();
    // Open for exactly 300 ms on the syncer's clock, then one trial may go.
    clock.advance(Duration::from_millis(300) - Duration::from_micros(1));
    assert_eq!(provider.upstream.stats().circuit, "open");
    clock.advance(Duration::from_micros(1));
    assert_eq!(provider.upstream.stats().circuit, "half-open");
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(provider.upstream.stats().circuit, "closed");
    // IBM and KO are not upstream: a 404 is that symbol's problem, not the provider's.
    assert_eq!(run.failures.len(), 2, "{run:?}");
    for s in ["AAPL", "MSFT", "BRK.B"] {
        assert_eq!(
            state_of(&syncer, s, Interval::D1),
            SeriesState::Fresh,
            "{s}"
        );
    }
    assert_eq!(provider.upstream.stats().circuit, "closed");
}

#[tokio::test]
async fn the_rate_limit_holds_in_every_window() {
    let fake = FakeUpstream::start(daily_data()).await.unwrap();
    let store = memory_store().await;
    // Five requests per 500 ms window (the rule is the same per minute, only slower to test).
    let window = Duration::from_millis(500);
    let policy = UpstreamPolicy {
        rate_limit: Some(5),
        rate_window: window,
        max_concurrency: 8,
        ..fast_policy()
    };
    let syncer = syncer_with(
        Arc::clone(&store),
        &fake,
        ProviderKind::Binance,
        policy,
        options(),
    )
    .await;
    for s in SYMBOLS {
        track(&syncer, s, Interval::D1, day(1999, 11, 1)).await;
    }
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(run.failures.is_empty(), "{run:?}");
    let times: Vec<_> = fake.requests().iter().map(|r| r.at).collect();
    // 21 years in 1000-day chunks for three symbols.
    assert!(times.len() >= 24, "{}", times.len());
    for (i, t) in times.iter().enumerate() {
        // Requests are logged on arrival. A token comes back a window after its request
        // finished, which is after it arrived, so this holds exactly however slow the
        // machine is.
        let in_window = times[i..].iter().filter(|u| **u < *t + window).count();
        assert!(
            in_window <= 5,
            "{in_window} requests within {window:?} of request {i}"
        );
    }
    let stats = syncer.providers().next().unwrap().upstream.stats();
    assert!(stats.rate_limit_waits > 0);
}

#[tokio::test]
async fn bad_rows_from_upstream_go_to_quarantine_never_into_bars() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let store = memory_store().await;
    let syncer = syncer(Arc::clone(&store), &fake, ProviderKind::Binance).await;
    track(&syncer, "AAPL", Interval::D1, day(2021, 1, 1)).await;
    // One NaN close, and every bar duplicated and out of order in another answer.
    fake.inject(FaultRule::times(1, Fault::NaN));
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert_eq!(run.quarantined, 1, "{run:?}");
    let q = store
        .query("SELECT symbol, reason, provider FROM quarantine WHERE timeframe = '1d'")
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&q)
        .unwrap()
        .to_string();
    assert!(
        text.contains("AAPL") && text.contains("close is not a finite number"),
        "{text}"
    );
    let stored = contents(&store).await;
    let want: BTreeMap<_, _> = upstream(&data, "AAPL", Interval::D1)
        .into_iter()
        .filter(|(k, _)| k.2 >= day(2021, 1, 1))
        .collect();
    // All but the quarantined bar; the next sync asks for it again (it is stored nowhere).
    assert_eq!(stored.len(), want.len() - 1);
    fake.inject(FaultRule::times(1, Fault::Duplicated));
    fake.inject(FaultRule::times(1, Fault::OutOfOrder));
    syncer
        .backfill(&BackfillRequest {
            range: Some((day(2021, 1, 1), day(2021, 5, 1))),
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(contents(&store).await, want);
}

#[tokio::test]
async fn every_provider_backfills_the_same_bars() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let want = upstream(&data, "BRK.B", Interval::D1);
    for kind in [
        ProviderKind::Yahoo,
        ProviderKind::Polygon,
        ProviderKind::Alpaca,
        ProviderKind::Binance,
        ProviderKind::Csv,
    ] {
        let store = memory_store().await;
        let syncer = syncer(Arc::clone(&store), &fake, kind).await;
        track(&syncer, "BRK.B", Interval::D1, day(1999, 11, 1)).await;
        let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
        assert!(run.failures.is_empty(), "{kind:?}: {run:?}");
        assert_eq!(contents(&store).await, want, "{kind:?}");
    }
}

/// AAPL's splits and dividends as Alpha Vantage's file lists them (`split_coefficient`,
/// `dividend_amount`), and three bad events a provider might send: a split of ratio -4, a
/// dividend of -1 and one of 500 (above the close before it).
fn aapl_actions() -> (Vec<CorporateAction>, Vec<CorporateAction>) {
    let text = std::fs::read_to_string(fixtures().join("DA-AAPL-T-2021-04-21.csv")).unwrap();
    let aapl = Symbol::new("AAPL").unwrap();
    let mut good = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let date = chrono::NaiveDate::parse_from_str(f[0], "%Y-%m-%d").unwrap();
        let (dividend, split): (f64, f64) = (f[7].parse().unwrap(), f[8].parse().unwrap());
        if split != 1.0 {
            good.push(CorporateAction::split(aapl.clone(), date, split, "av", 0).unwrap());
        }
        if dividend != 0.0 {
            good.push(CorporateAction::dividend(aapl.clone(), date, dividend, "av", 0).unwrap());
        }
    }
    let bad_split = CorporateAction {
        ratio: Some(-4.0),
        ..CorporateAction::split(aapl.clone(), day_date(2021, 1, 4), 4.0, "av", 0).unwrap()
    };
    let bad_dividend = CorporateAction {
        amount: Some(-1.0),
        ..CorporateAction::dividend(aapl.clone(), day_date(2021, 1, 5), 1.0, "av", 0).unwrap()
    };
    // Valid on its own, but above the close before it (131.01 on 2021-01-05).
    let above_close =
        CorporateAction::dividend(aapl, day_date(2021, 1, 6), 500.0, "av", 0).unwrap();
    (good, vec![bad_split, bad_dividend, above_close])
}

fn day_date(y: i32, m: u32, d: u32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[tokio::test]
async fn every_provider_stores_aapl_as_traded_across_its_four_splits() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let (good, bad) = aapl_actions();
    let splits: Vec<(chrono::NaiveDate, Option<f64>)> = good
        .iter()
        .filter(|a| a.kind == ActionKind::Split)
        .map(|a| (a.ex_date, a.ratio))
        .collect();
    // 2:1 in 2000 and 2005, 7:1 in 2014 (7.00000700001 in the file), 4:1 in 2020.
    assert_eq!(
        splits,
        vec![
            (day_date(2000, 6, 21), Some(2.0)),
            (day_date(2005, 2, 28), Some(2.0)),
            (day_date(2014, 6, 9), Some(7.0)),
            (day_date(2020, 8, 31), Some(4.0)),
        ]
    );
    let dividends = good.len() - splits.len();
    fake.set_actions("AAPL", good.iter().chain(&bad).cloned().collect());
    // Yahoo divides AAPL's 1999 prices by 2 x 2 x 7 x 4 = 112.
    let first_raw = data.bars("AAPL", Interval::D1)[0].close;
    assert_eq!(
        fake.split_adjusted_bars("AAPL", Interval::D1)[0].close,
        first_raw / 112.0
    );
    let want = upstream(&data, "AAPL", Interval::D1);
    for (kind, requests) in [
        (ProviderKind::Yahoo, 2),
        // Splits and dividends are two endpoints.
        (ProviderKind::Polygon, 3),
        // Two chunks of 9,000 days.
        (ProviderKind::Alpaca, 3),
    ] {
        let store = memory_store().await;
        let syncer = syncer(Arc::clone(&store), &fake, kind).await;
        track(&syncer, "AAPL", Interval::D1, day(1999, 11, 1)).await;
        let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
        assert!(run.failures.is_empty(), "{kind:?}: {run:?}");
        assert!(run.action_failures.is_empty(), "{kind:?}: {run:?}");
        assert_eq!(run.requests, requests, "{kind:?}: {run:?}");
        // Every bar as traded, whatever basis the provider serves.
        let got = contents(&store).await;
        assert_eq!(got.len(), want.len(), "{kind:?}");
        // Yahoo's prices carry 7 significant digits (32-bit floats), so un-adjusted ones are
        // rounded to those: Alpha Vantage's 161.059998 comes back as 161.06.
        let digits = if kind == ProviderKind::Yahoo {
            5e-7
        } else {
            0.0
        };
        for ((key, close), (_, traded)) in got.iter().zip(&want) {
            assert!(
                (close - traded).abs() <= digits * traded.abs(),
                "{kind:?}: the close of {key:?} is {close}, as traded {traded}"
            );
        }
        // The events are stored, the three bad ones refused and counted.
        assert_eq!(run.actions_rejected, 3, "{kind:?}: {run:?}");
        assert_eq!(run.actions_stored as usize, good.len(), "{kind:?}: {run:?}");
        let stored = store.actions().snapshot();
        let stored = stored.for_symbol(&Symbol::new("AAPL").unwrap());
        assert_eq!(stored.len(), good.len(), "{kind:?}");
        for (s, g) in stored.iter().zip(&good) {
            assert_eq!((s.ex_date, s.kind, s.ratio), (g.ex_date, g.kind, g.ratio));
            let (a, b) = (s.amount.unwrap_or(0.0), g.amount.unwrap_or(0.0));
            assert!((a - b).abs() <= 1e-9 * b.abs(), "{kind:?}: {s:?} vs {g:?}");
            assert_eq!(s.source, "up");
        }
        assert!(dividends > 30, "{dividends}");
    }
}

#[tokio::test]
async fn a_restart_mid_backfill_loses_nothing_and_refetches_only_chunks_in_flight() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let policy = UpstreamPolicy {
        max_concurrency: 1,
        ..fast_policy()
    };
    let options = || SyncOptions {
        concurrency: 1,
        ..options()
    };
    // The requests an uninterrupted backfill makes.
    {
        let store = memory_store().await;
        let syncer = syncer_with(
            store,
            &fake,
            ProviderKind::Binance,
            policy.clone(),
            options(),
        )
        .await;
        for s in SYMBOLS {
            track(&syncer, s, Interval::D1, day(1999, 11, 1)).await;
        }
        syncer.backfill(&BackfillRequest::default()).await.unwrap();
    }
    let uninterrupted = fake.requests().len();
    fake.clear_log();
    // Every request takes 150 ms; 3 symbols × 10 chunks of 1000 days.
    fake.inject(FaultRule::always(Fault::Delay(Duration::from_millis(150))));
    {
        let store = Arc::new(Store::open(&url).await.unwrap());
        let syncer = syncer_with(
            Arc::clone(&store),
            &fake,
            ProviderKind::Binance,
            policy.clone(),
            options(),
        )
        .await;
        for s in SYMBOLS {
            track(&syncer, s, Interval::D1, day(1999, 11, 1)).await;
        }
        let run = tokio::spawn(async move { syncer.backfill(&BackfillRequest::default()).await });
        // One request at a time, each held 150 ms: once the eighth has reached the fake it is
        // the one in flight, and no other can start before it ends.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while fake.requests().len() < 8 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                fake.requests()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        run.abort(); // the process dies: whatever was in flight is gone
        let _ = run.await;
    }
    let before = fake.requests();
    assert!((4..20).contains(&before.len()), "{}", before.len());
    fake.clear_log();
    let store = Arc::new(Store::open(&url).await.unwrap());
    let syncer = syncer_with(
        Arc::clone(&store),
        &fake,
        ProviderKind::Binance,
        policy,
        options(),
    )
    .await;
    let run = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(run.failures.is_empty(), "{run:?}");
    let after = fake.requests();
    // Fetched twice: ranges asked after the restart that overlap one asked before it. Only the
    // chunk in flight, and one fetched whose ledger entry the crash cut off, may be.
    let overlaps = |a: &tickvault::sync::fake_upstream::LoggedRequest,
                    b: &tickvault::sync::fake_upstream::LoggedRequest| {
        a.symbol == b.symbol
            && a.start.unwrap() < b.end.unwrap()
            && b.start.unwrap() < a.end.unwrap()
    };
    let refetched: Vec<_> = after
        .iter()
        .filter(|a| before.iter().any(|b| overlaps(a, b)))
        .collect();
    // A chunk may take two requests (Binance pages on past where the data ends); pages of
    // one chunk share its end, so chunks are counted by (symbol, end).
    let chunks: std::collections::BTreeSet<_> =
        refetched.iter().map(|r| (&r.symbol, r.end)).collect();
    assert!(
        chunks.len() <= 2,
        "{} chunks fetched twice: {refetched:?}",
        chunks.len()
    );
    // The rest is the work left: at most one more request than an uninterrupted run for it,
    // as the chunks after a refetched one start one missing bar later.
    let total = before.len() + after.len();
    assert!(
        total <= uninterrupted + refetched.len() + 1,
        "{total} requests, {uninterrupted} uninterrupted, {} before the restart",
        before.len()
    );
    let mut want = BTreeMap::new();
    for s in SYMBOLS {
        want.extend(upstream(&data, s, Interval::D1));
    }
    assert_eq!(contents(&store).await, want);
}

// ---- over HTTP ----

mod http {
    use reqwest::StatusCode;
    use serde_json::{Value, json};
    use tickvault::config::{Config, Seconds};

    use super::*;
    use crate::server::{TestServer, expect_error};

    async fn server(fake: &FakeUpstream, store: Arc<Store>) -> TestServer {
        let mut yahoo = ProviderConfig::new(ProviderKind::Yahoo, Some(fake.base_url()));
        yahoo.max_retries = 1;
        yahoo.backoff_base = Seconds(0.01);
        let mut config = Config {
            default_provider: Some("yahoo".into()),
            settle: Seconds(0.0),
            // Jobs run only when triggered, so request counts are the test's own.
            disabled_jobs: ["transfer", "compact", "gc", "backfill", "live"]
                .map(String::from)
                .to_vec(),
            ..Config::default()
        };
        config.providers.insert("yahoo".into(), yahoo);
        TestServer::start(config, store).await
    }

    async fn json(r: reqwest::Response) -> Value {
        assert!(r.status().is_success(), "{}", r.status());
        r.json().await.unwrap()
    }

    #[tokio::test]
    async fn the_scheduler_backfills_a_new_symbol_on_its_own() {
        let fake = FakeUpstream::start(daily_data()).await.unwrap();
        let (clock, dyn_clock) = manual_clock();
        let options = tickvault::StoreOptions {
            clock: dyn_clock.unwrap(),
            ..Default::default()
        };
        let store = Arc::new(
            Store::open_with_options("memory://", &options)
                .await
                .unwrap(),
        );
        let mut yahoo = ProviderConfig::new(ProviderKind::Yahoo, Some(fake.base_url()));
        yahoo.backoff_base = Seconds(0.01);
        let mut config = Config {
            default_provider: Some("yahoo".into()),
            backfill_delay: Seconds(0.1),
            backfill_interval: Seconds(0.3),
            // Recent empty days count as known at once, whatever the time of day.
            settle: Seconds(0.0),
            disabled_jobs: vec!["live".into()],
            ..Config::default()
        };
        config.providers.insert("yahoo".into(), yahoo);
        let server = TestServer::start(config, store).await;
        let r = server
            .client
            .post(server.url("/v1/symbols"))
            .json(&json!({"symbol": "MSFT", "since": "2021-01-01"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        // Following, compaction, GC and the backfill wait for their first tick.
        clock.until_sleepers(4).await;
        let backfill = || async {
            let status = json(server.get("/v1/sync/status").await).await;
            status["jobs"]["backfill"].clone()
        };
        assert_eq!(backfill().await["next_run"], (T0 + 100_000) as f64 / 1e6);
        clock.set(T0 + 100_000 - 1);
        assert_eq!(backfill().await["runs"], 0);
        // The first run at exactly `backfill_delay`, the later ones every `backfill_interval`.
        for (run, at) in [(1, 100_000), (2, 400_000), (3, 700_000)] {
            clock.set(T0 + at);
            let mut state = Value::Null;
            for _ in 0..1000 {
                state = backfill().await;
                if state["runs"] == run && state["next_run"] == (T0 + at + 300_000) as f64 / 1e6 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(state["runs"], run, "{state}");
            assert_eq!(state["last_started"], (T0 + at) as f64 / 1e6, "{state}");
            assert_eq!(state["last_outcome"], "ok", "{state}");
            if run == 1 {
                let listed = json(server.get("/v1/symbols").await).await;
                assert_eq!(listed[0]["sync"]["state"], "fresh", "{listed}");
                assert_eq!(listed[0]["rows"], 75);
            }
        }
        // Later runs found nothing to fetch: one chart and one events request in all, and only
        // busy runs are history.
        assert_eq!(fake.requests().len(), 2);
        let runs = server
            .post_sql(
                "SELECT job, rows, requests, arrow_cast(\"start\", 'Int64') AS at \
                 FROM sync_runs WHERE job = 'backfill'",
            )
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(
            runs,
            format!(
                r#"[{{"job":"backfill","rows":75,"requests":2,"at":{}}}]"#,
                T0 + 100_000
            )
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn register_backfill_delete_heal_fill_and_untrack() {
        let data = daily_data();
        let fake = FakeUpstream::start(data.clone()).await.unwrap();
        let store = memory_store().await;
        let server = server(&fake, Arc::clone(&store)).await;
        let post = |path: &str, body: Option<Value>| {
            let r = server.client.post(server.url(path));
            match body {
                Some(b) => r.json(&b),
                None => r,
            }
            .send()
        };

        // Bad registrations are refused, naming what is wrong, and change nothing.
        for (body, code, needle) in [
            (
                json!({"symbol": "AAPL", "provider": "nope"}),
                "invalid_request",
                "unknown provider \"nope\"",
            ),
            (
                json!({"symbol": "AAPL", "timeframes": ["2d"]}),
                "invalid_parameter",
                "timeframes: unknown timeframe \"2d\"",
            ),
            (
                json!({"symbol": "AAPL", "intervals": ["2d"]}),
                "invalid_parameter",
                "timeframes: unknown timeframe \"2d\"",
            ),
            (
                json!({"symbol": "AAPL", "timeframes": ["1d"], "intervals": ["1m"]}),
                "invalid_parameter",
                "timeframes: timeframes [\"1d\"] and intervals [\"1m\"] disagree",
            ),
            (
                json!({"symbol": "AAPL", "calendar": "moon"}),
                "invalid_parameter",
                "calendar",
            ),
            (
                json!({"symbol": "AAPL", "since": "yesterday"}),
                "invalid_parameter",
                "since",
            ),
            (
                json!({"symbol": "AAPL", "timeframes": ["4h"]}),
                "invalid_request",
                "does not serve 4h",
            ),
            (
                json!({"symbol": "AAPL", "colour": "red"}),
                "invalid_body",
                "colour",
            ),
        ] {
            let message = expect_error(
                post("/v1/symbols", Some(body)).await.unwrap(),
                StatusCode::BAD_REQUEST,
                code,
            )
            .await;
            assert!(message.contains(needle), "{message}");
        }
        let listed = json(server.get("/v1/symbols").await).await;
        assert_eq!(listed, json!([]));

        let r = post(
            "/v1/symbols",
            Some(json!({"symbol": "AAPL", "since": "1999-11-01"})),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let run = json(post("/v1/sync/backfill", None).await.unwrap()).await;
        assert_eq!(run["rows"], 5402);
        // The chart and the events.
        assert_eq!(run["requests"], 2);
        assert_eq!(run["action_requests"], 1);
        let listed = json(server.get("/v1/symbols").await).await;
        assert_eq!(listed[0]["symbol"], "AAPL");
        assert_eq!(listed[0]["rows"], 5402);
        assert_eq!(listed[0]["tracked"], true);
        assert_eq!(listed[0]["sync"]["state"], "fresh");
        assert_eq!(listed[0]["sync"]["last_bar"], "2021-04-21T00:00:00Z");

        let status = json(server.get("/v1/sync/status").await).await;
        assert_eq!(status["providers"]["yahoo"]["requests"], 2);
        assert_eq!(status["providers"]["yahoo"]["circuit"], "closed");
        assert_eq!(status["jobs"]["backfill"]["runs"], 1);
        assert_eq!(status["jobs"]["backfill"]["enabled"], false);
        let metrics = server.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("tickvault_provider_requests_total{provider=\"yahoo\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("tickvault_provider_action_requests_total{provider=\"yahoo\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                "tickvault_symbol_freshness_lag_seconds{symbol=\"AAPL\",timeframe=\"1d\"}"
            )
        );
        let runs = server
            .post_sql("SELECT job, outcome, rows, requests FROM sync_runs")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(
            runs,
            r#"[{"job":"backfill","outcome":"ok","rows":5402,"requests":2}]"#
        );

        // Delete a range: exactly that range comes back on the next stage 2 run.
        let before = contents(&store).await;
        let deleted = server
            .client
            .delete(server.url("/v1/bars/AAPL?timeframe=1d&start=2020-03-02&end=2020-03-14"))
            .send()
            .await
            .unwrap();
        assert_eq!(json(deleted).await["rows_deleted"], 10);
        let run = json(post("/v1/sync/backfill", None).await.unwrap()).await;
        // The range, and the splits after it.
        assert_eq!(run["requests"], 2);
        assert_eq!(
            run["fetched"],
            json!(["AAPL 1d 2020-03-02T00:00:00Z..2020-03-14T00:00:00Z"])
        );
        assert_eq!(contents(&store).await, before);

        // A read with fill=true fetches only what is missing, then answers.
        let url =
            "/v1/bars/MSFT?start=2021-01-04&end=2021-02-01&columns=ts,close&format=csv&fill=true";
        let r = server.get(url).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["x-tickvault-fill"],
            "requests=2; rows=19; chunks=1; failures=0"
        );
        assert_eq!(r.text().await.unwrap().lines().count(), 1 + 19);
        let r = server.get(url).await;
        assert_eq!(
            r.headers()["x-tickvault-fill"],
            "requests=0; rows=0; chunks=0; failures=0"
        );
        // A partial hit fetches only the days not held.
        let r = server
            .get("/v1/bars/MSFT?start=2020-12-28&end=2021-02-01&fill=true")
            .await;
        assert_eq!(
            r.headers()["x-tickvault-fill"],
            "requests=2; rows=4; chunks=1; failures=0"
        );

        // A forced range is fetched again even though it is stored.
        let run = json(
            post(
                "/v1/symbols/AAPL/backfill?start=2021-01-04&end=2021-01-09",
                None,
            )
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(run["requests"], 2);
        assert_eq!(run["rows"], 5);

        // Stop tracking: the bars stay; a second removal is a clear 404.
        let r = server
            .client
            .delete(server.url("/v1/symbols/AAPL"))
            .send()
            .await
            .unwrap();
        assert_eq!(json(r).await["tracked"], false);
        let r = server
            .client
            .delete(server.url("/v1/symbols/AAPL"))
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::NOT_FOUND, "not_tracked").await;
        let listed = json(server.get("/v1/symbols").await).await;
        assert_eq!(listed[0]["tracked"], false);
        assert_eq!(listed[0]["rows"], 5402);
        let r = server
            .client
            .delete(server.url("/v1/bars/AAPL?interval=1d&start=2021-01-05"))
            .send()
            .await
            .unwrap();
        let message = expect_error(r, StatusCode::BAD_REQUEST, "invalid_parameter").await;
        assert!(message.starts_with("end"), "{message}");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_library_loader_fills_only_what_is_missing() {
    let data = daily_data();
    let fake = FakeUpstream::start(data.clone()).await.unwrap();
    let store = memory_store().await;
    let handle = ProviderHandle::new(
        "up",
        provider::build(&adapter(ProviderKind::Polygon, &fake)).unwrap(),
        fast_policy(),
    );
    let options = SyncOptions {
        default_provider: Some("up".into()),
        ..options()
    };
    let syncer = Syncer::open(Arc::clone(&store), vec![handle], options)
        .await
        .unwrap();
    let request = tickvault::LoadRequest {
        symbols: vec!["AAPL".into(), "MSFT".into()],
        interval: Interval::D1,
        start: Some(day(2021, 3, 1)),
        end: Some(day(2021, 4, 1)),
        columns: None,
        adjustment: tickvault::adjust::Adjustment::NONE,
    };
    let (filled, stream) = syncer.load_bars(&request, true).await.unwrap();
    let filled = filled.unwrap();
    // A chart each, and each symbol's splits and dividends (two Polygon endpoints).
    assert_eq!((filled.requests, filled.rows), (2 + 4, 2 * 23));
    assert_eq!(filled.action_requests, 4);
    let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(stream)
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2 * 23);
    // Nothing is missing now; a wider range fetches only the new part.
    let (again, _) = syncer.load_bars(&request, true).await.unwrap();
    assert_eq!(again.unwrap().requests, 0);
    let wider = tickvault::LoadRequest {
        end: Some(day(2021, 4, 8)),
        ..request
    };
    let (more, _) = syncer.load_bars(&wider, true).await.unwrap();
    let more = more.unwrap();
    assert_eq!((more.requests, more.rows), (2, 2 * 4));
    assert_eq!(syncer.reads_of(&Symbol::new("AAPL").unwrap()), 3);
}

#[tokio::test]
async fn the_live_updater_puts_the_newest_bars_in_the_live_tier() {
    // 30 seconds into a minute, so the last whole minute is the one before.
    let now = T0 + 30_000_000;
    let minute = 60_000_000;
    let last = now - now.rem_euclid(minute) - minute;
    let bars: Vec<RawBar> = (0..30)
        .map(|i| {
            let close = 100.0 + i as f64;
            RawBar {
                ts: last - (29 - i) * minute,
                open: close,
                high: close + 1.0,
                low: close - 1.0,
                close,
                volume: 10.0,
                vwap: None,
                trades: None,
            }
        })
        .collect();
    let mut data = FakeData::new();
    data.insert("BTC-USD", Interval::M1, bars);
    let fake = FakeUpstream::start(data).await.unwrap();
    let wal = tempfile::tempdir().unwrap();
    let store_options = tickvault::StoreOptions {
        live: Some(tickvault::live::LiveOptions {
            wal_dir: wal.path().to_path_buf(),
            max_bytes: 64 << 20,
            transfer_bytes: 32 << 20,
        }),
        clock: ManualClock::new(now),
        ..Default::default()
    };
    let store = Arc::new(
        Store::open_with_options("memory://", &store_options)
            .await
            .unwrap(),
    );
    let syncer = syncer(Arc::clone(&store), &fake, ProviderKind::Yahoo).await;
    syncer
        .track(SymbolSpec {
            symbol: Symbol::new("BTC-USD").unwrap(),
            intervals: vec![Interval::M1],
            provider: "up".into(),
            since: now - 10 * DAY,
            calendar: Calendar::AlwaysOpen,
            added_at: 0,
        })
        .await
        .unwrap();
    let run = syncer.live_update().await.unwrap();
    assert_eq!((run.requests, run.rows), (1, 30), "{run:?}");
    assert_eq!(store.live().unwrap().read().rows(), 30);
    let latest = store
        .query("SELECT symbol, price, arrow_cast(ts, 'Int64') FROM latest")
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&latest)
        .unwrap()
        .to_string();
    assert!(text.contains("BTC-USD") && text.contains("129.0"), "{text}");
    assert!(text.contains(&last.to_string()), "{text}");
}
