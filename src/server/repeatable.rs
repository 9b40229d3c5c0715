//! Whether a query gives the same answer each time it runs over the same data: not when it
//! calls a function whose value changes between calls (`now()`, `random()`, `uuid()`),
//! directly, in a subquery or through a view; nor when it reads an adjusted view, whose answer
//! changes with the corporate actions, which change without a commit of bars. The result cache
//! keeps only the answers of repeatable queries.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::datasource::view::ViewTable;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

use crate::adjust::view::AdjustedBars;

pub(super) fn is_repeatable(plan: &LogicalPlan) -> bool {
    let mut repeatable = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    repeatable = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            let unrepeatable_view = provider
                .downcast_ref::<ViewTable>()
                .is_some_and(|view| !is_repeatable(view.logical_plan()));
            let adjusted = provider.downcast_ref::<AdjustedBars>().is_some();
            if unrepeatable_view || adjusted {
                repeatable = false;
            }
        }
        Ok(if repeatable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    repeatable
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn repeatable(ctx: &SessionContext, sql: &str) -> bool {
        is_repeatable(ctx.sql(sql).await.unwrap().logical_plan())
    }

    #[tokio::test]
    async fn volatile_and_stable_functions_make_a_query_unrepeatable() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE VIEW clock AS SELECT now() AS t")
            .await
            .unwrap();
        ctx.sql("CREATE VIEW plain AS SELECT 1 AS one")
            .await
            .unwrap();
        assert!(
            repeatable(
                &ctx,
                "SELECT abs(-1), date_trunc('day', TIMESTAMP '2021-01-01')"
            )
            .await
        );
        assert!(repeatable(&ctx, "SELECT * FROM plain").await);
        assert!(!repeatable(&ctx, "SELECT now()").await);
        assert!(!repeatable(&ctx, "SELECT random() AS r").await);
        assert!(!repeatable(&ctx, "SELECT 1 WHERE current_date() > DATE '2000-01-01'").await);
        assert!(!repeatable(&ctx, "SELECT (SELECT random()) AS r").await);
        assert!(!repeatable(&ctx, "SELECT * FROM clock").await);
    }
}
