//! Recursive-descent InfluxQL parser: text → [`Statement`]s (influxql's `parser.go` and
//! `parse_tree.go`).
//!
//! Statements are dispatched on their leading keywords; the "expected" lists of error
//! messages are InfluxDB's, in its order. Expressions use precedence climbing with
//! influxql's precedences (all operators left-associative).
//!
//! Whitespace is insignificant except where InfluxDB makes it so: a call needs `(` right
//! after its name (`mean(x)`), a cast `::type` right after its operand, and the dots of
//! `db.rp.m` right after each segment.
//!
//! Invariants:
//! - no input panics or overflows the stack: nesting through parentheses, calls and unary
//!   signs is limited to [`MAX_NESTING`] recursive steps and the depth of the resulting tree
//!   to [`MAX_EXPR_DEPTH`] (long `a OR b OR c ...` chains build deep trees without
//!   recursion), both reported as [`ParseErrorKind::TooDeep`];
//! - features Meridian does not implement are [`ParseErrorKind::Unsupported`] errors
//!   naming the feature, at the position of the statement or clause.

use super::ast::*;
use super::display::quote_ident;
use super::duration::{DurationError, parse_duration};
use super::error::{ParseError, ParseErrorKind};
use super::lexer::{Keyword, Lexer, Token, TokenKind};

/// Maximum recursion of the expression parser (parentheses, calls, unary signs).
pub const MAX_NESTING: usize = 200;

/// Maximum depth of an expression tree built by the parser.
pub const MAX_EXPR_DEPTH: usize = 1000;

/// Errors are boxed inside the parser: it keeps every `Result` small, and so the stack
/// frames of the recursive expression parser (see `MAX_NESTING`).
type Result<T> = std::result::Result<T, Box<ParseError>>;

const STATEMENT_KEYWORDS: &[&str] = &[
    "SELECT", "DELETE", "SHOW", "CREATE", "DROP", "EXPLAIN", "GRANT", "REVOKE", "ALTER", "SET",
    "KILL",
];

const SHOW_KEYWORDS: &[&str] = &[
    "CONTINUOUS",
    "DATABASES",
    "DIAGNOSTICS",
    "FIELD",
    "GRANTS",
    "MEASUREMENT",
    "MEASUREMENTS",
    "QUERIES",
    "RETENTION",
    "SERIES",
    "SHARD",
    "SHARDS",
    "STATS",
    "SUBSCRIPTIONS",
    "TAG",
    "USERS",
];

const UNARY_EXPECTED: &[&str] = &["identifier", "string", "number", "bool"];

/// An expression with the depth of its tree.
struct Parsed {
    expr: Expr,
    depth: usize,
}

impl Parsed {
    fn leaf(expr: Expr) -> Self {
        Parsed { expr, depth: 1 }
    }
}

fn binary_op(kind: &TokenKind) -> Option<BinaryOp> {
    Some(match kind {
        TokenKind::Add => BinaryOp::Add,
        TokenKind::Sub => BinaryOp::Sub,
        TokenKind::Mul => BinaryOp::Mul,
        TokenKind::Div => BinaryOp::Div,
        TokenKind::Mod => BinaryOp::Mod,
        TokenKind::BitAnd => BinaryOp::BitAnd,
        TokenKind::BitOr => BinaryOp::BitOr,
        TokenKind::BitXor => BinaryOp::BitXor,
        TokenKind::Keyword(Keyword::And) => BinaryOp::And,
        TokenKind::Keyword(Keyword::Or) => BinaryOp::Or,
        TokenKind::Eq => BinaryOp::Eq,
        TokenKind::Neq => BinaryOp::Neq,
        TokenKind::EqRegex => BinaryOp::EqRegex,
        TokenKind::NeqRegex => BinaryOp::NeqRegex,
        TokenKind::Lt => BinaryOp::Lt,
        TokenKind::Lte => BinaryOp::Lte,
        TokenKind::Gt => BinaryOp::Gt,
        TokenKind::Gte => BinaryOp::Gte,
        _ => return None,
    })
}

/// The first boolean operator (comparison, AND, OR) in `expr`, pre-order, looking inside
/// calls: InfluxDB rejects those in a SELECT field list.
fn first_boolean_op(expr: &Expr) -> Option<BinaryOp> {
    match expr {
        Expr::Binary(b) if b.op.is_boolean() => Some(b.op),
        Expr::Binary(b) => first_boolean_op(&b.lhs).or_else(|| first_boolean_op(&b.rhs)),
        Expr::Paren(inner) => first_boolean_op(inner),
        Expr::Call(call) => call.args.iter().find_map(first_boolean_op),
        _ => None,
    }
}

