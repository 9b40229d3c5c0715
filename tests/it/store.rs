//! Writes, upserts, compaction and reopening, against an in-memory model.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use proptest::prelude::*;
use tickvault::{LoadRequest, Store};

use crate::common::*;

#[tokio::test]
async fn upsert_last_write_wins_across_writes_and_within_one() {
    let store = Store::open("memory://").await.unwrap();
    let t = T2021;
    store
        .write(&bars(&[
            row("AAPL", "1d", t, 1.0),
            row("AAPL", "1d", t + DAY, 2.0),
        ]))
        .await
        .unwrap();
    store
        .write(&bars(&[
            row("AAPL", "1d", t + DAY, 3.0),
            row("AAPL", "1d", t + DAY, 4.0),
            row("AAPL", "1d", t + 2 * DAY, 5.0),
        ]))
        .await
        .unwrap();
    let got = contents(&store).await;
    let want: BTreeMap<_, _> = [(t, 1.0), (t + DAY, 4.0), (t + 2 * DAY, 5.0)]
        .into_iter()
        .map(|(ts, c)| (("AAPL".to_string(), "1d".to_string(), ts), c))
        .collect();
    assert_eq!(got, want);
    // The overlapping write replaced the first file instead of adding a second one.
    assert_eq!(store.catalog().snapshot().file_count(), 1);
    assert!(store.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn appends_add_files_and_compaction_merges_them() {
    let store = Store::open("memory://").await.unwrap();
    for i in 0..6 {
        store
            .write(&bars(&[row(
                "X",
                "1m",
                T2021 + i * MINUTE,
                i as f64 + 10.0,
            )]))
            .await
            .unwrap();
    }
    assert_eq!(store.catalog().snapshot().file_count(), 6);
    let before = contents(&store).await;
    let summary = store.compact().await.unwrap();
    assert_eq!(summary.partitions_compacted, 1);
    assert_eq!(summary.files_removed, 6);
    assert_eq!(store.catalog().snapshot().file_count(), 1);
    assert_eq!(contents(&store).await, before);
    // Nothing left to do the second time.
    assert_eq!(store.compact().await.unwrap().partitions_compacted, 0);
}

#[tokio::test]
async fn loader_orders_by_ts_then_symbol_and_projects() {
    let store = Store::open("memory://").await.unwrap();
    let mut rows = Vec::new();
    for (i, sym) in ["MSFT", "AAPL", "BRK.B"].iter().enumerate() {
        for d in 0..400 {
            // Years 2021 and 2022: files per symbol and year.
            rows.push(row(
                sym,
                "1d",
                T2021 + d * DAY,
                (i * 1000 + d as usize) as f64 + 1.0,
            ));
        }
    }
    store.write(&bars(&rows)).await.unwrap();
    let req = LoadRequest {
        symbols: vec!["AAPL".into(), "MSFT".into()],
        interval: "1d".parse().unwrap(),
        start: Some(T2021 + 300 * DAY),
        end: Some(T2021 + 380 * DAY),
        columns: Some(vec!["ts".into(), "symbol".into(), "close".into()]),
        adjustment: tickvault::adjust::Adjustment::NONE,
    };
    let batches = store.load_bars_collect(&req).await.unwrap();
    let mut seen = Vec::new();
    for b in &batches {
        assert_eq!(b.num_columns(), 3);
        let ts = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        let sym = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        for i in 0..b.num_rows() {
            seen.push((ts.value(i), sym.value(i).to_string()));
        }
    }
    let mut want = Vec::new();
    for d in 300..380 {
        for s in ["AAPL", "MSFT"] {
            want.push((T2021 + d * DAY, s.to_string()));
        }
    }
    assert_eq!(seen, want);
    // The plan merges the per-symbol streams instead of sorting everything.
    let plan = store
        .query("EXPLAIN SELECT ts, symbol FROM bars WHERE symbol IN ('AAPL','MSFT') ORDER BY ts, symbol")
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan)
        .unwrap()
        .to_string();
    assert!(text.contains("SortPreservingMergeExec"), "{text}");
    assert!(!text.contains("SortExec"), "{text}");
}

#[tokio::test]
async fn reopen_sees_every_commit() {
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open_with(Arc::clone(&object_store), "mem")
        .await
        .unwrap();
    for i in 0..150 {
        store
            .write(&bars(&[row("S", "1d", T2021 + i * DAY, i as f64 + 1.0)]))
            .await
            .unwrap();
    }
    let before = contents(&store).await;
    let reopened = Store::open_with(object_store, "mem").await.unwrap();
    assert_eq!(
        reopened.catalog().snapshot().seq,
        store.catalog().snapshot().seq
    );
    assert_eq!(contents(&reopened).await, before);
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Row>),
    Compact,
    Reopen,
}

