//! Views shipped in `sql/`, compiled into the binary and registered when a session starts.

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;

use super::Result;

/// Every `sql/*.sql` file, in name order: (file name, text).
pub const SQL_FILES: &[(&str, &str)] = &[
    (
        "01_bars_daily.sql",
        include_str!("../../sql/01_bars_daily.sql"),
    ),
    (
        "02_daily_returns.sql",
        include_str!("../../sql/02_daily_returns.sql"),
    ),
    (
        "03_daily_vwap.sql",
        include_str!("../../sql/03_daily_vwap.sql"),
    ),
];

/// Runs every statement of every file: these are trusted, so DDL is allowed here.
pub(super) async fn register(ctx: &SessionContext) -> Result<()> {
    for (name, text) in SQL_FILES {
        let statements = DFParser::parse_sql(text)
            .map_err(|e| datafusion::error::DataFusionError::Plan(format!("sql/{name}: {e}")))?;
        for statement in statements {
            let plan = ctx.state().statement_to_plan(statement).await?;
            ctx.execute_logical_plan(plan).await?;
        }
    }
    Ok(())
}