fn non_empty(name: String) -> Option<String> {
    (!name.is_empty()).then_some(name)
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    /// Current recursion depth of the expression parser.
    nesting: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Parser {
            src,
            lexer: Lexer::new(src),
            nesting: 0,
        }
    }

    // ---- tokens -------------------------------------------------------------------------

    /// The next token that is not whitespace or a comment.
    fn next(&mut self) -> Result<Token> {
        loop {
            let token = self.lexer.next_raw()?;
            if token.kind != TokenKind::Whitespace {
                return Ok(token);
            }
        }
    }

    /// The next non-whitespace token, without consuming it.
    fn peek(&mut self) -> Result<Token> {
        let save = self.lexer.pos();
        let token = self.next();
        self.lexer.set_pos(save);
        token
    }

    /// The very next token (possibly whitespace), without consuming it.
    fn peek_raw(&mut self) -> Result<Token> {
        let save = self.lexer.pos();
        let token = self.lexer.next_raw();
        self.lexer.set_pos(save);
        Ok(token?)
    }

    /// Consumes whitespace and comments.
    fn skip_whitespace(&mut self) -> Result<()> {
        loop {
            let save = self.lexer.pos();
            if self.lexer.next_raw()?.kind != TokenKind::Whitespace {
                self.lexer.set_pos(save);
                return Ok(());
            }
        }
    }

    /// Consumes the next token if it is `kind`.
    fn eat(&mut self, kind: &TokenKind) -> Result<bool> {
        let save = self.lexer.pos();
        if self.next()?.kind == *kind {
            return Ok(true);
        }
        self.lexer.set_pos(save);
        Ok(false)
    }

    fn eat_keyword(&mut self, keyword: Keyword) -> Result<bool> {
        self.eat(&TokenKind::Keyword(keyword))
    }

    fn expect(&mut self, kind: &TokenKind) -> Result<Token> {
        let token = self.next()?;
        if token.kind == *kind {
            Ok(token)
        } else {
            Err(self.unexpected(&token, &[&kind.describe()]))
        }
    }

    fn expect_keyword(&mut self, keyword: Keyword) -> Result<Token> {
        self.expect(&TokenKind::Keyword(keyword))
    }

    fn expect_ident(&mut self) -> Result<String> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Ident(name) => Ok(name),
            _ => Err(self.unexpected(&token, &["identifier"])),
        }
    }

    // ---- errors -------------------------------------------------------------------------

    #[cold]
    #[inline(never)]
    fn unexpected(&self, token: &Token, expected: &[&str]) -> Box<ParseError> {
        Box::new(ParseError::syntax(
            self.src,
            token.offset,
            format!(
                "found {}, expected {}",
                token.kind.describe(),
                expected.join(", ")
            ),
        ))
    }

    #[cold]
    #[inline(never)]
    fn error(&self, offset: usize, message: impl Into<String>) -> Box<ParseError> {
        Box::new(ParseError::syntax(self.src, offset, message))
    }

    #[cold]
    #[inline(never)]
    fn unsupported(&self, offset: usize, message: &str) -> Box<ParseError> {
        Box::new(ParseError::new(
            self.src,
            offset,
            ParseErrorKind::Unsupported,
            message.to_string(),
        ))
    }

    /// The error for an expression beyond [`MAX_NESTING`] or [`MAX_EXPR_DEPTH`].
    #[cold]
    #[inline(never)]
    fn too_deep(&self, offset: usize, limit: usize) -> Box<ParseError> {
        Box::new(ParseError::new(
            self.src,
            offset,
            ParseErrorKind::TooDeep,
            format!("expression is nested too deeply (more than {limit} levels)"),
        ))
    }

    // ---- query and statements -----------------------------------------------------------

    /// Statements separated by `;` (empty statements allowed).
    pub(crate) fn parse_query(mut self) -> Result<Vec<Statement>> {
        let mut statements = Vec::new();
        let mut after_separator = true;
        loop {
            let token = self.peek()?;
            match token.kind {
                TokenKind::Eof => return Ok(statements),
                TokenKind::Semicolon => {
                    self.next()?;
                    after_separator = true;
                }
                _ if !after_separator => return Err(self.unexpected(&token, &[";"])),
                _ => {
                    statements.push(self.parse_statement()?);
                    after_separator = false;
                }
            }
        }
    }

    /// As [`Parser::parse_query`], but a statement using a feature Meridian does not
    /// support ([`ParseErrorKind::Unsupported`]) becomes its own error and parsing goes on
    /// after the next `;`; any other error fails the whole query, as in InfluxDB.
    pub(crate) fn parse_query_lenient(
        mut self,
    ) -> Result<Vec<std::result::Result<Statement, ParseError>>> {
        let mut statements = Vec::new();
        let mut after_separator = true;
        loop {
            let token = self.peek()?;
            match token.kind {
                TokenKind::Eof => return Ok(statements),
                TokenKind::Semicolon => {
                    self.next()?;
                    after_separator = true;
                }
                _ if !after_separator => return Err(self.unexpected(&token, &[";"])),
                _ => {
                    match self.parse_statement() {
                        Ok(st) => statements.push(Ok(st)),
                        Err(e) if e.kind == ParseErrorKind::Unsupported => {
                            // Skip the rest of the statement.
                            loop {
                                match self.peek() {
                                    Ok(t)
                                        if matches!(
                                            t.kind,
                                            TokenKind::Semicolon | TokenKind::Eof
                                        ) =>
                                    {
                                        break;
                                    }
                                    Ok(_) => {
                                        self.next()?;
                                    }
                                    Err(_) => return Err(e),
                                }
                            }
                            statements.push(Err(*e));
                        }
                        Err(e) => return Err(e),
                    }
                    after_separator = false;
                }
            }
        }
    }

    /// A whole text holding a single expression.
    pub(crate) fn parse_standalone_expr(mut self) -> Result<Expr> {
        let expr = self.parse_expr()?;
        let token = self.next()?;
        if token.kind != TokenKind::Eof {
            return Err(self.unexpected(&token, &["EOF"]));
        }
        Ok(expr)
    }

    fn parse_statement(&mut self) -> Result<Statement> {
        let token = self.next()?;
        let start = token.offset;
        let TokenKind::Keyword(keyword) = token.kind else {
            return Err(self.unexpected(&token, STATEMENT_KEYWORDS));
        };
        match keyword {
            Keyword::Select => Ok(Statement::Select(self.parse_select()?)),
            Keyword::Delete => Ok(Statement::Delete(self.parse_series_filter(false)?)),
            Keyword::Show => self.parse_show(),
            Keyword::Create => self.parse_create(start),
            Keyword::Drop => self.parse_drop(start),
            Keyword::Explain => {
                // The statement explained is checked first, as InfluxDB does: a syntax
                // error there fails the query.
                if matches!(self.peek()?.kind, TokenKind::Keyword(Keyword::Analyze)) {
                    self.next()?;
                }
                self.parse_statement()?;
                Err(self.unsupported(start, "EXPLAIN is not supported"))
            }
            Keyword::Grant => Err(self.unsupported(start, "GRANT is not supported")),
            Keyword::Revoke => Err(self.unsupported(start, "REVOKE is not supported")),
            Keyword::Alter => {
                self.expect_keyword(Keyword::Retention)?;
                self.expect_keyword(Keyword::Policy)?;
                Err(self.unsupported(start, "ALTER RETENTION POLICY is not supported"))
            }
            Keyword::Set => {
                self.expect_keyword(Keyword::Password)?;
                self.expect_keyword(Keyword::For)?;
                Err(self.unsupported(start, "SET PASSWORD is not supported"))
            }
            Keyword::Kill => {
                self.expect_keyword(Keyword::Query)?;
                Err(self.unsupported(start, "KILL QUERY is not supported"))
            }
            _ => Err(self.unexpected(&token, STATEMENT_KEYWORDS)),
        }
    }

    fn parse_create(&mut self, start: usize) -> Result<Statement> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Keyword(Keyword::Continuous) => {
                self.expect_keyword(Keyword::Query)?;
                Err(self.unsupported(start, "CREATE CONTINUOUS QUERY is not supported"))
            }
            TokenKind::Keyword(Keyword::Database) => self.parse_create_database(),
            TokenKind::Keyword(Keyword::User) => {
                Err(self.unsupported(start, "CREATE USER is not supported"))
            }
            TokenKind::Keyword(Keyword::Retention) => {
                self.expect_keyword(Keyword::Policy)?;
                Err(self.unsupported(start, "CREATE RETENTION POLICY is not supported"))
            }
            TokenKind::Keyword(Keyword::Subscription) => {
                Err(self.unsupported(start, "CREATE SUBSCRIPTION is not supported"))
            }
            _ => Err(self.unexpected(
                &token,
                &[
                    "CONTINUOUS",
                    "DATABASE",
                    "USER",
                    "RETENTION",
                    "SUBSCRIPTION",
                ],
            )),
        }
    }

    fn parse_drop(&mut self, start: usize) -> Result<Statement> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Keyword(Keyword::Continuous) => {
                self.expect_keyword(Keyword::Query)?;
                Err(self.unsupported(start, "DROP CONTINUOUS QUERY is not supported"))
            }
            TokenKind::Keyword(Keyword::Database) => Ok(Statement::DropDatabase {
                name: self.expect_ident()?,
            }),
            TokenKind::Keyword(Keyword::Measurement) => Ok(Statement::DropMeasurement {
                name: self.expect_ident()?,
            }),
            TokenKind::Keyword(Keyword::Retention) => {
                self.expect_keyword(Keyword::Policy)?;
                Err(self.unsupported(start, "DROP RETENTION POLICY is not supported"))
            }
            TokenKind::Keyword(Keyword::Series) => {
                Ok(Statement::DropSeries(self.parse_series_filter(true)?))
            }
            TokenKind::Keyword(Keyword::Shard) => {
                Err(self.unsupported(start, "DROP SHARD is not supported"))
            }
            TokenKind::Keyword(Keyword::Subscription) => {
                Err(self.unsupported(start, "DROP SUBSCRIPTION is not supported"))
            }
            TokenKind::Keyword(Keyword::User) => {
                Err(self.unsupported(start, "DROP USER is not supported"))
            }
            _ => Err(self.unexpected(
                &token,
                &[
                    "CONTINUOUS",
                    "DATABASE",
                    "MEASUREMENT",
                    "RETENTION",
                    "SERIES",
                    "SHARD",
                    "SUBSCRIPTION",
                    "USER",
                ],
            )),
        }
    }

    /// `CREATE DATABASE name [WITH ...]` after `CREATE DATABASE`.
    fn parse_create_database(&mut self) -> Result<Statement> {
        let name = self.expect_ident()?;
        let mut retention_policy = None;
        if self.eat_keyword(Keyword::With)? {
            let token = self.peek()?;
            let options = [
                Keyword::Duration,
                Keyword::Name,
                Keyword::Replication,
                Keyword::Shard,
                Keyword::Future,
                Keyword::Past,
            ];
            if !options.iter().any(|k| token.kind == TokenKind::Keyword(*k)) {
                return Err(self.unexpected(
                    &token,
                    &["DURATION", "NAME", "REPLICATION", "SHARD", "FUTURE", "PAST"],
                ));
            }
            let mut spec = RetentionPolicySpec::default();
            if self.eat_keyword(Keyword::Duration)? {
                spec.duration_ns = Some(self.parse_duration_value()?);
            }
            if self.eat_keyword(Keyword::Replication)? {
                spec.replication = Some(self.parse_replication()?);
            }
            if self.eat_keyword(Keyword::Shard)? {
                self.expect_keyword(Keyword::Duration)?;
                spec.shard_duration_ns = Some(self.parse_duration_value()?);
            }
            if self.eat_keyword(Keyword::Future)? {
                self.expect_keyword(Keyword::Limit)?;
                spec.future_limit_ns = Some(self.parse_duration_value()?);
            }
            if self.eat_keyword(Keyword::Past)? {
                self.expect_keyword(Keyword::Limit)?;
                spec.past_limit_ns = Some(self.parse_duration_value()?);
            }
            if self.eat_keyword(Keyword::Name)? {
                spec.name = Some(self.expect_ident()?);
            }
            retention_policy = Some(spec);
        }
        Ok(Statement::CreateDatabase(CreateDatabase {
            name,
            retention_policy,
        }))
    }

    /// A duration literal or `INF` (0).
    fn parse_duration_value(&mut self) -> Result<i64> {
        let token = self.next()?;
        match &token.kind {
            TokenKind::Keyword(Keyword::Inf) => Ok(0),
            TokenKind::Duration(text) => self.duration(text, token.offset),
            _ => Err(self.unexpected(&token, &["duration"])),
        }
    }

    fn parse_replication(&mut self) -> Result<u32> {
        let token = self.next()?;
        let TokenKind::Integer(text) = &token.kind else {
            return Err(self.unexpected(&token, &["integer"]));
        };
        let max = i32::MAX as u32;
        match text.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(self.error(
                token.offset,
                format!("invalid value {text}: must be 1 <= n <= {max}"),
            )),
        }
    }

    fn duration(&self, text: &str, offset: usize) -> Result<i64> {
        parse_duration(text).map_err(|e| match e {
            DurationError::Invalid => self.error(offset, format!("invalid duration {text}")),
            DurationError::Overflow => self.error(
                offset,
                format!("overflowed duration {text}: choose a smaller duration or INF"),
            ),
        })
    }

    /// `DELETE` / `DROP SERIES`: `[FROM sources] [WHERE cond]`, at least one.
    fn parse_series_filter(&mut self, drop_series: bool) -> Result<SeriesFilter> {
        let first = self.peek()?;
        let mut sources = Vec::new();
        if self.eat_keyword(Keyword::From)? {
            sources = self.parse_sources(false)?;
            for source in &sources {
                if source.database.is_some() {
                    return Err(self.error(first.offset, "database not supported"));
                }
                if drop_series && source.retention_policy.is_some() {
                    return Err(self.error(first.offset, "retention policy not supported"));
                }
            }
        }
        let condition = self.parse_condition()?;
        if sources.is_empty() && condition.is_none() {
            return Err(self.unexpected(&first, &["FROM", "WHERE"]));
        }
        Ok(SeriesFilter { sources, condition })
    }

    // ---- SHOW -----------------------------------------------------------------------------

    fn parse_show(&mut self) -> Result<Statement> {
        let token = self.next()?;
        let TokenKind::Keyword(keyword) = token.kind else {
            return Err(self.unexpected(&token, SHOW_KEYWORDS));
        };
        let system = |s| Ok(Statement::ShowSystem(s));
        match keyword {
            Keyword::Continuous => {
                self.expect_keyword(Keyword::Queries)?;
                system(SystemShow::ContinuousQueries)
            }
            Keyword::Databases => Ok(Statement::ShowDatabases),
            Keyword::Diagnostics => system(SystemShow::Diagnostics {
                module: self.parse_for_module()?,
            }),
            Keyword::Field => {
                let token = self.next()?;
                match token.kind {
                    TokenKind::Keyword(Keyword::Key) => {
                        self.parse_cardinality_after_key(CardinalityKind::FieldKey)
                    }
                    TokenKind::Keyword(Keyword::Keys) => self.parse_show_field_keys(),
                    _ => Err(self.unexpected(&token, &["KEY", "KEYS"])),
                }
            }
            Keyword::Grants => {
                let user = if self.eat_keyword(Keyword::For)? {
                    Some(self.expect_ident()?)
                } else {
                    None
                };
                system(SystemShow::Grants { user })
            }
            Keyword::Measurement => self.parse_cardinality_after_key(CardinalityKind::Measurement),
            Keyword::Measurements => self.parse_show_measurements(),
            Keyword::Queries => system(SystemShow::Queries),
            Keyword::Retention => {
                self.expect_keyword(Keyword::Policies)?;
                Ok(Statement::ShowRetentionPolicies {
                    database: self.parse_on()?,
                })
            }
            Keyword::Series => {
                if self.eat_keyword(Keyword::Exact)? {
                    self.expect_keyword(Keyword::Cardinality)?;
                    self.parse_cardinality(CardinalityKind::Series, true)
                } else if self.eat_keyword(Keyword::Cardinality)? {
                    self.parse_cardinality(CardinalityKind::Series, false)
                } else {
                    self.parse_show_series()
                }
            }
            Keyword::Shard => {
                self.expect_keyword(Keyword::Groups)?;
                system(SystemShow::ShardGroups)
            }
            Keyword::Shards => system(SystemShow::Shards),
            Keyword::Stats => system(SystemShow::Stats {
                module: self.parse_for_module()?,
            }),
            Keyword::Subscriptions => system(SystemShow::Subscriptions),
            Keyword::Tag => {
                let token = self.next()?;
                match token.kind {
                    TokenKind::Keyword(Keyword::Key) => {
                        self.parse_cardinality_after_key(CardinalityKind::TagKey)
                    }
                    TokenKind::Keyword(Keyword::Keys) => self.parse_show_tag_keys(),
                    TokenKind::Keyword(Keyword::Values) => {
                        if self.eat_keyword(Keyword::Exact)? {
                            self.expect_keyword(Keyword::Cardinality)?;
                            self.parse_cardinality(CardinalityKind::TagValues, true)
                        } else if self.eat_keyword(Keyword::Cardinality)? {
                            self.parse_cardinality(CardinalityKind::TagValues, false)
                        } else {
                            self.parse_show_tag_values()
                        }
                    }
                    _ => Err(self.unexpected(&token, &["KEY", "KEYS", "VALUES"])),
                }
            }
            Keyword::Users => system(SystemShow::Users),
            _ => Err(self.unexpected(&token, SHOW_KEYWORDS)),
        }
    }

    /// `[EXACT] CARDINALITY ...` after `SHOW MEASUREMENT`, `SHOW TAG KEY`, `SHOW FIELD KEY`.
    fn parse_cardinality_after_key(&mut self, kind: CardinalityKind) -> Result<Statement> {
        let exact = self.eat_keyword(Keyword::Exact)?;
        let token = self.next()?;
        if token.kind != TokenKind::Keyword(Keyword::Cardinality) {
            let expected: &[&str] = if exact {
                &["CARDINALITY"]
            } else {
                &["EXACT", "CARDINALITY"]
            };
            return Err(self.unexpected(&token, expected));
        }
        self.parse_cardinality(kind, exact)
    }

    /// The clauses after `SHOW ... CARDINALITY`.
    fn parse_cardinality(&mut self, kind: CardinalityKind, exact: bool) -> Result<Statement> {
        let database = self.parse_on()?;
        let sources = self.parse_optional_from()?;
        let tag_key = if kind == CardinalityKind::TagValues {
            Some(self.parse_with_key()?)
        } else {
            None
        };
        let condition = self.parse_condition()?;
        let dimensions = self.parse_dimensions()?;
        let limit = self.parse_optional_count(Keyword::Limit)?;
        let offset = self.parse_optional_count(Keyword::Offset)?;
        Ok(Statement::ShowCardinality(ShowCardinality {
            kind,
            exact,
            database,
            sources,
            tag_key,
            condition,
            dimensions,
            limit,
            offset,
        }))
    }

    /// `[ON db]`.
    fn parse_on(&mut self) -> Result<Option<String>> {
        if self.eat_keyword(Keyword::On)? {
            Ok(Some(self.expect_ident()?))
        } else {
            Ok(None)
        }
    }

    /// `[FROM sources]` of SHOW statements (no subqueries).
    fn parse_optional_from(&mut self) -> Result<Vec<Measurement>> {
        if self.eat_keyword(Keyword::From)? {
            self.parse_sources(false)
        } else {
            Ok(Vec::new())
        }
    }

    /// `[FOR 'module']` of SHOW STATS / SHOW DIAGNOSTICS.
    fn parse_for_module(&mut self) -> Result<Option<String>> {
        if !self.eat_keyword(Keyword::For)? {
            return Ok(None);
        }
        let token = self.next()?;
        match token.kind {
            TokenKind::Str(module) => Ok(Some(module)),
            _ => Err(self.unexpected(&token, &["string"])),
        }
    }

    fn parse_show_measurements(&mut self) -> Result<Statement> {
        let mut database = None;
        let mut retention_policy = None;
        if self.eat_keyword(Keyword::On)? {
            database = Some(self.parse_name_or_wildcard()?);
            if self.eat(&TokenKind::Dot)? {
                retention_policy = Some(self.parse_name_or_wildcard()?);
            }
        }
        let mut with_measurement = None;
        if self.eat_keyword(Keyword::With)? {
            self.expect_keyword(Keyword::Measurement)?;
            let token = self.next()?;
            if !matches!(token.kind, TokenKind::Eq | TokenKind::EqRegex) {
                return Err(self.unexpected(&token, &["=", "=~"]));
            }
            with_measurement = Some(self.parse_source(false)?);
        }
        Ok(Statement::ShowMeasurements(ShowMeasurements {
            database,
            retention_policy,
            with_measurement,
            condition: self.parse_condition()?,
            order: self.parse_order_by()?,
            limit: self.parse_optional_count(Keyword::Limit)?,
            offset: self.parse_optional_count(Keyword::Offset)?,
        }))
    }

    /// A database or retention policy after `SHOW MEASUREMENTS ON`.
    fn parse_name_or_wildcard(&mut self) -> Result<String> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Ident(name) => Ok(name),
            TokenKind::Mul => Err(self.unsupported(
                token.offset,
                "SHOW MEASUREMENTS ON with a wildcard is not supported",
            )),
            _ => Err(self.unexpected(&token, &["identifier or *"])),
        }
    }

    fn parse_show_tag_keys(&mut self) -> Result<Statement> {
        let database = self.parse_on()?;
        let sources = self.parse_optional_from()?;
        let tag_key = if self.peek()?.kind == TokenKind::Keyword(Keyword::With) {
            Some(self.parse_with_key()?)
        } else {
            None
        };
        Ok(Statement::ShowTagKeys(ShowTagKeys {
            database,
            sources,
            tag_key,
            condition: self.parse_condition()?,
            order: self.parse_order_by()?,
            limit: self.parse_optional_count(Keyword::Limit)?,
            offset: self.parse_optional_count(Keyword::Offset)?,
            slimit: self.parse_optional_count(Keyword::Slimit)?,
            soffset: self.parse_optional_count(Keyword::Soffset)?,
        }))
    }

    fn parse_show_tag_values(&mut self) -> Result<Statement> {
        let database = self.parse_on()?;
        let sources = self.parse_optional_from()?;
        let tag_key = self.parse_with_key()?;
        Ok(Statement::ShowTagValues(ShowTagValues {
            database,
            sources,
            tag_key,
            condition: self.parse_condition()?,
            order: self.parse_order_by()?,
            limit: self.parse_optional_count(Keyword::Limit)?,
            offset: self.parse_optional_count(Keyword::Offset)?,
        }))
    }

    fn parse_show_field_keys(&mut self) -> Result<Statement> {
        Ok(Statement::ShowFieldKeys(ShowFieldKeys {
            database: self.parse_on()?,
            sources: self.parse_optional_from()?,
            order: self.parse_order_by()?,
            limit: self.parse_optional_count(Keyword::Limit)?,
            offset: self.parse_optional_count(Keyword::Offset)?,
        }))
    }

    fn parse_show_series(&mut self) -> Result<Statement> {
        Ok(Statement::ShowSeries(ShowSeries {
            database: self.parse_on()?,
            sources: self.parse_optional_from()?,
            condition: self.parse_condition()?,
            order: self.parse_order_by()?,
            limit: self.parse_optional_count(Keyword::Limit)?,
            offset: self.parse_optional_count(Keyword::Offset)?,
        }))
    }

    /// `WITH KEY (= k | != k | =~ /re/ | !~ /re/ | IN (k1, k2, ...))`.
    fn parse_with_key(&mut self) -> Result<TagKeyFilter> {
        self.expect_keyword(Keyword::With)?;
        self.expect_keyword(Keyword::Key)?;
        let token = self.next()?;
        match token.kind {
            TokenKind::Keyword(Keyword::In) => {
                self.expect(&TokenKind::LParen)?;
                let mut keys = vec![self.expect_ident()?];
                while self.eat(&TokenKind::Comma)? {
                    keys.push(self.expect_ident()?);
                }
                self.expect(&TokenKind::RParen)?;
                Ok(TagKeyFilter::In(keys))
            }
            TokenKind::Eq => Ok(TagKeyFilter::Eq(self.expect_ident()?)),
            TokenKind::Neq => Ok(TagKeyFilter::NotEq(self.expect_ident()?)),
            TokenKind::EqRegex => Ok(TagKeyFilter::Regex(self.expect_regex()?)),
            TokenKind::NeqRegex => Ok(TagKeyFilter::NotRegex(self.expect_regex()?)),
            _ => Err(self.unexpected(&token, &["IN", "=", "=~"])),
        }
    }

    // ---- SELECT ---------------------------------------------------------------------------

    /// The rest of a SELECT after the `SELECT` keyword.
    fn parse_select(&mut self) -> Result<SelectStatement> {
        let fields = self.parse_fields()?;
        let token = self.next()?;
        match token.kind {
            TokenKind::Keyword(Keyword::From) => {}
            TokenKind::Keyword(Keyword::Into) => {
                return Err(self.unsupported(token.offset, "SELECT INTO is not supported"));
            }
            _ => return Err(self.unexpected(&token, &["FROM"])),
        }
        let sources = self.parse_sources(true)?;
        let condition = self.parse_condition()?;
        let dimensions = self.parse_dimensions()?;
        let fill = self.parse_fill()?;
        let order = self.parse_order_by()?;
        let limit = self.parse_optional_count(Keyword::Limit)?;
        let offset = self.parse_optional_count(Keyword::Offset)?;
        let slimit = self.parse_optional_count(Keyword::Slimit)?;
        let soffset = self.parse_optional_count(Keyword::Soffset)?;
        let timezone = self.parse_timezone()?;
        Ok(SelectStatement {
            fields,
            sources,
            condition,
            dimensions,
            fill,
            order,
            limit,
            offset,
            slimit,
            soffset,
            timezone,
        })
    }

    fn parse_fields(&mut self) -> Result<Vec<Field>> {
        let mut fields = vec![self.parse_field()?];
        while self.eat(&TokenKind::Comma)? {
            fields.push(self.parse_field()?);
        }
        Ok(fields)
    }

    fn parse_field(&mut self) -> Result<Field> {
        let start = self.peek()?.offset;
        let expr = match self.try_regex()? {
            Some(re) => Expr::Regex(re),
            None => self.parse_expr()?,
        };
        if let Some(op) = first_boolean_op(&expr) {
            let mut err = self.error(
                start,
                format!("invalid operator {} in SELECT clause", op.as_str()),
            );
            err.hint = Some("operator is intended for WHERE clause");
            return Err(err);
        }
        let alias = if self.eat_keyword(Keyword::As)? {
            Some(self.expect_ident()?)
        } else {
            None
        };
        Ok(Field { expr, alias })
    }

    fn parse_sources(&mut self, in_select: bool) -> Result<Vec<Measurement>> {
        let mut sources = vec![self.parse_source(in_select)?];
        while self.eat(&TokenKind::Comma)? {
            sources.push(self.parse_source(in_select)?);
        }
        Ok(sources)
    }

    /// `m`, `"m"`, `rp.m`, `db.rp.m`, `db..m`, `/re/`, `rp./re/`, `db.rp./re/`, `db../re/`.
    fn parse_source(&mut self, in_select: bool) -> Result<Measurement> {
        if let Some(re) = self.try_regex()? {
            return Ok(Measurement {
                database: None,
                retention_policy: None,
                name: MeasurementName::Regex(re),
            });
        }
        if in_select {
            let token = self.peek()?;
            if token.kind == TokenKind::LParen {
                return Err(self.unsupported(token.offset, "subqueries are not supported"));
            }
        }
        let first = self.expect_ident()?;
        let (mut segments, regex_follows) = self.parse_segments(first, true)?;
        // Without a regex the last segment is the name; the segments before it qualify it.
        let name = if regex_follows {
            MeasurementName::Regex(self.expect_regex()?)
        } else {
            MeasurementName::Name(segments.pop().unwrap_or_default())
        };
        let retention_policy = segments.pop().and_then(non_empty);
        let database = segments.pop().and_then(non_empty);
        Ok(Measurement {
            database,
            retention_policy,
            name,
        })
    }

    /// The dot-separated segments of a name, starting with `first` (already consumed). A
    /// segment may be empty (`db..m`). With `allow_regex_tail`, a dot directly followed by
    /// `/` ends the segments and `true` is returned: a regex comes next.
    fn parse_segments(
        &mut self,
        first: String,
        allow_regex_tail: bool,
    ) -> Result<(Vec<String>, bool)> {
        let mut segments = vec![first];
        let mut regex_follows = false;
        let start = self.lexer.pos();
        while self.peek_raw()?.kind == TokenKind::Dot {
            self.lexer.next_raw()?;
            if self.lexer.peek_char_at(0) == Some('.') {
                segments.push(String::new());
                continue;
            }
            if allow_regex_tail && self.lexer.at_regex() {
                regex_follows = true;
                break;
            }
            segments.push(self.expect_ident()?);
        }
        let max = if regex_follows { 2 } else { 3 };
        if segments.len() > max {
            let shown: Vec<String> = segments.iter().map(|s| quote_ident(s)).collect();
            return Err(self.error(start, format!("too many segments in {}", shown.join("."))));
        }
        Ok((segments, regex_follows))
    }

    /// `[WHERE expr]`.
    fn parse_condition(&mut self) -> Result<Option<Expr>> {
        if self.eat_keyword(Keyword::Where)? {
            Ok(Some(self.parse_expr()?))
        } else {
            Ok(None)
        }
    }

    /// `[GROUP BY dimension, ...]`.
    fn parse_dimensions(&mut self) -> Result<Vec<Dimension>> {
        if !self.eat_keyword(Keyword::Group)? {
            return Ok(Vec::new());
        }
        self.expect_keyword(Keyword::By)?;
        let mut dimensions = Vec::new();
        let mut has_time = false;
        loop {
            let start = self.peek()?.offset;
            let dimension = self.parse_dimension()?;
            if matches!(dimension, Dimension::Time { .. }) {
                if has_time {
                    return Err(self.error(start, "multiple time dimensions not allowed"));
                }
                has_time = true;
            }
            dimensions.push(dimension);
            if !self.eat(&TokenKind::Comma)? {
                return Ok(dimensions);
            }
        }
    }

    fn parse_dimension(&mut self) -> Result<Dimension> {
        if let Some(re) = self.try_regex()? {
            return Ok(Dimension::Regex(re));
        }
        let start = self.peek()?.offset;
        match self.parse_expr()? {
            Expr::Call(call) if call.name == "time" => {
                if call.args.is_empty() || call.args.len() > 2 {
                    return Err(self.error(start, "time dimension expected 1 or 2 arguments"));
                }
                let interval_ns = match call.args.first() {
                    Some(Expr::Duration(d)) => *d,
                    _ => {
                        return Err(self.error(start, "time dimension must have duration argument"));
                    }
                };
                if interval_ns <= 0 {
                    return Err(self.error(start, "time dimension must have a positive duration"));
                }
                let offset = match call.args.get(1) {
                    None => None,
                    Some(Expr::Duration(d)) => Some(TimeOffset::Duration(*d)),
                    Some(Expr::Call(c)) if c.name == "now" && c.args.is_empty() => {
                        Some(TimeOffset::Now)
                    }
                    Some(_) => {
                        return Err(
                            self.error(start, "time dimension offset must be duration or now()")
                        );
                    }
                };
                Ok(Dimension::Time {
                    interval_ns,
                    offset,
                })
            }
            Expr::VarRef(v) if v.name.eq_ignore_ascii_case("time") => Err(self.error(
                start,
                "time() is a function and expects at least one argument",
            )),
            Expr::VarRef(v) => Ok(Dimension::Tag(v.name)),
            Expr::Wildcard(_) => Ok(Dimension::Wildcard),
            Expr::Regex(re) => Ok(Dimension::Regex(re)),
            _ => Err(self.error(start, "only time and tag dimensions allowed")),
        }
    }

    /// Whether the next token is the identifier `name` (any case), as `fill` and `tz` are.
    fn peek_is_ident(&mut self, name: &str) -> Result<Option<usize>> {
        let token = self.peek()?;
        Ok(match token.kind {
            TokenKind::Ident(ident) if ident.eq_ignore_ascii_case(name) => Some(token.offset),
            _ => None,
        })
    }

    /// `[fill(null | none | previous | linear | <number>)]`.
    fn parse_fill(&mut self) -> Result<Fill> {
        let Some(start) = self.peek_is_ident("fill")? else {
            return Ok(Fill::Null);
        };
        let Expr::Call(call) = self.parse_expr()? else {
            return Err(self.error(start, "fill must be a function call"));
        };
        let [arg] = call.args.as_slice() else {
            return Err(self.error(
                start,
                "fill requires an argument, e.g.: 0, null, none, previous, linear",
            ));
        };
        match arg {
            Expr::VarRef(v) if v.data_type.is_none() => {
                match v.name.to_ascii_lowercase().as_str() {
                    "null" => return Ok(Fill::Null),
                    "none" => return Ok(Fill::None),
                    "previous" => return Ok(Fill::Previous),
                    "linear" => return Ok(Fill::Linear),
                    _ => {}
                }
            }
            Expr::Integer(i) => return Ok(Fill::Integer(*i)),
            Expr::Number(x) => return Ok(Fill::Float(*x)),
            _ => {}
        }
        Err(self.error(start, "expected number argument in fill()"))
    }

    /// `[tz('zone')]`.
    fn parse_timezone(&mut self) -> Result<Option<String>> {
        let Some(start) = self.peek_is_ident("tz")? else {
            return Ok(None);
        };
        let Expr::Call(call) = self.parse_expr()? else {
            return Err(self.error(start, "tz must be a function call"));
        };
        match call.args.as_slice() {
            [Expr::Str(zone)] => Ok(Some(zone.clone())),
            [_] => Err(self.error(start, "expected string argument in tz()")),
            _ => Err(self.error(start, "tz requires exactly one argument")),
        }
    }

    /// `[ORDER BY time [ASC|DESC] | ORDER BY ASC|DESC]`.
    fn parse_order_by(&mut self) -> Result<SortOrder> {
        if !self.eat_keyword(Keyword::Order)? {
            return Ok(SortOrder::Asc);
        }
        self.expect_keyword(Keyword::By)?;
        let token = self.next()?;
        let order = match token.kind {
            TokenKind::Keyword(Keyword::Asc) => SortOrder::Asc,
            TokenKind::Keyword(Keyword::Desc) => SortOrder::Desc,
            TokenKind::Ident(name) => {
                if !name.eq_ignore_ascii_case("time") {
                    return Err(
                        self.error(token.offset, "only ORDER BY time supported at this time")
                    );
                }
                if self.eat_keyword(Keyword::Desc)? {
                    SortOrder::Desc
                } else {
                    self.eat_keyword(Keyword::Asc)?;
                    SortOrder::Asc
                }
            }
            _ => return Err(self.unexpected(&token, &["identifier", "ASC", "DESC"])),
        };
        let next = self.peek()?;
        if next.kind == TokenKind::Comma {
            return Err(self.error(next.offset, "only ORDER BY time supported at this time"));
        }
        Ok(order)
    }

    /// `[<keyword> <n>]` for LIMIT, OFFSET, SLIMIT, SOFFSET; 0 is `None` (no limit).
    fn parse_optional_count(&mut self, keyword: Keyword) -> Result<Option<u64>> {
        if !self.eat_keyword(keyword)? {
            return Ok(None);
        }
        let token = self.next()?;
        let TokenKind::Integer(text) = &token.kind else {
            return Err(self.unexpected(&token, &["integer"]));
        };
        match text.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) if i64::try_from(n).is_ok() => Ok(Some(n)),
            _ => Err(self.error(
                token.offset,
                format!("{} value {text} is out of range", keyword.as_str()),
            )),
        }
    }

    // ---- regexes --------------------------------------------------------------------------

    /// A regex if one starts at the next non-whitespace character.
    fn try_regex(&mut self) -> Result<Option<RegexLiteral>> {
        self.skip_whitespace()?;
        if !self.lexer.at_regex() {
            return Ok(None);
        }
        let token = self.lexer.scan_regex()?;
        let TokenKind::Regex(pattern) = token.kind else {
            return Err(self.unexpected(&token, &["regex"]));
        };
        RegexLiteral::new(&pattern).map(Some).map_err(|e| {
            self.error(
                token.offset,
                format!("bad regex /{pattern}/: {}", regex_error_reason(&e)),
            )
        })
    }

    fn expect_regex(&mut self) -> Result<RegexLiteral> {
        match self.try_regex()? {
            Some(re) => Ok(re),
            None => {
                let token = self.peek()?;
                Err(self.unexpected(&token, &["regex"]))
            }
        }
    }

    // ---- expressions ----------------------------------------------------------------------
    //
    // The functions on the recursive path (parse_binary → parse_unary → parse_operand →
    // parse_paren / parse_call / parse_signed → parse_binary ...) keep few locals and leave
    // token handling, literal parsing and error building to non-recursive helpers, so that a
    // nesting level costs little stack even in debug builds (a test checks the bound).

    pub(crate) fn parse_expr(&mut self) -> Result<Expr> {
        Ok(self.parse_binary(1)?.expr)
    }

    /// Precedence climbing: operands joined by operators of precedence ≥ `min_precedence`.
    fn parse_binary(&mut self, min_precedence: u8) -> Result<Parsed> {
        let mut lhs = self.parse_unary()?;
        while let Some((op, offset)) = self.next_operator(min_precedence)? {
            let rhs = if matches!(op, BinaryOp::EqRegex | BinaryOp::NeqRegex) {
                Parsed::leaf(Expr::Regex(self.expect_regex()?))
            } else {
                self.parse_binary(op.precedence() + 1)?
            };
            lhs = self.join(lhs, op, rhs, offset)?;
        }
        Ok(lhs)
    }

    /// Consumes the next token if it is a binary operator of precedence ≥ `min_precedence`.
    #[inline(never)]
    fn next_operator(&mut self, min_precedence: u8) -> Result<Option<(BinaryOp, usize)>> {
        let save = self.lexer.pos();
        let token = self.next()?;
        match binary_op(&token.kind) {
            Some(op) if op.precedence() >= min_precedence => Ok(Some((op, token.offset))),
            _ => {
                self.lexer.set_pos(save);
                Ok(None)
            }
        }
    }

    /// `lhs op rhs`, within [`MAX_EXPR_DEPTH`].
    #[inline(never)]
    fn join(&self, lhs: Parsed, op: BinaryOp, rhs: Parsed, offset: usize) -> Result<Parsed> {
        let depth = 1 + lhs.depth.max(rhs.depth);
        if depth > MAX_EXPR_DEPTH {
            return Err(self.too_deep(offset, MAX_EXPR_DEPTH));
        }
        Ok(Parsed {
            expr: Expr::Binary(BinaryExpr {
                op,
                lhs: Box::new(lhs.expr),
                rhs: Box::new(rhs.expr),
            }),
            depth,
        })
    }

    /// `expr` one level above `depth`, within [`MAX_EXPR_DEPTH`].
    #[inline(never)]
    fn wrap(&self, expr: Expr, depth: usize) -> Result<Parsed> {
        if depth + 1 > MAX_EXPR_DEPTH {
            return Err(self.too_deep(self.lexer.pos(), MAX_EXPR_DEPTH));
        }
        Ok(Parsed {
            expr,
            depth: depth + 1,
        })
    }

    /// An operand, with the recursion guard.
    fn parse_unary(&mut self) -> Result<Parsed> {
        if self.nesting >= MAX_NESTING {
            return Err(self.too_deep(self.lexer.pos(), MAX_NESTING));
        }
        self.nesting += 1;
        let result = self.parse_operand();
        self.nesting -= 1;
        result
    }

    fn parse_operand(&mut self) -> Result<Parsed> {
        let token = self.next()?;
        match token.kind {
            TokenKind::LParen => self.parse_paren(),
            TokenKind::Ident(name) => {
                if self.take_call_paren()? {
                    self.parse_call(&name)
                } else {
                    self.parse_var_ref(name).map(Parsed::leaf)
                }
            }
            TokenKind::Keyword(Keyword::Distinct) => {
                if self.take_call_paren()? {
                    self.parse_call("distinct")
                } else {
                    self.parse_distinct_ident()
                }
            }
            TokenKind::Add => self.parse_signed(false),
            TokenKind::Sub => self.parse_signed(true),
            kind => self.parse_leaf(kind, token.offset),
        }
    }

    /// `( expr )` after the `(`.
    fn parse_paren(&mut self) -> Result<Parsed> {
        let inner = self.parse_binary(1)?;
        self.expect_close_paren()?;
        self.wrap(Expr::Paren(Box::new(inner.expr)), inner.depth)
    }

    #[inline(never)]
    fn expect_close_paren(&mut self) -> Result<()> {
        self.expect(&TokenKind::RParen).map(drop)
    }

    /// Consumes a `(` directly after a name, which makes the name a call.
    #[inline(never)]
    fn take_call_paren(&mut self) -> Result<bool> {
        let save = self.lexer.pos();
        if self.lexer.next_raw()?.kind == TokenKind::LParen {
            return Ok(true);
        }
        self.lexer.set_pos(save);
        Ok(false)
    }

    /// `DISTINCT x` (no parenthesis), which is `distinct(x)` as InfluxDB rewrites it.
    #[inline(never)]
    fn parse_distinct_ident(&mut self) -> Result<Parsed> {
        let next = self.lexer.next_raw()?;
        if next.kind != TokenKind::Whitespace {
            return Err(self.unexpected(&next, &["(", "identifier"]));
        }
        let name = self.expect_ident()?;
        Ok(Parsed {
            expr: Expr::Call(Call {
                name: "distinct".to_string(),
                args: vec![Expr::VarRef(VarRef {
                    name,
                    data_type: None,
                })],
            }),
            depth: 2,
        })
    }

    /// An operand that is a single token: a literal or a wildcard.
    #[inline(never)]
    fn parse_leaf(&mut self, kind: TokenKind, offset: usize) -> Result<Parsed> {
        let expr = match kind {
            TokenKind::Str(s) => Expr::Str(s),
            TokenKind::Number(text) => match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Expr::Number(x),
                _ => return Err(self.error(offset, format!("unable to parse number {text}"))),
            },
            TokenKind::Integer(text) => {
                if let Ok(i) = text.parse::<i64>() {
                    Expr::Integer(i)
                } else if let Ok(u) = text.parse::<u64>() {
                    Expr::Unsigned(u)
                } else {
                    return Err(self.error(offset, format!("unable to parse integer {text}")));
                }
            }
            TokenKind::Keyword(Keyword::True) => Expr::Bool(true),
            TokenKind::Keyword(Keyword::False) => Expr::Bool(false),
            TokenKind::Duration(text) => Expr::Duration(self.duration(&text, offset)?),
            TokenKind::Mul => {
                let mut data_type = None;
                if self.peek_raw()?.kind == TokenKind::DoubleColon {
                    self.lexer.next_raw()?;
                    let t = self.lexer.next_raw()?;
                    data_type = Some(match t.kind {
                        TokenKind::Keyword(Keyword::Field) => WildcardType::Field,
                        TokenKind::Keyword(Keyword::Tag) => WildcardType::Tag,
                        _ => return Err(self.unexpected(&t, &["field", "tag"])),
                    });
                }
                Expr::Wildcard(data_type)
            }
            TokenKind::BoundParam(_) => {
                return Err(self.unsupported(offset, "bound parameters are not supported"));
            }
            kind => return Err(self.unexpected(&Token { kind, offset }, UNARY_EXPECTED)),
        };
        Ok(Parsed::leaf(expr))
    }

    /// The operand after a unary `+` / `-`: literals are negated, anything else `x` becomes
    /// `-1 * x` (`1 * x`), as in InfluxDB.
    fn parse_signed(&mut self, negative: bool) -> Result<Parsed> {
        let offset = self.check_signed_operand()?;
        let operand = self.parse_unary()?;
        self.apply_sign(operand, negative, offset)
    }

    /// Checks that a signed operand follows (a number, duration, name or parenthesis) and
    /// returns its offset.
    #[inline(never)]
    fn check_signed_operand(&mut self) -> Result<usize> {
        let next = self.peek()?;
        match next.kind {
            TokenKind::Number(_)
            | TokenKind::Integer(_)
            | TokenKind::Duration(_)
            | TokenKind::LParen
            | TokenKind::Ident(_) => Ok(next.offset),
            _ => Err(self.unexpected(&next, &["identifier", "number", "duration", "("])),
        }
    }

    #[inline(never)]
    fn apply_sign(&self, operand: Parsed, negative: bool, offset: usize) -> Result<Parsed> {
        let expr = match operand.expr {
            Expr::Number(x) => Expr::Number(if negative { -x } else { x }),
            // A positive literal: negation cannot overflow.
            Expr::Integer(i) => Expr::Integer(if negative { -i } else { i }),
            Expr::Unsigned(u) if !negative => Expr::Unsigned(u),
            Expr::Unsigned(u) => match 0i64.checked_sub_unsigned(u) {
                Some(i) => Expr::Integer(i),
                None => {
                    return Err(self.error(offset, format!("constant -{u} underflows int64")));
                }
            },
            Expr::Duration(d) => Expr::Duration(if negative { -d } else { d }),
            other => {
                let sign = Expr::Integer(if negative { -1 } else { 1 });
                return self.join(
                    Parsed::leaf(sign),
                    BinaryOp::Mul,
                    Parsed {
                        expr: other,
                        depth: operand.depth,
                    },
                    offset,
                );
            }
        };
        Ok(Parsed::leaf(expr))
    }

    /// A field / tag reference after its first segment: more `.segments`, then `::type`.
    #[inline(never)]
    fn parse_var_ref(&mut self, first: String) -> Result<Expr> {
        let (segments, _) = self.parse_segments(first, false)?;
        let mut data_type = None;
        if self.peek_raw()?.kind == TokenKind::DoubleColon {
            self.lexer.next_raw()?;
            let token = self.lexer.next_raw()?;
            data_type = Some(match &token.kind {
                TokenKind::Ident(name) => match name.to_ascii_lowercase().as_str() {
                    "float" => DataType::Float,
                    "integer" => DataType::Integer,
                    "unsigned" => DataType::Unsigned,
                    "string" => DataType::String,
                    "boolean" => DataType::Boolean,
                    _ => return Err(self.unexpected(&token, CAST_EXPECTED)),
                },
                TokenKind::Keyword(Keyword::Field) => DataType::Field,
                TokenKind::Keyword(Keyword::Tag) => DataType::Tag,
                _ => return Err(self.unexpected(&token, CAST_EXPECTED)),
            });
        }
        Ok(Expr::VarRef(VarRef {
            name: segments.join("."),
            data_type,
        }))
    }

    /// A call after `name(`: arguments (any may be a regex) and `)`.
    fn parse_call(&mut self, name: &str) -> Result<Parsed> {
        let mut call = Call {
            name: name.to_lowercase(),
            args: Vec::new(),
        };
        if self.take_empty_args()? {
            return Ok(Parsed::leaf(Expr::Call(call)));
        }
        let mut depth = 1;
        loop {
            let arg = match self.try_regex()? {
                Some(re) => Parsed::leaf(Expr::Regex(re)),
                None => self.parse_binary(1)?,
            };
            depth = depth.max(arg.depth);
            call.args.push(arg.expr);
            if !self.eat(&TokenKind::Comma)? {
                break;
            }
        }
        self.expect_close_paren()?;
        self.wrap(Expr::Call(call), depth)
    }

    /// Consumes the `)` of an argument-less call.
    #[inline(never)]
    fn take_empty_args(&mut self) -> Result<bool> {
        self.skip_whitespace()?;
        Ok(!self.lexer.at_regex() && self.eat(&TokenKind::RParen)?)
    }
}

const CAST_EXPECTED: &[&str] = &[
    "float", "integer", "unsigned", "string", "boolean", "field", "tag",
];

/// The one-line reason of a regex compile error (the crate's syntax errors are multi-line,
/// with a caret diagram).
fn regex_error_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}