pub(crate) fn arb_row() -> impl Strategy<Value = Row> {
    (
        prop::sample::select(vec!["A", "B/C", "^X"]),
        prop::sample::select(vec!["1m", "1d"]),
        -3i64..4,
        1u8..100,
    )
        .prop_map(|(s, i, k, c)| {
            // Around a year boundary, so writes span two partitions.
            let base = T2021 - 3 * DAY;
            let step = if i == "1m" { MINUTE * 720 } else { DAY };
            row(s, i, base + k * step, c as f64)
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(arb_row(), 1..12).prop_map(Op::Write),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random writes (overlapping keys), compactions and reopenings: every query equals a
    /// BTreeMap model where the last write of a key wins.
    #[test]
    fn store_matches_model(ops in prop::collection::vec(arb_op(), 1..10)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let mut store = Store::open_with(Arc::clone(&object_store), "mem").await.unwrap();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Write(rows) => {
                        store.write(&bars(&rows)).await.unwrap();
                        for r in rows {
                            model.insert((r.0, r.1, r.2), r.3);
                        }
                    }
                    Op::Compact => { store.compact().await.unwrap(); }
                    Op::Reopen => {
                        store = Store::open_with(Arc::clone(&object_store), "mem").await.unwrap();
                    }
                }
                prop_assert_eq!(&contents(&store).await, &model);
                prop_assert_eq!(series_summary(&store).await, model_summary(&model));
                // Without a live tier every range read takes the short path.
                let (short, asked) = check_range_reads(&store, &model).await;
                prop_assert_eq!(short, asked);
                let (merged, asked) = check_loads(&store, &model).await;
                prop_assert_eq!(merged, asked);
                let report = store.check().await.unwrap();
                prop_assert!(report.is_clean(), "{:?}", report.problems);
            }
            Ok(())
        })?;
    }
}

/// File paths under bars/ in an object store.
async fn data_files(object_store: &Arc<dyn ObjectStore>) -> Vec<String> {
    use futures::TryStreamExt;
    let mut files: Vec<String> = object_store
        .list(Some(&"bars".into()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    // The table's log lives under `bars/` too.
    files.retain(|f| !f.starts_with("bars/_delta_log/"));
    files.sort();
    files
}

#[tokio::test]
async fn spilling_writer_is_one_commit_and_last_push_wins() {
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open_with(Arc::clone(&object_store), "mem")
        .await
        .unwrap();
    store
        .write(&bars(&[
            row("A", "1d", T2021, 1.0),
            row("A", "1d", T2021 + 5 * DAY, 1.0),
        ]))
        .await
        .unwrap();
    let seq = store.catalog().snapshot().seq;

    let mut writer = store.writer("import").with_buffer_rows(2);
    // Each push spills (2 rows): A overlaps the stored file and itself across pushes; B is new.
    writer
        .push(vec![series(&[
            row("A", "1d", T2021, 2.0),
            row("A", "1d", T2021 + DAY, 2.0),
        ])])
        .await
        .unwrap();
    writer
        .push(vec![
            series(&[row("A", "1d", T2021 + DAY, 3.0)]),
            series(&[row("B", "1d", T2021, 3.0)]),
        ])
        .await
        .unwrap();
    writer
        .push(vec![series(&[
            row("B", "1d", T2021 + DAY, 4.0),
            row("B", "1d", T2021 + 2 * DAY, 4.0),
        ])])
        .await
        .unwrap();
    writer
        .push(vec![series(&[row("B", "1d", T2021 + 2 * DAY, 5.0)])])
        .await
        .unwrap();
    // Nothing is visible before the commit.
    assert_eq!(store.catalog().snapshot().seq, seq);
    writer.finish().await.unwrap();
    assert_eq!(store.catalog().snapshot().seq.0, seq.0 + 1, "one commit");

    let closes: Vec<(String, i64, f64)> = contents(&store)
        .await
        .into_iter()
        .map(|((s, _, ts), c)| (s, (ts - T2021) / DAY, c))
        .collect();
    assert_eq!(
        closes,
        vec![
            ("A".into(), 0, 2.0),
            ("A".into(), 1, 3.0),
            ("A".into(), 5, 1.0),
            ("B".into(), 0, 3.0),
            ("B".into(), 1, 4.0),
            ("B".into(), 2, 5.0),
        ]
    );
    // Spilled inputs that were merged are gone; only referenced files and the replaced original
    // (kept for GC's grace period) remain.
    let referenced: Vec<String> = store
        .catalog()
        .snapshot()
        .files()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(referenced.len(), 2);
    assert_eq!(data_files(&object_store).await.len(), 3);
    assert!(store.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn aborted_writer_leaves_nothing_behind() {
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open_with(Arc::clone(&object_store), "mem")
        .await
        .unwrap();
    let mut writer = store.writer("import").with_buffer_rows(1);
    writer
        .push(vec![series(&[
            row("A", "1d", T2021, 1.0),
            row("A", "1d", T2021 + DAY, 1.0),
        ])])
        .await
        .unwrap();
    assert_eq!(data_files(&object_store).await.len(), 1, "spilled");
    writer.abort().await;
    assert!(data_files(&object_store).await.is_empty());
    assert_eq!(store.catalog().snapshot().seq.0, 0);
}

#[tokio::test]
async fn library_write_refuses_a_bad_row_and_applies_nothing() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    let before = contents(&store).await;
    for (bad, want) in [
        (
            row("A", "1d", T2021 + 3_600_000_000, 2.0),
            "row 2: timestamp of a 1d bar must be at 00:00 UTC",
        ),
        (
            row("A", "2d", T2021, 2.0),
            "row 2: unknown timeframe \"2d\"",
        ),
        (row("", "1d", T2021, 2.0), "row 2: symbol \"\""),
        (
            row("B", "1d", T2021, f64::NAN),
            "row 2: open is not a finite number",
        ),
    ] {
        let err = store
            .write(&bars(&[row("A", "1d", T2021 + DAY, 9.0), bad]))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "{err}");
    }
    assert_eq!(contents(&store).await, before);
}
