//! The corporate actions table on a real S3 server: commits with create-only puts, a reader
//! that follows them, racing writers that both land, and what opening costs in requests (never
//! a LIST).

use std::sync::Arc;

use tickvault::actions::{ActionsTable, CorporateAction, parse_ex_date};
use tickvault::model::Symbol;
use tickvault::storage::StoreSettings;
use tickvault::{Store, StoreOptions};

use super::moto;

fn split(sym: &str, date: &str, ratio: f64) -> CorporateAction {
    CorporateAction::split(
        Symbol::new(sym).unwrap(),
        parse_ex_date(date).unwrap(),
        ratio,
        "import",
        1,
    )
    .unwrap()
}

fn options(endpoint: &str, read_only: bool) -> StoreOptions {
    StoreOptions {
        storage: StoreSettings {
            s3: moto::s3_config(endpoint),
            ..Default::default()
        },
        read_only,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_commit_on_s3_and_a_reader_follows() {
    let server = moto::shared();
    let bucket = server.bucket("actions").await;
    let url = format!("s3://{bucket}/store");
    let writer = Store::open_with_options(&url, &options(&server.endpoint, false))
        .await
        .unwrap();
    let reader = Store::open_with_options(&url, &options(&server.endpoint, true))
        .await
        .unwrap();
    writer
        .actions()
        .upsert(vec![split("AAPL", "2020-08-31", 4.0)])
        .await
        .unwrap();
    // One GET to follow, and the reader has the commit.
    let before = reader.requests();
    reader.actions().refresh().await.unwrap();
    let cost = reader.requests().since(&before);
    assert_eq!(reader.actions().snapshot().len(), 1);
    assert_eq!((cost.gets(), cost.list), (2, 0), "{cost}");
    let before = reader.requests();
    reader.actions().refresh().await.unwrap();
    let idle = reader.requests().since(&before);
    assert_eq!(
        (idle.gets(), idle.total()),
        (1, 1),
        "nothing new: one GET; {idle}"
    );

    // Three processes racing: every upsert survives.
    let a = Arc::new(
        ActionsTable::open(
            moto::open(&server.endpoint, &format!("{bucket}/store")).store,
            false,
        )
        .await
        .unwrap(),
    );
    let other = Store::open_with_options(&url, &options(&server.endpoint, false))
        .await
        .unwrap();
    let (x, y, z) = tokio::join!(
        writer
            .actions()
            .upsert(vec![split("NVDA", "2021-07-20", 4.0)]),
        other
            .actions()
            .upsert(vec![split("TSLA", "2020-08-31", 5.0)]),
        a.upsert(vec![split("GOOG", "2022-07-18", 20.0)]),
    );
    x.unwrap();
    y.unwrap();
    z.unwrap();
    let fresh = Store::open_with_options(&url, &options(&server.endpoint, true))
        .await
        .unwrap();
    assert_eq!(fresh.actions().snapshot().len(), 4);
    assert_eq!(fresh.actions().version(), 4);
    let sql = fresh
        .query("SELECT symbol FROM corporate_actions ORDER BY symbol")
        .await
        .unwrap();
    assert_eq!(sql.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_store_without_actions_costs_two_gets_and_never_lists() {
    let server = moto::shared();
    let bucket = server.bucket("noactions").await;
    let opened = moto::open(&server.endpoint, &bucket);
    let table = ActionsTable::open(opened.store, true).await.unwrap();
    let c = opened.requests.snapshot();
    assert_eq!(
        (c.list, c.gets(), c.total()),
        (0, 2, 2),
        "the checkpoint pointer, version 1: {c}"
    );
    assert!(table.snapshot().is_empty());
}
