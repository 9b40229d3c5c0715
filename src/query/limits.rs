//! Limits on the size and shape of user SQL, checked before DataFusion plans it.
//!
//! DataFusion plans, optimizes, evaluates and drops expressions and plans by recursion, one
//! set of stack frames per level. sqlparser builds left-deep chains (`1+1+…+1`, `a OR b OR …`,
//! `x::int::int…`, `UNION ALL` chains) in a loop, so its recursion limit never sees them: 900
//! terms overflowed a 2 MiB query thread and aborted the server. Every statement is therefore
//! measured here first, and one nested deeper than the stacks tickvault runs queries on
//! ([`QUERY_STACK_BYTES`]) hold with a wide margin is refused with an error naming the limit.
//! Wide input is fine: an `IN` list of 100,000 symbols is one level deep, and its literals and
//! commas count towards no limit but the text's length.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{Expr, Query, Select, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The longest SQL text accepted: room for an `IN` list of 100,000 symbols with space to spare.
pub const MAX_SQL_BYTES: usize = 4 << 20;

/// The most tokens a statement may have besides literals, names and commas (operators,
/// keywords, parentheses). Every level of nesting takes at least one of them, so this bounds
/// the depth of what the parser builds before [`MAX_DEPTH`] is measured on it, and keeps the
/// measuring (and dropping a refused statement) shallow.
pub const MAX_OPERATORS: usize = 20_000;

/// The deepest nesting accepted: expressions within expressions (each operator of a chain is a
/// level), subqueries, and the SELECTs and tables of a statement. Room for the OR chain of
/// 1,000 terms the issue that set these limits sent. Measured in a debug build: 1,200 levels
/// plan and run on 16 MiB of stack, 1,600 do not; a 1,100-term `1+1+…` plans in 2.5 s there.
pub const MAX_DEPTH: usize = 1_100;

/// The most tables and SELECTs one statement may name. DataFusion plans `a JOIN b JOIN c …`
/// and `… UNION ALL …` as one plan node per table or SELECT, nested, and planning joins grows
/// steeply with their number (debug build: 50 joins 0.6 s, 100 joins 3.5 s, 200 over 100 s),
/// time no timeout can interrupt.
pub const MAX_RELATIONS: usize = 64;

/// Parentheses, subqueries and function calls nest at most this deep: the parser's own limit
/// (the recursion it does count), DataFusion's default, set here so the message can name it.
pub const PARSER_RECURSION_LIMIT: usize = 50;

/// The stack of every thread tickvault plans and runs queries on (the server's query runtime
/// and the runtime `main` builds for the CLI and the server's requests). Statements at the
/// limits plan and run on a quarter of it in a debug build (the test
/// `sql_at_the_limits_runs_on_a_quarter_of_the_query_stack`); the rest is margin. Untouched
/// stack costs address space, not memory. Programs using the library should plan queries on
/// threads this deep too.
pub const QUERY_STACK_BYTES: usize = 64 << 20;

/// SQL refused for its size or shape; the message names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(pub String);

/// Checks the text before anything parses it: its length and the number of operators.
pub fn check_text(sql: &str) -> Result<(), LimitError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(LimitError(format!(
            "the SQL is {} bytes, more than the limit of {MAX_SQL_BYTES} bytes (MAX_SQL_BYTES)",
            sql.len()
        )));
    }
    // A text that does not tokenize is left for the parser to report.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|t| counts_as_operator(t)).count();
    if operators > MAX_OPERATORS {
        return Err(LimitError(format!(
            "the SQL has {operators} operators, keywords and parentheses, more than the limit of \
             {MAX_OPERATORS} (MAX_OPERATORS); long lists of values (IN (…)) are not limited"
        )));
    }
    Ok(())
}

/// Whether a token can add a level of nesting: everything but whitespace, commas, literals
/// and plain names.
fn counts_as_operator(token: &Token) -> bool {
    use datafusion::sql::sqlparser::keywords::Keyword;
    !matches!(
        token,
        Token::Whitespace(_)
            | Token::Comma
            | Token::EOF
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
    ) && !matches!(token, Token::Word(w) if w.keyword == Keyword::NoKeyword)
}

