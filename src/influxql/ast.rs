//! The InfluxQL syntax tree: plain data, `Debug + Clone + PartialEq`, printed back to
//! InfluxQL by the `Display` impls in `display.rs`.
//!
//! Shapes follow influxql's `ast.go`, simplified where Meridian needs less (no subquery
//! sources, no `INTO` targets, no bound parameters). Invariants of a tree built by the
//! parser:
//! - every [`RegexLiteral`] is compiled, with a 1 MiB size limit;
//! - expression trees are at most `MAX_EXPR_DEPTH` levels deep;
//! - call names are lower case (`MEAN(x)` is `mean`), and `DISTINCT x` is the call
//!   `distinct(x)` (as InfluxDB rewrites it before execution);
//! - durations are signed nanoseconds; `LIMIT 0` / `OFFSET 0` (no limit in InfluxDB) are
//!   `None`;
//! - database and retention-policy names are never empty strings (`db..m` has no policy).

use std::fmt;

use regex::{Regex, RegexBuilder};

/// Size limit for compiled regexes (`RegexBuilder::size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One statement of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `SELECT ...`.
    Select(SelectStatement),
    /// `SHOW DATABASES`.
    ShowDatabases,
    /// `SHOW MEASUREMENTS ...`.
    ShowMeasurements(ShowMeasurements),
    /// `SHOW TAG KEYS ...`.
    ShowTagKeys(ShowTagKeys),
    /// `SHOW TAG VALUES ... WITH KEY ...`.
    ShowTagValues(ShowTagValues),
    /// `SHOW FIELD KEYS ...`.
    ShowFieldKeys(ShowFieldKeys),
    /// `SHOW SERIES ...`.
    ShowSeries(ShowSeries),
    /// `SHOW RETENTION POLICIES [ON db]`.
    ShowRetentionPolicies {
        /// `ON db`; `None` means the request's default database.
        database: Option<String>,
    },
    /// `SHOW {MEASUREMENT | SERIES | TAG KEY | TAG VALUES | FIELD KEY} [EXACT] CARDINALITY`.
    ShowCardinality(ShowCardinality),
    /// Server-administration `SHOW`s (users, stats, shards, ...), answered by the executor.
    ShowSystem(SystemShow),
    /// `CREATE DATABASE name [WITH ...]`.
    CreateDatabase(CreateDatabase),
    /// `DROP DATABASE name`.
    DropDatabase {
        /// Database to drop.
        name: String,
    },
    /// `DROP MEASUREMENT name`.
    DropMeasurement {
        /// Measurement to drop.
        name: String,
    },
    /// `DROP SERIES [FROM ...] [WHERE ...]` (at least one of the two).
    DropSeries(SeriesFilter),
    /// `DELETE [FROM ...] [WHERE ...]` (at least one of the two).
    Delete(SeriesFilter),
}

/// `SELECT fields FROM sources [WHERE] [GROUP BY] [fill()] [ORDER BY] [LIMIT] [OFFSET]
/// [SLIMIT] [SOFFSET] [tz()]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectStatement {
    /// The projections, at least one.
    pub fields: Vec<Field>,
    /// `FROM`, at least one.
    pub sources: Vec<Measurement>,
    /// `WHERE`, kept as a generic expression (see [`split_time_range`]).
    ///
    /// [`split_time_range`]: super::split_time_range
    pub condition: Option<Expr>,
    /// `GROUP BY`, in the order written.
    pub dimensions: Vec<Dimension>,
    /// `fill(...)`; [`Fill::Null`] when absent.
    pub fill: Fill,
    /// `ORDER BY time ASC|DESC`; ascending when absent.
    pub order: SortOrder,
    /// `LIMIT n` (points per series).
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
    /// `SLIMIT n` (series).
    pub slimit: Option<u64>,
    /// `SOFFSET n`.
    pub soffset: Option<u64>,
    /// `tz('Europe/Paris')`: the zone name, unchecked (the executor resolves it).
    pub timezone: Option<String>,
}

/// One projection of a SELECT: an expression and its optional `AS` alias.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The expression (may be a [`Expr::Wildcard`] or a [`Expr::Regex`]).
    pub expr: Expr,
    /// `AS alias`.
    pub alias: Option<String>,
}

