//! The split scenario end to end: the fake upstream serves a symbol whose prices Yahoo-style are
//! split-adjusted as of the fake's own "now". A backfill before the split, then the fake's now
//! moves past a new 4:1 split; an events refresh learns it without refetching bars, the live
//! updater appends bars after it, and a backfill heals a deleted range before it and fills the
//! rest. Every stored bar must be the bar as traded: one price basis in one series.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Float64Array, TimestampMicrosecondArray};
use chrono::{NaiveDate, TimeZone};
use chrono_tz::America::New_York;
use tickvault::actions::{ActionKind, CorporateAction};
use tickvault::adjust::{Adjust, Adjustment};
use tickvault::calendar::Calendar;
use tickvault::model::{Interval, Symbol};
use tickvault::sync::fake_upstream::{FakeData, FakeUpstream};
use tickvault::sync::provider::{self, ProviderConfig, ProviderKind, RawBar};
use tickvault::sync::registry::SymbolSpec;
use tickvault::sync::syncer::{BackfillRequest, ProviderHandle, SyncOptions, Syncer};
use tickvault::{LoadRequest, Store};

use crate::common::DAY;
use crate::sync::fast_policy;

const HOUR: i64 = 3_600_000_000;
const SYMBOL: &str = "SPLT";
const RATIO: f64 = 4.0;
/// The real move across the split: the first session after it trades 2% higher.
const REAL_MOVE: f64 = 1.02;

fn new_york_date(ts: i64) -> NaiveDate {
    New_York.timestamp_micros(ts).single().unwrap().date_naive()
}

/// Hourly bars as traded, 24/7, from `start` to `end` (exclusive): about 400 before the
/// split's ex-date, about 102 from it on (4:1 and a 2% rise), prices on a 0.25 grid, whole
/// volumes (four times as many shares after the split).
fn raw_series(start: i64, end: i64, ex_date: NaiveDate) -> Vec<RawBar> {
    (0..)
        .map(|i| start + i * HOUR)
        .take_while(|ts| *ts < end)
        .enumerate()
        .map(|(i, ts)| {
            let after = new_york_date(ts) >= ex_date;
            let base = if after {
                400.0 * REAL_MOVE / RATIO
            } else {
                400.0
            };
            let open = base + (i % 7) as f64 * 0.25;
            let volume = 1000.0 + i as f64;
            RawBar {
                ts,
                open,
                high: open + 1.5,
                low: open - 1.0,
                close: open + 0.5,
                volume: if after { volume * RATIO } else { volume },
                vwap: None,
                trades: None,
            }
        })
        .collect()
}

/// Every stored bar of the symbol: ts -> [open, high, low, close, volume].
async fn stored(store: &Store) -> BTreeMap<i64, [f64; 5]> {
    read(store, Adjustment::NONE).await
}