/// Checks a parsed statement's depth and size (see [`MAX_DEPTH`], [`MAX_RELATIONS`]). The
/// walk stops at the first level past the limit, so it never recurses deeper than that.
pub fn check_statement(statement: &Statement) -> Result<(), LimitError> {
    let mut meter = Meter::default();
    let flow = match statement {
        Statement::Statement(s) => s.visit(&mut meter),
        Statement::Explain(e) => return check_statement(&e.statement),
        Statement::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => q.visit(&mut meter),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        Statement::CreateExternalTable(_) | Statement::Reset(_) => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The parser's recursion limit, as a limit error.
pub fn parser_recursion_error() -> LimitError {
    LimitError(format!(
        "the SQL nests parentheses, subqueries or function calls more than \
         {PARSER_RECURSION_LIMIT} deep (PARSER_RECURSION_LIMIT)"
    ))
}

#[derive(Default)]
struct Meter {
    depth: usize,
    relations: usize,
}

impl Meter {
    fn enter(&mut self) -> ControlFlow<LimitError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return ControlFlow::Break(LimitError(format!(
                "the SQL nests expressions, subqueries or joins more than {MAX_DEPTH} deep \
                 (MAX_DEPTH); each operator of a chain such as a OR b OR … is a level: use \
                 IN (…) for long lists of values"
            )));
        }
        ControlFlow::Continue(())
    }

    fn relation(&mut self) -> ControlFlow<LimitError> {
        self.relations += 1;
        if self.relations > MAX_RELATIONS {
            return ControlFlow::Break(LimitError(format!(
                "the SQL names more than {MAX_RELATIONS} tables and SELECTs (MAX_RELATIONS)"
            )));
        }
        self.enter()
    }

    fn leave(&mut self) -> ControlFlow<LimitError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Meter {
    type Break = LimitError;

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<LimitError> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<LimitError> {
        self.leave()
    }

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<LimitError> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<LimitError> {
        self.leave()
    }

    fn pre_visit_select(&mut self, _: &Select) -> ControlFlow<LimitError> {
        self.relation()
    }

    fn post_visit_select(&mut self, _: &Select) -> ControlFlow<LimitError> {
        self.leave()
    }

    fn pre_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<LimitError> {
        self.relation()
    }

    fn post_visit_table_factor(&mut self, _: &TableFactor) -> ControlFlow<LimitError> {
        self.leave()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Statement {
        datafusion::sql::parser::DFParserBuilder::new(sql)
            .with_recursion_limit(PARSER_RECURSION_LIMIT)
            .build()
            .unwrap()
            .parse_statements()
            .unwrap()
            .pop_front()
            .unwrap()
    }

    /// Parses and measures on a thread with the query stack: a debug build's frames are large.
    fn check(sql: &str) -> Result<(), LimitError> {
        let sql = sql.to_string();
        std::thread::Builder::new()
            .stack_size(QUERY_STACK_BYTES)
            .spawn(move || {
                check_text(&sql)?;
                check_statement(&parse(&sql))
            })
            .unwrap()
            .join()
            .unwrap()
    }

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    #[test]
    fn wide_lists_pass_and_long_chains_are_refused_naming_the_limit() {
        let symbols: Vec<String> = (0..100_000).map(|i| format!("'S{i:05}'")).collect();
        let wide = format!(
            "SELECT count(*) FROM bars WHERE symbol IN ({})",
            symbols.join(",")
        );
        assert_eq!(check(&wide), Ok(()));

        let ok = format!("SELECT {}", chain("1", "+", MAX_DEPTH - 10));
        assert_eq!(check(&ok), Ok(()));
        let deep = format!("SELECT {}", chain("1", "+", MAX_DEPTH + 1));
        let e = check(&deep).unwrap_err();
        assert!(e.0.contains("MAX_DEPTH"), "{e}");
        let or = format!(
            "SELECT * FROM bars WHERE {}",
            chain("symbol = 'A'", " OR ", MAX_DEPTH)
        );
        assert!(check(&or).unwrap_err().0.contains("MAX_DEPTH"));
        let casts = format!("SELECT 1{}", "::int".repeat(MAX_DEPTH + 1));
        assert!(check(&casts).unwrap_err().0.contains("MAX_DEPTH"));
    }

    #[test]
    fn too_many_operators_are_refused_before_parsing() {
        let sql = format!("SELECT {}", chain("1", "+", MAX_OPERATORS + 1));
        let e = check_text(&sql).unwrap_err();
        assert!(e.0.contains("MAX_OPERATORS"), "{e}");
        let long = format!("SELECT '{}'", "x".repeat(MAX_SQL_BYTES));
        assert!(check_text(&long).unwrap_err().0.contains("MAX_SQL_BYTES"));
    }

    #[test]
    fn joins_and_unions_count_as_relations() {
        let joins = format!(
            "SELECT 1 FROM {}",
            chain("bars", " CROSS JOIN ", MAX_RELATIONS + 1)
        );
        assert!(check(&joins).unwrap_err().0.contains("MAX_RELATIONS"));
        let unions = chain("SELECT 1", " UNION ALL ", MAX_RELATIONS + 1);
        assert!(check(&unions).unwrap_err().0.contains("MAX_RELATIONS"));
        let fine = chain("SELECT 1", " UNION ALL ", 10);
        assert_eq!(check(&fine), Ok(()));
    }

    #[test]
    fn explain_is_measured_like_its_statement() {
        let deep = format!("EXPLAIN SELECT {}", chain("1", "+", MAX_DEPTH + 1));
        assert!(check(&deep).unwrap_err().0.contains("MAX_DEPTH"));
    }
}
