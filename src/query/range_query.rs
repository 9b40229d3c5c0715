//! Recognising a key-range read in SQL text: one series over a time range,
//!
//! ```sql
//! SELECT <* | columns> FROM bars
//! WHERE symbol = 'AAPL' [AND timeframe = '1m'] [AND ts >= '…' AND ts < '…' …]
//! [ORDER BY ts [ASC]] [LIMIT n]
//! ```
//!
//! the question a store of bars is asked most. Such a query is answered straight from the catalog
//! and the Parquet pages (`range_read`), skipping DataFusion's planner, which costs more than
//! reading a day of bars does. Recognition is strict on purpose: anything not exactly of this
//! shape (an alias, a function, `OR`, a typed literal, a join, an unusual clause) returns `None`
//! and the query goes to DataFusion, so the short path can only ever answer a query whose meaning
//! is plain.

use std::sync::LazyLock;

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, LimitClause, OrderByKind, Query, Select, SelectItem, SetExpr, Statement,
    Value, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::model::{BARS_SCHEMA, COL_SYMBOL, COL_TIMEFRAME, COL_TS};

/// One series, a half-open time range, some columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RangeQuery {
    pub symbol: String,
    /// `None`: every interval the symbol has.
    pub interval: Option<String>,
    /// Inclusive, microseconds since the epoch.
    pub start: Option<i64>,
    /// Exclusive.
    pub end: Option<i64>,
    /// Indices into `BARS_SCHEMA`, in output order.
    pub columns: Vec<usize>,
    pub limit: Option<usize>,
}

/// The shape every recognised query has once its projection, WHERE, ORDER BY and LIMIT are
/// taken out: comparing against it rejects every clause this module does not interpret
/// (DISTINCT, GROUP BY, joins, CTEs, ...) without listing them, including clauses a newer
/// parser adds.
static TEMPLATE: LazyLock<Query> =
    LazyLock::new(|| parse_query("SELECT * FROM bars").expect("the template parses as a query"));

fn parse_query(sql: &str) -> Option<Query> {
    // DataFusion parses with the generic dialect by default, so both see the same tree.
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql).ok()?;
    match (statements.pop(), statements.is_empty()) {
        (Some(Statement::Query(query)), true) => Some(*query),
        _ => None,
    }
}

/// Longer text is never a range read. Checked before parsing: this runs before the planner's
/// limits (`limits`), and a short text cannot nest deep enough to strain a stack.
const MAX_RANGE_SQL_BYTES: usize = 4096;