/// A data source: a measurement name or a regex over names, optionally qualified.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// `db` of `db.rp.m` / `db..m`.
    pub database: Option<String>,
    /// `rp` of `db.rp.m` / `rp.m`.
    pub retention_policy: Option<String>,
    /// The name or regex.
    pub name: MeasurementName,
}

/// The last part of a [`Measurement`].
#[derive(Debug, Clone, PartialEq)]
pub enum MeasurementName {
    /// An exact name (may be empty only if written as `""`).
    Name(String),
    /// `/regex/`: every measurement whose name matches.
    Regex(RegexLiteral),
}

/// A `GROUP BY` term.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// `time(interval[, offset])`.
    Time {
        /// Bucket width in nanoseconds, > 0.
        interval_ns: i64,
        /// Bucket offset.
        offset: Option<TimeOffset>,
    },
    /// A tag key.
    Tag(String),
    /// `*`: every tag.
    Wildcard,
    /// `/regex/`: every tag whose key matches.
    Regex(RegexLiteral),
}

/// Offset argument of `GROUP BY time(interval, offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeOffset {
    /// A duration in nanoseconds (may be negative).
    Duration(i64),
    /// `now()`: align buckets on the query's `now()`.
    Now,
}

/// `fill(...)` option.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Fill {
    /// `fill(null)` or no fill clause.
    #[default]
    Null,
    /// `fill(none)`: drop empty buckets.
    None,
    /// `fill(previous)`.
    Previous,
    /// `fill(linear)`.
    Linear,
    /// `fill(<integer>)`.
    Integer(i64),
    /// `fill(<float>)`.
    Float(f64),
}

/// `ORDER BY time ASC|DESC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    /// Oldest first (the default).
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A field, tag or `time` reference.
    VarRef(VarRef),
    /// A function call, e.g. `mean(value)`, `now()`, `percentile(value, 95)`.
    Call(Call),
    /// An integer literal.
    Integer(i64),
    /// An integer literal above `i64::MAX`.
    Unsigned(u64),
    /// A float literal (always finite).
    Number(f64),
    /// A `'string'` literal.
    Str(String),
    /// `true` / `false`.
    Bool(bool),
    /// A duration literal in nanoseconds, e.g. `10s`.
    Duration(i64),
    /// A `/regex/` (right of `=~` / `!~`, a call argument, or a SELECT field).
    Regex(RegexLiteral),
    /// `*`, `*::field` or `*::tag`.
    Wildcard(Option<WildcardType>),
    /// `lhs op rhs`. Unary minus on a non-literal `-x` is `-1 * x`, as in InfluxDB.
    Binary(BinaryExpr),
    /// `(expr)`.
    Paren(Box<Expr>),
}

/// A reference to a field, tag or `time`.
#[derive(Debug, Clone, PartialEq)]
pub struct VarRef {
    /// The name; segments written `a.b` are joined with `.` (InfluxDB does the same).
    pub name: String,
    /// `::float`, `::tag`, ... cast.
    pub data_type: Option<DataType>,
}

/// The type named by a `::type` cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `::float`.
    Float,
    /// `::integer`.
    Integer,
    /// `::unsigned`.
    Unsigned,
    /// `::string`.
    String,
    /// `::boolean`.
    Boolean,
    /// `::field`: any field type.
    Field,
    /// `::tag`.
    Tag,
}

impl DataType {
    /// The name as written after `::`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Float => "float",
            DataType::Integer => "integer",
            DataType::Unsigned => "unsigned",
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Field => "field",
            DataType::Tag => "tag",
        }
    }
}

/// `*::field` / `*::tag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WildcardType {
    /// `*::field`.
    Field,
    /// `*::tag`.
    Tag,
}

/// A function call. Any name parses; the executor rejects the ones it does not implement.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Lower-case function name.
    pub name: String,
    /// Arguments in order.
    pub args: Vec<Expr>,
}

