//! The read-only guard for user SQL, decided from the parsed statement before anything plans
//! it: a query passes, and so do `EXPLAIN` / `DESCRIBE` of one and `SHOW`; every other statement
//! is refused by what it is, whatever DataFusion would make of it or say about it.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;

/// What makes `statement` more than a read (`INSERT INTO`, `COPY`, `SELECT INTO`), or `None`
/// when it only reads.
pub(super) fn refusal(statement: &DfStatement) -> Option<String> {
    match statement {
        DfStatement::Statement(s) => statement_refusal(s),
        // EXPLAIN ANALYZE runs what it explains: the inner statement decides.
        DfStatement::Explain(explain) => refusal(&explain.statement),
        DfStatement::CreateExternalTable(_) => Some("CREATE EXTERNAL TABLE".into()),
        DfStatement::CopyTo(_) => Some("COPY".into()),
        DfStatement::Reset(_) => Some("RESET".into()),
    }
}

fn statement_refusal(statement: &Statement) -> Option<String> {
    match statement {
        Statement::Query(query) => query_refusal(query),
        Statement::Explain { statement, .. } => statement_refusal(statement),
        // DESCRIBE and SHOW only read (DataFusion answers some from information_schema and
        // reports the others as unsupported).
        Statement::ExplainTable { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => None,
        other => Some(leading_keywords(other)),
    }
}

/// A query changes something if any part of it is a statement (`WITH … INSERT`, a subquery
/// that deletes) or a `SELECT … INTO` a new table.
fn query_refusal(query: &Query) -> Option<String> {
    match query.visit(&mut Changes) {
        ControlFlow::Break(what) => Some(what),
        ControlFlow::Continue(()) => None,
    }
}

/// Stops at the first part of a query that is not a read.
struct Changes;

impl Visitor for Changes {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if selects_into(&query.body) {
            return ControlFlow::Break("SELECT INTO".into());
        }
        ControlFlow::Continue(())
    }

    /// The visit starts below the statement, so every statement met is nested in the query.
    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<String> {
        ControlFlow::Break(leading_keywords(statement))
    }
}

/// Whether a query body `SELECT`s `INTO` a table (nested queries are visited on their own).
fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

/// What a statement is, in its own words: its leading SQL keywords (`INSERT INTO`,
/// `CREATE TABLE`, `SET`), at most three.
fn leading_keywords(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text
        .split_whitespace()
        .take(3)
        .take_while(|w| ALL_KEYWORDS.contains(w))
        .collect();
    if words.is_empty() {
        "this statement".into()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParserBuilder;

    use super::refusal;

    fn check(sql: &str) -> Option<String> {
        let mut statements = DFParserBuilder::new(sql)
            .build()
            .unwrap()
            .parse_statements()
            .unwrap();
        assert_eq!(statements.len(), 1, "{sql}");
        refusal(&statements.pop_front().unwrap())
    }

    #[test]
    fn queries_and_what_only_reads_pass() {
        for sql in [
            "SELECT 1",
            "SELECT * FROM bars WHERE symbol = 'A' ORDER BY ts LIMIT 5",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x UNION ALL SELECT 2",
            "SELECT * FROM (SELECT 1) t WHERE 1 IN (SELECT 1)",
            "VALUES (1), (2)",
            // The words DataFusion's refusal would hold, as data and as names.
            "SELECT 'DDL not supported: INSERT INTO bars' AS m",
            "SELECT * FROM \"DML not supported\"",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT count(*) FROM bars",
            "EXPLAIN VERBOSE SELECT 1",
            "DESCRIBE bars",
            "SHOW TABLES",
            "SHOW COLUMNS FROM bars",
            "SHOW ALL",
            "SHOW datafusion.execution.batch_size",
            "SHOW FUNCTIONS",
        ] {
            assert_eq!(check(sql), None, "{sql}");
        }
    }

    #[test]
    fn every_other_statement_is_refused_by_what_it_is() {
        for (sql, what) in [
            (
                "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
                "CREATE EXTERNAL TABLE",
            ),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("COPY bars TO '/tmp/x.parquet'", "COPY"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE TABLE T (a INT)", "CREATE TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("DROP VIEW bars_daily", "DROP VIEW"),
            ("INSERT INTO bars SELECT * FROM bars", "INSERT INTO"),
            ("DELETE FROM bars", "DELETE FROM"),
            ("UPDATE bars SET close = 0", "UPDATE"),
            ("TRUNCATE bars", "TRUNCATE"),
            ("ALTER TABLE bars ADD COLUMN x INT", "ALTER TABLE"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("SET TIME ZONE 'UTC'", "SET TIME ZONE"),
            ("RESET datafusion.execution.batch_size", "RESET"),
            ("PREPARE p AS SELECT 1", "PREPARE"),
            ("EXECUTE p", "EXECUTE"),
            ("START TRANSACTION", "START TRANSACTION"),
            ("USE other", "USE"),
            (
                "CREATE FUNCTION f() RETURNS INT RETURN 1",
                "CREATE FUNCTION",
            ),
            ("SELECT * INTO t FROM bars", "SELECT INTO"),
            ("SELECT 1 UNION SELECT * INTO t FROM bars", "SELECT INTO"),
            (
                "WITH s AS (SELECT 1) INSERT INTO bars SELECT * FROM bars",
                "INSERT INTO",
            ),
            // EXPLAIN of a change is refused: EXPLAIN ANALYZE would run it.
            ("EXPLAIN INSERT INTO bars SELECT * FROM bars", "INSERT INTO"),
            ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
        ] {
            assert_eq!(check(sql).as_deref(), Some(what), "{sql}");
        }
    }
}