/// The range read `sql` asks for, or `None` if it is anything else.
pub(super) fn recognize(sql: &str) -> Option<RangeQuery> {
    if sql.len() > MAX_RANGE_SQL_BYTES {
        return None;
    }
    let query = parse_query(sql)?;
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let template = &*TEMPLATE;
    let SetExpr::Select(template_select) = template.body.as_ref() else {
        unreachable!("the template is a SELECT");
    };

    let rest = Query {
        body: template.body.clone(),
        order_by: None,
        limit_clause: None,
        ..query.clone()
    };
    let select_rest = Select {
        projection: template_select.projection.clone(),
        selection: None,
        ..select.as_ref().clone()
    };
    if rest != *template || select_rest != **template_select {
        return None;
    }

    let columns = projection(&select.projection)?;
    let mut filter = Filter::default();
    for conjunct in conjuncts(select.selection.as_ref()?) {
        filter.add(conjunct)?;
    }
    if let Some(order_by) = &query.order_by {
        ordered_by_ts(&order_by.kind, order_by.interpolate.is_none())?;
    }
    let limit = match &query.limit_clause {
        None => None,
        Some(LimitClause::LimitOffset {
            limit: Some(limit),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => Some(number(limit)?),
        Some(_) => return None,
    };
    Some(RangeQuery {
        symbol: filter.symbol?,
        interval: filter.interval,
        start: filter.start,
        end: filter.end,
        columns,
        limit,
    })
}

/// `*` or a list of distinct bare column names.
fn projection(items: &[SelectItem]) -> Option<Vec<usize>> {
    if let [SelectItem::Wildcard(options)] = items {
        return (*options == WildcardAdditionalOptions::default())
            .then(|| (0..BARS_SCHEMA.fields().len()).collect());
    }
    let mut columns = Vec::with_capacity(items.len());
    for item in items {
        let SelectItem::UnnamedExpr(expr) = item else {
            return None;
        };
        let index = BARS_SCHEMA.index_of(&column_name(expr)?).ok()?;
        if columns.contains(&index) {
            return None;
        }
        columns.push(index);
    }
    Some(columns)
}

/// A column reference's name as DataFusion resolves it: unquoted names fold to lower case.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) if ident.quote_style.is_none() => Some(ident.value.to_lowercase()),
        Expr::Identifier(ident) if ident.quote_style == Some('"') => Some(ident.value.clone()),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn number(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, false) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The terms of a chain of ANDs.
fn conjuncts(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut terms = conjuncts(left);
            terms.extend(conjuncts(right));
            terms
        }
        Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// `ORDER BY ts` or `ORDER BY ts ASC` (nulls placement is moot: ts is never null).
fn ordered_by_ts(kind: &OrderByKind, plain: bool) -> Option<()> {
    let OrderByKind::Expressions(exprs) = kind else {
        return None;
    };
    let [only] = exprs.as_slice() else {
        return None;
    };
    let ascending = only.options.asc != Some(false);
    (plain && ascending && only.with_fill.is_none() && column_name(&only.expr)? == COL_TS)
        .then_some(())
}

/// A string as a `ts` bound, cast exactly as DataFusion casts the literal in `ts >= '...'`.
fn ts_literal(text: &str) -> Option<i64> {
    let ts_type = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let cast = cast(&StringArray::from(vec![text]), &ts_type).ok()?;
    let ts = cast.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
    ts.is_valid(0).then(|| ts.value(0))
}

#[derive(Debug, Default)]
struct Filter {
    symbol: Option<String>,
    interval: Option<String>,
    start: Option<i64>,
    end: Option<i64>,
}

impl Filter {
    /// Takes in one term of the WHERE clause; `None` if it is not a key comparison.
    fn add(&mut self, term: &Expr) -> Option<()> {
        match term {
            Expr::BinaryOp { left, op, right } => {
                let (column, op, literal) = match (column_name(left), string_literal(right)) {
                    (Some(column), Some(literal)) => (column, op.clone(), literal),
                    _ => (column_name(right)?, flipped(op)?, string_literal(left)?),
                };
                self.compare(&column, &op, literal)
            }
            Expr::Between {
                expr,
                negated: false,
                low,
                high,
            } if column_name(expr)? == COL_TS => {
                self.lower(ts_literal(string_literal(low)?)?);
                self.upper(ts_literal(string_literal(high)?)?.checked_add(1)?);
                Some(())
            }
            _ => None,
        }
    }

    fn compare(&mut self, column: &str, op: &BinaryOperator, literal: &str) -> Option<()> {
        let key = match column {
            COL_SYMBOL => &mut self.symbol,
            COL_TIMEFRAME => &mut self.interval,
            COL_TS => {
                let ts = ts_literal(literal)?;
                match op {
                    BinaryOperator::Eq => {
                        self.lower(ts);
                        self.upper(ts.checked_add(1)?);
                    }
                    BinaryOperator::GtEq => self.lower(ts),
                    BinaryOperator::Gt => self.lower(ts.checked_add(1)?),
                    BinaryOperator::Lt => self.upper(ts),
                    BinaryOperator::LtEq => self.upper(ts.checked_add(1)?),
                    _ => return None,
                }
                return Some(());
            }
            _ => return None,
        };
        // One equality per key column: a second one is left to DataFusion.
        if *op != BinaryOperator::Eq || key.is_some() {
            return None;
        }
        *key = Some(literal.to_string());
        Some(())
    }

    fn lower(&mut self, ts: i64) {
        self.start = Some(self.start.map_or(ts, |s| s.max(ts)));
    }

    fn upper(&mut self, ts: i64) {
        self.end = Some(self.end.map_or(ts, |e| e.min(ts)));
    }
}

/// The operator that keeps a comparison's meaning when its operands swap sides.
fn flipped(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: &str = "SELECT * FROM bars WHERE symbol = 'AAPL' AND timeframe = '1m' \
                       AND ts >= '2022-06-15T00:00:00Z' AND ts < '2022-06-16T00:00:00Z' ORDER BY ts";
    const JUNE_15: i64 = 1_655_251_200_000_000;
    const JUNE_16: i64 = 1_655_337_600_000_000;

    #[test]
    fn recognises_a_one_day_read() {
        let q = recognize(DAY).expect("recognised");
        assert_eq!(q.symbol, "AAPL");
        assert_eq!(q.interval.as_deref(), Some("1m"));
        assert_eq!((q.start, q.end), (Some(JUNE_15), Some(JUNE_16)));
        assert_eq!(
            q.columns,
            (0..BARS_SCHEMA.fields().len()).collect::<Vec<_>>()
        );
        assert_eq!(q.limit, None);
    }

    #[test]
    fn reads_columns_bounds_and_limits() {
        let q = recognize(
            "select TS, close from bars where '2022-06-16' > ts and (timeframe = '1m' \
             and symbol = 'BRK.B') and ts between '2022-06-15' and '2022-06-20' limit 10",
        )
        .expect("recognised");
        assert_eq!(q.columns, vec![2, 6]);
        assert_eq!((q.start, q.end), (Some(JUNE_15), Some(JUNE_16)));
        assert_eq!(q.symbol, "BRK.B");
        assert_eq!(q.limit, Some(10));
        let q = recognize(
            "SELECT ts FROM bars WHERE symbol = 'X' AND timeframe = '1d' AND ts > '2022-06-15' \
             AND ts <= '2022-06-15'",
        )
        .expect("recognised");
        assert_eq!((q.start, q.end), (Some(JUNE_15 + 1), Some(JUNE_15 + 1)));
        let open = recognize("SELECT ts FROM bars WHERE symbol = 'X' AND timeframe = '1d'")
            .expect("recognised");
        assert_eq!((open.start, open.end), (None, None));
        let every_interval =
            recognize("SELECT * FROM bars WHERE symbol = 'X'").expect("recognised");
        assert_eq!(every_interval.interval, None);
    }

    #[test]
    fn leaves_everything_else_to_datafusion() {
        for sql in [
            "SELECT * FROM bars WHERE timeframe = '1m' AND ts > '2022-01-01'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' OR symbol = 'Y'",
            "SELECT * FROM bars WHERE symbol = 'X' AND symbol = 'Y' AND timeframe = '1m'",
            "SELECT * FROM bars WHERE symbol IN ('X') AND timeframe = '1m'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' AND close > 1",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' AND ts > now()",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' AND ts > TIMESTAMP '2022-01-01'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' AND ts > 'not a time'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' AND ts NOT BETWEEN '2022-01-01' AND '2022-02-01'",
            "SELECT * FROM bars WHERE symbol = \"X\" AND timeframe = '1m'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' ORDER BY ts DESC",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' ORDER BY close",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' ORDER BY ts, symbol",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' LIMIT 5 OFFSET 2",
            "SELECT DISTINCT * FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT ts AS t FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT ts, ts FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT bars.ts FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT \"TS\" FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * EXCLUDE (vwap) FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * FROM bars b WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * FROM daily WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * FROM bars, bars b2 WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' GROUP BY ts",
            "WITH bars AS (SELECT 1) SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' UNION ALL SELECT * FROM bars",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m'; SELECT 1",
            "EXPLAIN SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m'",
            "SELECT * FROM bars WHERE symbol = 'X' AND timeframe = '1m' AND ts > 1",
        ] {
            assert_eq!(recognize(sql), None, "{sql}");
        }
    }
}