/// `lhs op rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExpr {
    /// The operator.
    pub op: BinaryOp,
    /// Left operand.
    pub lhs: Box<Expr>,
    /// Right operand (a [`Expr::Regex`] for `=~` / `!~`).
    pub rhs: Box<Expr>,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `=`
    Eq,
    /// `!=` or `<>`
    Neq,
    /// `=~`
    EqRegex,
    /// `!~`
    NeqRegex,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl BinaryOp {
    /// Binding strength (influxql `Token.Precedence`): OR 1, AND 2, comparisons 3,
    /// `+ - | ^` 4, `* / % &` 5. All operators are left-associative.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::Neq
            | BinaryOp::EqRegex
            | BinaryOp::NeqRegex
            | BinaryOp::Lt
            | BinaryOp::Lte
            | BinaryOp::Gt
            | BinaryOp::Gte => 3,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::BitOr | BinaryOp::BitXor => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod | BinaryOp::BitAnd => 5,
        }
    }

    /// Whether the operator yields a boolean (comparison, regex match, AND, OR): these are
    /// rejected in a SELECT field list, as InfluxDB does.
    pub fn is_boolean(self) -> bool {
        self.precedence() <= 3
    }

    /// Whether the operator is a comparison (`= != =~ !~ < <= > >=`).
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// The operator as InfluxDB prints it (`<>` prints as `!=`).
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::BitAnd => "&",
            BinaryOp::BitOr => "|",
            BinaryOp::BitXor => "^",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Eq => "=",
            BinaryOp::Neq => "!=",
            BinaryOp::EqRegex => "=~",
            BinaryOp::NeqRegex => "!~",
            BinaryOp::Lt => "<",
            BinaryOp::Lte => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Gte => ">=",
        }
    }
}

/// A compiled regex that compares equal to another with the same pattern text
/// (`regex::Regex` has no `PartialEq`).
#[derive(Clone)]
pub struct RegexLiteral(Regex);

impl RegexLiteral {
    /// Compiles `pattern` with the [`REGEX_SIZE_LIMIT`].
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(RegexLiteral)
    }

    /// The compiled regex (unanchored, as in InfluxDB: `/cpu/` matches `cpu_total`).
    pub fn regex(&self) -> &Regex {
        &self.0
    }

    /// The pattern text (with `\/` already turned into `/`).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for RegexLiteral {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for RegexLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegexLiteral({:?})", self.as_str())
    }
}

/// `WITH KEY ...` of `SHOW TAG VALUES` (and optionally `SHOW TAG KEYS`).
#[derive(Debug, Clone, PartialEq)]
pub enum TagKeyFilter {
    /// `= key`
    Eq(String),
    /// `!= key`
    NotEq(String),
    /// `=~ /re/`
    Regex(RegexLiteral),
    /// `!~ /re/`
    NotRegex(RegexLiteral),
    /// `IN (k1, k2, ...)`
    In(Vec<String>),
}

/// `SHOW MEASUREMENTS [ON db[.rp]] [WITH MEASUREMENT =|=~ ...] [WHERE] [ORDER BY] [LIMIT]
/// [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowMeasurements {
    /// `ON db`.
    pub database: Option<String>,
    /// `ON db.rp`.
    pub retention_policy: Option<String>,
    /// `WITH MEASUREMENT = name` or `=~ /re/`.
    pub with_measurement: Option<Measurement>,
    /// `WHERE` (on tags).
    pub condition: Option<Expr>,
    /// `ORDER BY`.
    pub order: SortOrder,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
}

/// `SHOW TAG KEYS [ON db] [FROM] [WITH KEY ...] [WHERE] [ORDER BY] [LIMIT] [OFFSET] [SLIMIT]
/// [SOFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowTagKeys {
    /// `ON db`.
    pub database: Option<String>,
    /// `FROM` (empty: every measurement).
    pub sources: Vec<Measurement>,
    /// `WITH KEY ...`.
    pub tag_key: Option<TagKeyFilter>,
    /// `WHERE`.
    pub condition: Option<Expr>,
    /// `ORDER BY`.
    pub order: SortOrder,
    /// `LIMIT n` (keys per measurement).
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
    /// `SLIMIT n` (measurements).
    pub slimit: Option<u64>,
    /// `SOFFSET n`.
    pub soffset: Option<u64>,
}

/// `SHOW TAG VALUES [ON db] [FROM] WITH KEY ... [WHERE] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowTagValues {
    /// `ON db`.
    pub database: Option<String>,
    /// `FROM` (empty: every measurement).
    pub sources: Vec<Measurement>,
    /// `WITH KEY ...` (required).
    pub tag_key: TagKeyFilter,
    /// `WHERE`.
    pub condition: Option<Expr>,
    /// `ORDER BY`.
    pub order: SortOrder,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
}

/// `SHOW FIELD KEYS [ON db] [FROM] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowFieldKeys {
    /// `ON db`.
    pub database: Option<String>,
    /// `FROM` (empty: every measurement).
    pub sources: Vec<Measurement>,
    /// `ORDER BY`.
    pub order: SortOrder,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
}

