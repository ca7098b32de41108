//! InfluxQL, the InfluxDB 1.x query language: lexer, parser, syntax tree, and the two
//! helpers the query executor needs (time-range extraction and result column names).
//!
//! ```text
//!  query text ──lexer──▶ tokens ──parser──▶ Vec<Statement> ──▶ executor (elsewhere)
//!                                               │
//!       split_time_range(WHERE, now) ───────────┼──▶ (rest of the condition, TimeRange)
//!       column_name(s)(SELECT fields) ──────────┴──▶ result column names
//! ```
//!
//! The dialect is that of `influxdata/influxql` (`scanner.go`, `parser.go`, `ast.go`) as
//! used by InfluxDB 1.6–1.8: the same reserved words (quote them to use them as names, e.g.
//! `"name"`, `"key"`), operator precedence (`OR` < `AND` < comparisons < `+ - | ^` <
//! `* / % &`, all left-associative), error texts of the shape `error parsing query: found
//! FOO, expected SELECT, DELETE, SHOW, CREATE, DROP, EXPLAIN, GRANT, REVOKE, ALTER, SET,
//! KILL at line 1, char 1`, and column naming (`Field.Name()`).
//!
//! # Statements
//!
//! Parsed into a [`Statement`]:
//! - `SELECT fields FROM sources [WHERE] [GROUP BY time(i[, offset]) | tag | * | /re/, ...]
//!   [fill(null|none|previous|linear|<number>)] [ORDER BY time [ASC|DESC]] [LIMIT n]
//!   [OFFSET n] [SLIMIT n] [SOFFSET n] [tz('zone')]`; any function name is kept as a
//!   [`Call`], so the executor can reject the ones it lacks by name;
//! - `SHOW DATABASES`, `SHOW MEASUREMENTS`, `SHOW TAG KEYS`, `SHOW TAG VALUES ... WITH KEY`,
//!   `SHOW FIELD KEYS`, `SHOW SERIES`, `SHOW RETENTION POLICIES`, `SHOW {MEASUREMENT | SERIES
//!   | TAG KEY | TAG VALUES | FIELD KEY} [EXACT] CARDINALITY`;
//! - administrative SHOWs as [`Statement::ShowSystem`]: `SHOW USERS`, `GRANTS [FOR u]`,
//!   `STATS`, `DIAGNOSTICS`, `SHARDS`, `SHARD GROUPS`, `QUERIES`, `CONTINUOUS QUERIES`,
//!   `SUBSCRIPTIONS` (the executor decides how to answer them);
//! - `CREATE DATABASE name [WITH ...]`, `DROP DATABASE`, `DROP MEASUREMENT`, `DROP SERIES`,
//!   `DELETE`.
//!
//! Valid InfluxQL that Meridian does not implement is a [`ParseError`] of kind
//! [`ParseErrorKind::Unsupported`] whose message names the feature: `subqueries are not
//! supported`, `SELECT INTO is not supported`, `EXPLAIN`, `CREATE/ALTER/DROP RETENTION
//! POLICY`, `CREATE/DROP USER`, `SET PASSWORD`, `GRANT`, `REVOKE`, `KILL QUERY`,
//! `CREATE/DROP CONTINUOUS QUERY`, `CREATE/DROP SUBSCRIPTION`, `DROP SHARD`,
//! `SHOW MEASUREMENTS ON *`, bound parameters (`$name`). A parse error fails the whole
//! query, as in InfluxDB.
//!
//! # Deviations from InfluxDB 1.x
//! - Extensions: float exponents (`1e3`); `fill(NULL)` etc. in any case; `SHOW GRANTS`
//!   without `FOR`.
//! - `DISTINCT x` is parsed as the call `distinct(x)` (InfluxDB does that rewrite before
//!   execution); `LIMIT 0` is `None`.
//! - `GROUP BY` terms are checked while parsing (InfluxDB does it when compiling), with
//!   InfluxDB's messages.
//! - `tz('zone')` is kept unchecked; [`split_time_range`] reads zone-less timestamp strings
//!   as UTC.
//!
//! # Invariants
//! - No input panics the parser or overflows its stack: recursion is bounded by
//!   [`MAX_NESTING`] and tree depth by [`MAX_EXPR_DEPTH`] ([`ParseErrorKind::TooDeep`]).
//! - Every regex in a tree is compiled with a 1 MiB size limit ([`REGEX_SIZE_LIMIT`]); a bad
//!   one is a parse error.
//! - Printing a parsed statement (`Display`) and parsing the text again gives an equal tree.

mod ast;
mod display;
mod duration;
mod error;
mod lexer;
mod naming;
mod parser;
mod time_range;

#[cfg(test)]
mod tests;

pub use ast::{
    BinaryExpr, BinaryOp, Call, CardinalityKind, CreateDatabase, DataType, Dimension, Expr, Field,
    Fill, Measurement, MeasurementName, REGEX_SIZE_LIMIT, RegexLiteral, RetentionPolicySpec,
    SelectStatement, SeriesFilter, ShowCardinality, ShowFieldKeys, ShowMeasurements, ShowSeries,
    ShowTagKeys, ShowTagValues, SortOrder, Statement, SystemShow, TagKeyFilter, TimeOffset, VarRef,
    WildcardType,
};
pub use display::{ident_needs_quotes, quote_ident, quote_string};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{ConditionError, ParseError, ParseErrorKind};
pub use naming::{column_name, column_names};
pub use parser::{MAX_EXPR_DEPTH, MAX_NESTING};
pub use time_range::{TimeRange, parse_timestamp, split_time_range};

/// Parses a query, with each statement that uses a feature Meridian does not support as
/// its own error (so that it answers a per-statement error, the others running); any
/// other error fails the whole query.
pub fn parse_query_lenient(text: &str) -> Result<Vec<Result<Statement, ParseError>>, ParseError> {
    parser::Parser::new(text)
        .parse_query_lenient()
        .map_err(|e| *e)
}

/// Parses a query: zero or more statements separated by `;` (empty statements and a
/// trailing `;` are allowed).
pub fn parse_query(text: &str) -> Result<Vec<Statement>, ParseError> {
    parser::Parser::new(text).parse_query().map_err(|e| *e)
}

/// Parses a text holding exactly one expression (e.g. a condition), with the same rules as
/// a `WHERE` clause.
pub fn parse_expr(text: &str) -> Result<Expr, ParseError> {
    parser::Parser::new(text)
        .parse_standalone_expr()
        .map_err(|e| *e)
}