/// Every bar of the symbol as a read with `adjustment` answers it.
async fn read(store: &Store, adjustment: Adjustment) -> BTreeMap<i64, [f64; 5]> {
    let batches = store
        .load_bars_collect(&LoadRequest {
            symbols: vec![SYMBOL.into()],
            interval: Interval::H1,
            start: None,
            end: None,
            columns: Some(
                ["ts", "open", "high", "low", "close", "volume"]
                    .map(String::from)
                    .to_vec(),
            ),
            adjustment,
        })
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for b in &batches {
        let ts = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let f = |c: usize| {
            b.column(c)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let cols = [f(1), f(2), f(3), f(4), f(5)];
        for i in 0..b.num_rows() {
            let row = cols.each_ref().map(|c| c.value(i));
            assert!(out.insert(ts.value(i), row).is_none(), "duplicate bar");
        }
    }
    out
}

fn as_map(bars: &[RawBar]) -> BTreeMap<i64, [f64; 5]> {
    bars.iter()
        .map(|b| (b.ts, [b.open, b.high, b.low, b.close, b.volume]))
        .collect()
}

/// A top of the hour (2025-06-04T15:00Z, a Wednesday), and the split 4:1 whose ex-date is
/// three days before it.
fn hour_and_split() -> (i64, CorporateAction) {
    let t = 1_749_049_200_000_000;
    let ex_date = new_york_date(t - 3 * DAY);
    let split =
        CorporateAction::split(Symbol::new(SYMBOL).unwrap(), ex_date, RATIO, "truth", 0).unwrap();
    (t, split)
}

/// The syncer's clock: twenty minutes into the hour that starts at `t`.
fn syncer_clock(t: i64) -> Option<Arc<dyn tickvault::clock::Clock>> {
    Some(tickvault::clock::ManualClock::new(t + 20 * 60_000_000))
}

/// The Yahoo adapter pointed at `fake`, as provider "up".
fn yahoo(fake: &FakeUpstream) -> ProviderHandle {
    let config = ProviderConfig::new(ProviderKind::Yahoo, Some(fake.base_url()));
    ProviderHandle::new("up", provider::build(&config).unwrap(), fast_policy())
}

/// Tracks the symbol's hourly bars, 24/7, from `since` with provider "up".
async fn track(syncer: &Syncer, since: i64) {
    syncer
        .track(SymbolSpec {
            symbol: Symbol::new(SYMBOL).unwrap(),
            intervals: vec![Interval::H1],
            provider: "up".into(),
            since,
            calendar: Calendar::AlwaysOpen,
            added_at: 0,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_split_after_the_backfill_leaves_one_price_basis_in_the_series() {
    let (t, split) = hour_and_split();
    let ex_date = split.ex_date;
    let since = t - 8 * DAY;
    let raw = raw_series(since, t, ex_date);
    let first_part = t - 5 * DAY;

    // Before the split: the fake has bars up to five days ago and its now is then.
    let mut data = FakeData::new();
    data.insert(
        SYMBOL,
        Interval::H1,
        raw.iter().filter(|b| b.ts < first_part).cloned().collect(),
    );
    data.set_actions(SYMBOL, vec![split.clone()]);
    let fake = FakeUpstream::start(data).await.unwrap();
    fake.set_now(first_part);
    assert!(fake.public_actions(SYMBOL).is_empty());

    let store = Arc::new(Store::open("memory://").await.unwrap());
    let options = SyncOptions {
        // Recent empty hours are asked again (the fake's bars arrive later).
        settle: Duration::from_secs(10 * 24 * 3600),
        // Every backfill reads the events again.
        actions_every: Duration::ZERO,
        clock: syncer_clock(t),
        ..SyncOptions::default()
    };
    let syncer = Syncer::open(Arc::clone(&store), vec![yahoo(&fake)], options)
        .await
        .unwrap();
    track(&syncer, since).await;

    let first = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(first.failures.is_empty(), "{first:?}");
    // One chart request and one events request.
    assert_eq!((first.requests, first.action_requests), (2, 1), "{first:?}");
    assert_eq!(first.rows, 72);
    let before_split: BTreeMap<i64, [f64; 5]> = as_map(&raw)
        .into_iter()
        .filter(|(ts, _)| *ts < first_part)
        .collect();
    assert_eq!(stored(&store).await, before_split);

    // The fake's now passes the split: Yahoo now divides every earlier bar by 4.
    fake.set_data(SYMBOL, Interval::H1, raw.clone());
    fake.set_now(t);
    assert_eq!(fake.public_actions(SYMBOL), vec![split.clone()]);
    let served = fake.split_adjusted_bars(SYMBOL, Interval::H1);
    assert_eq!(served[0].close, raw[0].close / RATIO);

    // An events refresh learns the split without fetching a bar.
    let refresh = syncer
        .backfill(&BackfillRequest {
            range: Some((since, first_part)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (refresh.requests, refresh.action_requests, refresh.rows),
        (1, 1, 0),
        "{refresh:?}"
    );
    assert_eq!(refresh.actions_stored, 1);
    let actions = store.actions().snapshot();
    let known = actions.for_symbol(&Symbol::new(SYMBOL).unwrap());
    assert_eq!(known.len(), 1, "{known:?}");
    assert_eq!(
        (known[0].ex_date, known[0].kind, known[0].ratio),
        (ex_date, ActionKind::Split, Some(RATIO))
    );
    assert_eq!(known[0].source, "up");

    // The live updater appends the last day (after the split) with one chart request.
    let live = syncer.live_update().await.unwrap();
    assert!(live.failures.is_empty(), "{live:?}");
    // The last 24 hours: 23 or 24 whole hours, depending on the minute.
    assert_eq!(live.requests, 1, "{live:?}");
    assert!((23..=24).contains(&live.rows), "{live:?}");

    // Delete a day before the split, then a backfill heals it and fills the rest.
    let deleted = syncer
        .delete_bars(
            &Symbol::new(SYMBOL).unwrap(),
            Interval::H1,
            since + DAY,
            since + 2 * DAY,
        )
        .await
        .unwrap();
    assert_eq!(deleted.rows, 24);
    let heal = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    assert!(heal.failures.is_empty(), "{heal:?}");
    assert_eq!(heal.action_requests, 1, "{heal:?}");
    // At least the deleted day and the hours after the first backfill that the live updater
    // did not bring; the chunk may span stored hours between them (fetched again, the same).
    assert!(
        heal.rows >= 24 + (raw.len() as u64 - 72 - live.rows),
        "{heal:?}"
    );
    eprintln!(
        "split scenario requests per sync: first backfill {} ({} for events), events refresh {} \
         ({}), live update {}, heal and fill {} ({} for events, {} chunks: {:?})",
        first.requests,
        first.action_requests,
        refresh.requests,
        refresh.action_requests,
        live.requests,
        heal.requests,
        heal.action_requests,
        heal.chunks,
        heal.fetched
    );

    // Every stored bar is the bar as traded.
    let all = stored(&store).await;
    let want = as_map(&raw);
    assert_eq!(all.len(), want.len());
    for ((ts, got), (_, traded)) in all.iter().zip(&want) {
        assert_eq!(got, traded, "the bar at {ts} is not as traded");
    }
    // One basis: between consecutive bars the prices move by at most 4% (the wiggle and the
    // real move), across the ex-date once the split's ratio is taken out; two bases would show
    // a move of 4x or 1/4.
    let closes: Vec<(i64, f64)> = all.iter().map(|(ts, r)| (*ts, r[3])).collect();
    for w in closes.windows(2) {
        let (a, b) = (w[0], w[1]);
        let crosses = new_york_date(a.0) < ex_date && new_york_date(b.0) >= ex_date;
        let moved = b.1 / a.1 * if crosses { RATIO } else { 1.0 };
        assert!(
            (moved - 1.0).abs() <= 0.04,
            "a jump of {moved} at {} (crossing the split: {crosses})",
            b.0
        );
    }
    // The splits-adjusted read equals what the fake serves now (every bar before the ex-date
    // divided by 4, its volume times 4). The series is tracked 24/7 so that the sync expects
    // every hour, but the symbol trades in New York, as the fake's Yahoo says: the read dates
    // the ex-date there too.
    store
        .adjuster()
        .set_calendars(Arc::new(|_| Some(Calendar::UsEquity)));
    let served = as_map(&fake.split_adjusted_bars(SYMBOL, Interval::H1));
    let adjusted = read(&store, Adjustment::new(Adjust::Splits, None)).await;
    assert_eq!(adjusted.len(), served.len());
    for ((ts, got), (served_ts, want)) in adjusted.iter().zip(&served) {
        assert_eq!(ts, served_ts);
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-9 * w.abs(),
                "the adjusted bar at {ts} is {got:?}, the fake serves {want:?}"
            );
        }
    }
    // And the split is really in it: the first bar is a quarter of the stored one.
    let first_ts = *all.keys().next().unwrap();
    assert_eq!(adjusted[&first_ts][3], all[&first_ts][3] / RATIO);
}

/// A read-through fill of a range before the tracked `since` still learns the splits after it:
/// Yahoo's bars there are adjusted for a split the tracked range never saw.
#[tokio::test]
async fn a_fill_before_the_tracked_since_stores_bars_as_traded() {
    let (t, split) = hour_and_split();
    let start = t - 8 * DAY;
    let raw = raw_series(start, t, split.ex_date);
    let mut data = FakeData::new();
    data.insert(SYMBOL, Interval::H1, raw.clone());
    data.set_actions(SYMBOL, vec![split]);
    let fake = FakeUpstream::start(data).await.unwrap();
    fake.set_now(t);

    let store = Arc::new(Store::open("memory://").await.unwrap());
    let syncer = Syncer::open(
        Arc::clone(&store),
        vec![yahoo(&fake)],
        SyncOptions {
            clock: syncer_clock(t),
            ..SyncOptions::default()
        },
    )
    .await
    .unwrap();
    // Tracked only from after the split.
    track(&syncer, t - 2 * DAY).await;
    let before = t - 5 * DAY;
    let filled = syncer
        .fill(&[Symbol::new(SYMBOL).unwrap()], Interval::H1, start, before)
        .await
        .unwrap();
    assert!(filled.failures.is_empty(), "{filled:?}");
    let want: BTreeMap<i64, [f64; 5]> = as_map(&raw)
        .into_iter()
        .filter(|(ts, _)| *ts < before)
        .collect();
    assert_eq!(
        stored(&store).await,
        want,
        "bars before the split are stored as traded"
    );
}
