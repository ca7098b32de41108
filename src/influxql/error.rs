//! Errors of the InfluxQL module: [`ParseError`] (query text → syntax tree) and
//! [`ConditionError`] (evaluating the time part of a parsed `WHERE` clause).
//!
//! A [`ParseError`] prints as InfluxDB 1.x does, `error parsing query: <message> at line L,
//! char C` (both 1-based; `char` counts characters, not bytes), and also carries the byte
//! offset. Unsupported-but-valid InfluxQL is a [`ParseErrorKind::Unsupported`] error whose
//! message names the feature, so a caller can tell it apart from a syntax error.

/// Category of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParseErrorKind {
    /// The text is not valid InfluxQL, or a literal in it is out of range.
    Syntax,
    /// Valid InfluxQL that Meridian does not implement (subqueries, `SELECT ... INTO`,
    /// retention-policy / user / continuous-query management, `EXPLAIN`, ...). The message is
    /// `<FEATURE> is not supported`.
    Unsupported,
    /// The expression nests deeper than the parser allows (see `MAX_NESTING`,
    /// `MAX_EXPR_DEPTH`).
    TooDeep,
}

/// Why a query could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "error parsing query: {message} at line {line}, char {column}{}",
    .hint.map(|h| format!("; {h}")).unwrap_or_default()
)]
pub struct ParseError {
    /// Machine-readable category.
    pub kind: ParseErrorKind,
    /// The reason without position, e.g. `found FROM, expected identifier, string, number,
    /// bool` or `subqueries are not supported`.
    pub message: String,
    /// Byte offset of the offending token in the query text.
    pub offset: usize,
    /// 1-based line of `offset`.
    pub line: usize,
    /// 1-based character (not byte) column of `offset` within its line.
    pub column: usize,
    /// Extra advice printed after the position (InfluxDB does so for operators in a SELECT
    /// field list: `...; operator is intended for WHERE clause`).
    pub hint: Option<&'static str>,
}

impl ParseError {
    /// An error at byte `offset` of `src`; line and column are derived from the text.
    pub(crate) fn new(src: &str, offset: usize, kind: ParseErrorKind, message: String) -> Self {
        let mut offset = offset.min(src.len());
        while !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = src.get(..offset).unwrap_or_default();
        let line = 1 + before.bytes().filter(|&b| b == b'\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = 1 + before.get(line_start..).unwrap_or_default().chars().count();
        ParseError {
            kind,
            message,
            offset,
            line,
            column,
            hint: None,
        }
    }

    /// A [`ParseErrorKind::Syntax`] error.
    pub(crate) fn syntax(src: &str, offset: usize, message: impl Into<String>) -> Self {
        Self::new(src, offset, ParseErrorKind::Syntax, message.into())
    }
}

/// Why the time range of a condition could not be extracted (see
/// [`split_time_range`](super::split_time_range)). Messages follow InfluxDB, e.g. `cannot use
/// OR with time conditions`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConditionError {
    /// Human-readable reason.
    pub message: String,
}

impl ConditionError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConditionError {
            message: message.into(),
        }
    }
}
