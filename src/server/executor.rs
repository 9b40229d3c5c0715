//! Queries run on their own tokio runtime, apart from the one that serves HTTP.
//!
//! DataFusion's operators are CPU-bound and yield rarely; on the server's runtime a few heavy
//! queries would occupy every worker and `/health`, `/v1/status` and ingest would wait for
//! them. Here a query is planned, run and encoded on the query runtime, and only the encoded
//! chunks cross a small channel; the operating system shares the cores between the two
//! runtimes' threads.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;

/// Items in flight between a query and its response: enough to overlap the two, small enough
/// that a slow client holds back the query instead of filling memory.
const CHANNEL_ITEMS: usize = 2;

/// What a query task starts with: the stream of body items, or an error known before any
/// (which still gets its own status code).
pub(super) type Started<T> = Result<BoxStream<'static, T>, ApiError>;

pub(super) struct QueryExecutor {
    /// `Option` so `Drop` can take it: a runtime cannot be dropped inside another one.
    runtime: Option<Runtime>,
    running: Arc<AtomicU64>,
}

impl QueryExecutor {
    /// A runtime with one worker per core, on stacks deep enough for any SQL within
    /// `query::limits` (tokio's default 2 MiB overflowed at 900 nested terms).
    pub(super) fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_stack_size(crate::query::limits::QUERY_STACK_BYTES)
            .thread_name("tickvault-query")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            running: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Query tasks alive on the query runtime (starting or producing items).
    pub(super) fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Runs `start` on the query runtime, then pulls its stream there. The caller gets the
    /// stream of the items once `start` has succeeded; dropping either the pending call or the
    /// stream cancels the task, whether it is still starting or computing the next item.
    pub(super) async fn execute<T, F>(&self, start: F) -> Result<BoxStream<'static, T>, ApiError>
    where
        F: Future<Output = Started<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (started_tx, started_rx) = oneshot::channel();
        let (item_tx, item_rx) = mpsc::channel(CHANNEL_ITEMS);
        let running = RunningGuard::new(Arc::clone(&self.running));
        self.runtime().spawn(async move {
            let _running = running;
            let mut started_tx = started_tx;
            let started = tokio::select! {
                started = start => started,
                () = started_tx.closed() => return,
            };
            let mut items = match started {
                Ok(items) => items,
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                    return;
                }
            };
            if started_tx.send(Ok(())).is_ok() {
                forward(&mut items, &item_tx).await;
            }
        });
        started_rx
            .await
            .map_err(|_| ApiError::internal("the query task ended before it started"))??;
        let items = futures::stream::unfold(item_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(items.boxed())
    }

    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("runtime lives until drop")
    }
}

/// Sends every item until the stream ends or the receiver goes away; the receiver going away
/// is noticed while an item is being computed, which cancels the query.
async fn forward<T>(items: &mut BoxStream<'static, T>, tx: &mpsc::Sender<T>) {
    loop {
        let next = tokio::select! {
            next = items.next() => next,
            () = tx.closed() => return,
        };
        let Some(item) = next else { return };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Counts a query task from spawn to end, however it ends.
struct RunningGuard(Arc<AtomicU64>);

impl RunningGuard {
    fn new(counter: Arc<AtomicU64>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// `count` numbers (endless for `None`), each computed on the query runtime.
    fn counting(count: Option<u64>) -> BoxStream<'static, u64> {
        futures::stream::iter(0..count.unwrap_or(u64::MAX))
            .then(|n| async move {
                tokio::task::yield_now().await;
                n
            })
            .boxed()
    }

    async fn wait_until_idle(executor: &QueryExecutor) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while executor.running() > 0 {
            assert!(Instant::now() < deadline, "the query task kept running");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn every_item_arrives_in_order_and_the_task_ends() {
        let executor = QueryExecutor::new().unwrap();
        let items = executor
            .execute(async { Ok(counting(Some(100))) })
            .await
            .unwrap();
        let items: Vec<u64> = items.collect().await;
        assert_eq!(items, (0..100).collect::<Vec<_>>());
        wait_until_idle(&executor).await;
    }

    #[tokio::test]
    async fn errors_before_the_body_reach_the_caller() {
        let executor = QueryExecutor::new().unwrap();
        let e = executor
            .execute(async { Started::<u64>::Err(ApiError::internal("no plan")) })
            .await
            .err()
            .expect("an error");
        assert!(e.message.contains("no plan"), "{}", e.message);
    }

    #[tokio::test]
    async fn dropping_the_stream_cancels_an_endless_query() {
        let executor = QueryExecutor::new().unwrap();
        let mut items = executor
            .execute(async { Ok(counting(None)) })
            .await
            .unwrap();
        assert_eq!(items.next().await, Some(0));
        assert_eq!(executor.running(), 1);
        drop(items);
        wait_until_idle(&executor).await;
    }

    #[tokio::test]
    async fn dropping_the_caller_cancels_a_query_still_starting() {
        let executor = QueryExecutor::new().unwrap();
        let starting = executor.execute(async {
            std::future::pending::<()>().await;
            Ok(counting(None))
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), starting)
                .await
                .is_err()
        );
        wait_until_idle(&executor).await;
    }

    #[test]
    fn the_executor_drops_inside_a_runtime() {
        let outer = tokio::runtime::Runtime::new().unwrap();
        outer.block_on(async { drop(QueryExecutor::new().unwrap()) });
    }
}