/// `SHOW SERIES [ON db] [FROM] [WHERE] [ORDER BY] [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowSeries {
    /// `ON db`.
    pub database: Option<String>,
    /// `FROM` (empty: every measurement).
    pub sources: Vec<Measurement>,
    /// `WHERE`.
    pub condition: Option<Expr>,
    /// `ORDER BY`.
    pub order: SortOrder,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
}

/// What a `SHOW ... CARDINALITY` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardinalityKind {
    /// `SHOW MEASUREMENT [EXACT] CARDINALITY`.
    Measurement,
    /// `SHOW SERIES [EXACT] CARDINALITY`.
    Series,
    /// `SHOW TAG KEY [EXACT] CARDINALITY`.
    TagKey,
    /// `SHOW TAG VALUES [EXACT] CARDINALITY ... WITH KEY ...`.
    TagValues,
    /// `SHOW FIELD KEY [EXACT] CARDINALITY`.
    FieldKey,
}

/// `SHOW <kind> [EXACT] CARDINALITY [ON db] [FROM] [WITH KEY ...] [WHERE] [GROUP BY]
/// [LIMIT] [OFFSET]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowCardinality {
    /// What is counted.
    pub kind: CardinalityKind,
    /// `EXACT` was given (otherwise an estimate is acceptable).
    pub exact: bool,
    /// `ON db`.
    pub database: Option<String>,
    /// `FROM`.
    pub sources: Vec<Measurement>,
    /// `WITH KEY ...`: present exactly for [`CardinalityKind::TagValues`].
    pub tag_key: Option<TagKeyFilter>,
    /// `WHERE`.
    pub condition: Option<Expr>,
    /// `GROUP BY`.
    pub dimensions: Vec<Dimension>,
    /// `LIMIT n`.
    pub limit: Option<u64>,
    /// `OFFSET n`.
    pub offset: Option<u64>,
}

/// Administrative `SHOW` statements: parsed so that the executor can answer them (often with
/// an empty result or an "unsupported" statement error of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemShow {
    /// `SHOW USERS`.
    Users,
    /// `SHOW GRANTS [FOR user]` (InfluxDB requires `FOR user`; it is optional here).
    Grants {
        /// The user.
        user: Option<String>,
    },
    /// `SHOW STATS [FOR 'module']`.
    Stats {
        /// The module.
        module: Option<String>,
    },
    /// `SHOW DIAGNOSTICS [FOR 'module']`.
    Diagnostics {
        /// The module.
        module: Option<String>,
    },
    /// `SHOW SHARDS`.
    Shards,
    /// `SHOW SHARD GROUPS`.
    ShardGroups,
    /// `SHOW QUERIES`.
    Queries,
    /// `SHOW CONTINUOUS QUERIES`.
    ContinuousQueries,
    /// `SHOW SUBSCRIPTIONS`.
    Subscriptions,
}

/// `CREATE DATABASE name [WITH [DURATION d] [REPLICATION n] [SHARD DURATION d] [FUTURE
/// LIMIT d] [PAST LIMIT d] [NAME rp]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateDatabase {
    /// Database name.
    pub name: String,
    /// The `WITH` part, if given.
    pub retention_policy: Option<RetentionPolicySpec>,
}

/// The `WITH` part of `CREATE DATABASE`. Durations are nanoseconds; `INF` is `Some(0)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionPolicySpec {
    /// `DURATION d`.
    pub duration_ns: Option<i64>,
    /// `REPLICATION n` (1 ..= i32::MAX).
    pub replication: Option<u32>,
    /// `SHARD DURATION d`.
    pub shard_duration_ns: Option<i64>,
    /// `FUTURE LIMIT d`.
    pub future_limit_ns: Option<i64>,
    /// `PAST LIMIT d`.
    pub past_limit_ns: Option<i64>,
    /// `NAME rp`.
    pub name: Option<String>,
}

/// The series selection of `DROP SERIES` and `DELETE`: at least one part is present.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFilter {
    /// `FROM` (empty: every measurement). `DROP SERIES` sources carry no database or
    /// retention policy; `DELETE` sources no database.
    pub sources: Vec<Measurement>,
    /// `WHERE`.
    pub condition: Option<Expr>,
}
