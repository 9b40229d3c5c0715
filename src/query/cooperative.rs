//! Joins yield to the runtime between output batches.
//!
//! DataFusion's `EnsureCooperative` makes scans give up the thread once a task has used its
//! budget, but a join can produce many millions of rows from input it already holds, without
//! polling a scan again: a cross join counted by an aggregate then runs to its end in one poll,
//! and a query past its time limit keeps a core busy although nobody waits for it. Wrapping
//! every join's output in a `CooperativeExec` charges each batch against the task's budget,
//! so such a task yields, and a cancelled query stops at the next batch.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;

#[derive(Debug, Default)]
pub(super) struct YieldInJoins;

impl PhysicalOptimizerRule for YieldInJoins {
    fn name(&self) -> &str {
        "YieldInJoins"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            // Joins are the operators with two inputs (a union's inputs are scans, which
            // already cooperate).
            if node.children().len() == 2 {
                Ok(Transformed::yes(
                    Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
                ))
            } else {
                Ok(Transformed::no(node))
            }
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use futures::StreamExt;

    /// 16 × 10⁸ pairs from memory, counted: seconds of work in one aggregate.
    const CROSS_JOIN: &str = "SELECT count(*) FROM generate_series(1, 40000) a, \
                              generate_series(1, 40000) b WHERE a.value + b.value > 0";

    fn session(yield_in_joins: bool) -> SessionContext {
        // One partition: no exchange tasks, so the first poll runs the plan itself.
        let mut builder = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(1))
            .with_default_features();
        if yield_in_joins {
            builder = builder.with_physical_optimizer_rule(Arc::new(YieldInJoins));
        }
        SessionContext::new_with_state(builder.build())
    }

    /// Whether the first poll of the query gives the thread back before the answer is done.
    async fn first_poll_yields(ctx: &SessionContext, sql: &str) -> bool {
        let mut stream = ctx.sql(sql).await.unwrap().execute_stream().await.unwrap();
        futures::poll!(stream.next()).is_pending()
    }

    #[tokio::test]
    async fn a_join_gives_the_thread_back_between_batches() {
        assert!(first_poll_yields(&session(true), CROSS_JOIN).await);
        let plan = session(true)
            .sql(CROSS_JOIN)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let text = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(false)
            .to_string();
        let join = text.find("NestedLoopJoinExec").expect(&text);
        assert!(
            text[..join].trim_end().ends_with("CooperativeExec"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn without_the_rule_a_small_join_runs_to_its_end_in_one_poll() {
        // The failure the rule prevents, kept small so the test is quick.
        let small = CROSS_JOIN.replace("40000", "2000");
        assert!(!first_poll_yields(&session(false), &small).await);
        assert!(first_poll_yields(&session(true), &small).await);
    }
}
