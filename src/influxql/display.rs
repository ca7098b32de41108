//! Printing the syntax tree back to InfluxQL, as influxql's `String()` methods do.
//!
//! Names are quoted only when needed ([`quote_ident`]: keywords, empty names, anything
//! that is not a bare identifier), strings with [`quote_string`], durations with
//! `format_duration`, floats always with a `.` so that they re-parse as floats.
//!
//! Invariant (tested): for any statement the parser accepts, parsing its printed form gives
//! an equal tree. One deliberate deviation from InfluxDB keeps this true: a unary minus on a
//! non-literal (`a / -x`, stored as `a / (-1 * x)`) is printed as `-x` when it is the right
//! operand of another operator; InfluxDB prints `a / -1 * x`, which re-parses as
//! `(a / -1) * x`.

use std::fmt::{self, Display, Formatter, Write as _};

use super::ast::*;
use super::duration::format_duration;
use super::lexer::Keyword;

/// Whether `name` must be double-quoted to be read back as the same identifier.
pub fn ident_needs_quotes(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    if !(first.is_ascii_alphabetic() || first == '_') {
        return true;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return true;
    }
    Keyword::lookup(name).is_some()
}

fn escape_into(out: &mut String, text: &str, quote: char) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// `name` as an InfluxQL identifier: bare when possible, else `"double-quoted"` with `\"`,
/// `\\` and `\n` escapes.
pub fn quote_ident(name: &str) -> String {
    if !ident_needs_quotes(name) {
        return name.to_string();
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    escape_into(&mut out, name, '"');
    out.push('"');
    out
}

/// `text` as an InfluxQL `'string'` literal with `\'`, `\\` and `\n` escapes.
pub fn quote_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    escape_into(&mut out, text, '\'');
    out.push('\'');
    out
}

/// A float that re-parses as a float: `2` prints as `2.0`.
fn format_float(value: f64) -> String {
    let mut text = value.to_string();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        text.push_str(".0");
    }
    text
}

fn join<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

/// `Some((sign, operand))` when `expr` is the tree a unary `-x` / `+x` on a non-literal
/// parses to (`-1 * x` / `1 * x`).
fn unary_form(expr: &Expr) -> Option<(&'static str, &Expr)> {
    let Expr::Binary(b) = expr else { return None };
    if b.op != BinaryOp::Mul || !matches!(*b.rhs, Expr::VarRef(_) | Expr::Call(_) | Expr::Paren(_))
    {
        return None;
    }
    match *b.lhs {
        Expr::Integer(-1) => Some(("-", &*b.rhs)),
        Expr::Integer(1) => Some(("+", &*b.rhs)),
        _ => None,
    }
}

impl Display for RegexLiteral {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.as_str().replace('/', "\\/"))
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::VarRef(v) => {
                f.write_str(&quote_ident(&v.name))?;
                if let Some(t) = v.data_type {
                    write!(f, "::{}", t.as_str())?;
                }
                Ok(())
            }
            Expr::Call(c) => {
                // `distinct` is a keyword, but `distinct(` parses as a call.
                if c.name == "distinct" {
                    f.write_str("distinct")?;
                } else {
                    f.write_str(&quote_ident(&c.name))?;
                }
                f.write_char('(')?;
                join(f, &c.args)?;
                f.write_char(')')
            }
            Expr::Integer(i) => write!(f, "{i}"),
            Expr::Unsigned(u) => write!(f, "{u}"),
            Expr::Number(n) => f.write_str(&format_float(*n)),
            Expr::Str(s) => f.write_str(&quote_string(s)),
            Expr::Bool(b) => f.write_str(if *b { "true" } else { "false" }),
            Expr::Duration(d) => f.write_str(&format_duration(*d)),
            Expr::Regex(r) => write!(f, "{r}"),
            Expr::Wildcard(None) => f.write_char('*'),
            Expr::Wildcard(Some(WildcardType::Field)) => f.write_str("*::field"),
            Expr::Wildcard(Some(WildcardType::Tag)) => f.write_str("*::tag"),
            Expr::Binary(b) => {
                write!(f, "{} {} ", b.lhs, b.op.as_str())?;
                match unary_form(&b.rhs) {
                    Some((sign, operand)) => write!(f, "{sign}{operand}"),
                    None => write!(f, "{}", b.rhs),
                }
            }
            Expr::Paren(inner) => write!(f, "({inner})"),
        }
    }
}

impl Display for Field {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(alias) = &self.alias {
            write!(f, " AS {}", quote_ident(alias))?;
        }
        Ok(())
    }
}

impl Display for Measurement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(db) = &self.database {
            write!(f, "{}.", quote_ident(db))?;
        }
        if let Some(rp) = &self.retention_policy {
            f.write_str(&quote_ident(rp))?;
        }
        if self.database.is_some() || self.retention_policy.is_some() {
            f.write_char('.')?;
        }
        match &self.name {
            MeasurementName::Name(name) => f.write_str(&quote_ident(name)),
            MeasurementName::Regex(re) => write!(f, "{re}"),
        }
    }
}

impl Display for Dimension {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Time {
                interval_ns,
                offset,
            } => {
                write!(f, "time({}", format_duration(*interval_ns))?;
                match offset {
                    Some(TimeOffset::Duration(d)) => write!(f, ", {}", format_duration(*d))?,
                    Some(TimeOffset::Now) => f.write_str(", now()")?,
                    None => {}
                }
                f.write_char(')')
            }
            Dimension::Tag(name) => f.write_str(&quote_ident(name)),
            Dimension::Wildcard => f.write_char('*'),
            Dimension::Regex(re) => write!(f, "{re}"),
        }
    }
}

impl Display for Fill {
    /// The clause as written (`fill(none)`); [`Fill::Null`] prints `fill(null)`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Fill::Null => f.write_str("fill(null)"),
            Fill::None => f.write_str("fill(none)"),
            Fill::Previous => f.write_str("fill(previous)"),
            Fill::Linear => f.write_str("fill(linear)"),
            Fill::Integer(i) => write!(f, "fill({i})"),
            Fill::Float(x) => write!(f, "fill({})", format_float(*x)),
        }
    }
}

impl Display for TagKeyFilter {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            TagKeyFilter::Eq(k) => write!(f, "= {}", quote_ident(k)),
            TagKeyFilter::NotEq(k) => write!(f, "!= {}", quote_ident(k)),
            TagKeyFilter::Regex(re) => write!(f, "=~ {re}"),
            TagKeyFilter::NotRegex(re) => write!(f, "!~ {re}"),
            TagKeyFilter::In(keys) => {
                f.write_str("IN (")?;
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&quote_ident(k))?;
                }
                f.write_char(')')
            }
        }
    }
}

/// Writers for the optional clauses shared by several statements.
struct Clauses<'a, 'f> {
    f: &'a mut Formatter<'f>,
}

impl Clauses<'_, '_> {
    fn on(&mut self, database: &Option<String>) -> fmt::Result {
        match database {
            Some(db) => write!(self.f, " ON {}", quote_ident(db)),
            None => Ok(()),
        }
    }

    fn from(&mut self, sources: &[Measurement]) -> fmt::Result {
        if sources.is_empty() {
            return Ok(());
        }
        self.f.write_str(" FROM ")?;
        join(self.f, sources)
    }

    fn condition(&mut self, condition: &Option<Expr>) -> fmt::Result {
        match condition {
            Some(c) => write!(self.f, " WHERE {c}"),
            None => Ok(()),
        }
    }

    fn group_by(&mut self, dimensions: &[Dimension]) -> fmt::Result {
        if dimensions.is_empty() {
            return Ok(());
        }
        self.f.write_str(" GROUP BY ")?;
        join(self.f, dimensions)
    }

    fn order(&mut self, order: SortOrder) -> fmt::Result {
        match order {
            SortOrder::Asc => Ok(()),
            SortOrder::Desc => self.f.write_str(" ORDER BY time DESC"),
        }
    }

    fn number(&mut self, keyword: &str, value: Option<u64>) -> fmt::Result {
        match value {
            Some(n) => write!(self.f, " {keyword} {n}"),
            None => Ok(()),
        }
    }

    fn with_key(&mut self, filter: &Option<TagKeyFilter>) -> fmt::Result {
        match filter {
            Some(k) => write!(self.f, " WITH KEY {k}"),
            None => Ok(()),
        }
    }
}

impl Display for SelectStatement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        join(f, &self.fields)?;
        let mut c = Clauses { f };
        c.from(&self.sources)?;
        c.condition(&self.condition)?;
        c.group_by(&self.dimensions)?;
        if self.fill != Fill::Null {
            write!(c.f, " {}", self.fill)?;
        }
        c.order(self.order)?;
        c.number("LIMIT", self.limit)?;
        c.number("OFFSET", self.offset)?;
        c.number("SLIMIT", self.slimit)?;
        c.number("SOFFSET", self.soffset)?;
        if let Some(tz) = &self.timezone {
            write!(c.f, " tz({})", quote_string(tz))?;
        }
        Ok(())
    }
}

fn module_clause(f: &mut Formatter<'_>, module: &Option<String>) -> fmt::Result {
    match module {
        Some(m) => write!(f, " FOR {}", quote_string(m)),
        None => Ok(()),
    }
}

impl Display for SystemShow {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SystemShow::Users => f.write_str("SHOW USERS"),
            SystemShow::Grants { user } => {
                f.write_str("SHOW GRANTS")?;
                match user {
                    Some(u) => write!(f, " FOR {}", quote_ident(u)),
                    None => Ok(()),
                }
            }
            SystemShow::Stats { module } => {
                f.write_str("SHOW STATS")?;
                module_clause(f, module)
            }
            SystemShow::Diagnostics { module } => {
                f.write_str("SHOW DIAGNOSTICS")?;
                module_clause(f, module)
            }
            SystemShow::Shards => f.write_str("SHOW SHARDS"),
            SystemShow::ShardGroups => f.write_str("SHOW SHARD GROUPS"),
            SystemShow::Queries => f.write_str("SHOW QUERIES"),
            SystemShow::ContinuousQueries => f.write_str("SHOW CONTINUOUS QUERIES"),
            SystemShow::Subscriptions => f.write_str("SHOW SUBSCRIPTIONS"),
        }
    }
}

fn duration_or_inf(ns: i64) -> String {
    if ns == 0 {
        "INF".to_string()
    } else {
        format_duration(ns)
    }
}

impl Display for CreateDatabase {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "CREATE DATABASE {}", quote_ident(&self.name))?;
        let Some(rp) = &self.retention_policy else {
            return Ok(());
        };
        f.write_str(" WITH")?;
        if let Some(d) = rp.duration_ns {
            write!(f, " DURATION {}", duration_or_inf(d))?;
        }
        if let Some(n) = rp.replication {
            write!(f, " REPLICATION {n}")?;
        }
        if let Some(d) = rp.shard_duration_ns {
            write!(f, " SHARD DURATION {}", duration_or_inf(d))?;
        }
        if let Some(d) = rp.future_limit_ns {
            write!(f, " FUTURE LIMIT {}", duration_or_inf(d))?;
        }
        if let Some(d) = rp.past_limit_ns {
            write!(f, " PAST LIMIT {}", duration_or_inf(d))?;
        }
        if let Some(name) = &rp.name {
            write!(f, " NAME {}", quote_ident(name))?;
        }
        Ok(())
    }
}

impl Display for CardinalityKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CardinalityKind::Measurement => "MEASUREMENT",
            CardinalityKind::Series => "SERIES",
            CardinalityKind::TagKey => "TAG KEY",
            CardinalityKind::TagValues => "TAG VALUES",
            CardinalityKind::FieldKey => "FIELD KEY",
        })
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(s) => write!(f, "{s}"),
            Statement::ShowDatabases => f.write_str("SHOW DATABASES"),
            Statement::ShowMeasurements(s) => {
                f.write_str("SHOW MEASUREMENTS")?;
                if let Some(db) = &s.database {
                    write!(f, " ON {}", quote_ident(db))?;
                    if let Some(rp) = &s.retention_policy {
                        write!(f, ".{}", quote_ident(rp))?;
                    }
                }
                if let Some(m) = &s.with_measurement {
                    let op = match m.name {
                        MeasurementName::Regex(_) => "=~",
                        MeasurementName::Name(_) => "=",
                    };
                    write!(f, " WITH MEASUREMENT {op} {m}")?;
                }
                let mut c = Clauses { f };
                c.condition(&s.condition)?;
                c.order(s.order)?;
                c.number("LIMIT", s.limit)?;
                c.number("OFFSET", s.offset)
            }
            Statement::ShowTagKeys(s) => {
                f.write_str("SHOW TAG KEYS")?;
                let mut c = Clauses { f };
                c.on(&s.database)?;
                c.from(&s.sources)?;
                c.with_key(&s.tag_key)?;
                c.condition(&s.condition)?;
                c.order(s.order)?;
                c.number("LIMIT", s.limit)?;
                c.number("OFFSET", s.offset)?;
                c.number("SLIMIT", s.slimit)?;
                c.number("SOFFSET", s.soffset)
            }
            Statement::ShowTagValues(s) => {
                f.write_str("SHOW TAG VALUES")?;
                let mut c = Clauses { f };
                c.on(&s.database)?;
                c.from(&s.sources)?;
                write!(c.f, " WITH KEY {}", s.tag_key)?;
                c.condition(&s.condition)?;
                c.order(s.order)?;
                c.number("LIMIT", s.limit)?;
                c.number("OFFSET", s.offset)
            }
            Statement::ShowFieldKeys(s) => {
                f.write_str("SHOW FIELD KEYS")?;
                let mut c = Clauses { f };
                c.on(&s.database)?;
                c.from(&s.sources)?;
                c.order(s.order)?;
                c.number("LIMIT", s.limit)?;
                c.number("OFFSET", s.offset)
            }
            Statement::ShowSeries(s) => {
                f.write_str("SHOW SERIES")?;
                let mut c = Clauses { f };
                c.on(&s.database)?;
                c.from(&s.sources)?;
                c.condition(&s.condition)?;
                c.order(s.order)?;
                c.number("LIMIT", s.limit)?;
                c.number("OFFSET", s.offset)
            }
            Statement::ShowRetentionPolicies { database } => {
                f.write_str("SHOW RETENTION POLICIES")?;
                Clauses { f }.on(database)
            }
            Statement::ShowCardinality(s) => {
                write!(f, "SHOW {}", s.kind)?;
                if s.exact {
                    f.write_str(" EXACT")?;
                }
                f.write_str(" CARDINALITY")?;
                let mut c = Clauses { f };
                c.on(&s.database)?;
                c.from(&s.sources)?;
                c.with_key(&s.tag_key)?;
                c.condition(&s.condition)?;
                c.group_by(&s.dimensions)?;
                c.number("LIMIT", s.limit)?;
                c.number("OFFSET", s.offset)
            }
            Statement::ShowSystem(s) => write!(f, "{s}"),
            Statement::CreateDatabase(s) => write!(f, "{s}"),
            Statement::DropDatabase { name } => write!(f, "DROP DATABASE {}", quote_ident(name)),
            Statement::DropMeasurement { name } => {
                write!(f, "DROP MEASUREMENT {}", quote_ident(name))
            }
            Statement::DropSeries(s) | Statement::Delete(s) => {
                f.write_str(if matches!(self, Statement::Delete(_)) {
                    "DELETE"
                } else {
                    "DROP SERIES"
                })?;
                let mut c = Clauses { f };
                c.from(&s.sources)?;
                c.condition(&s.condition)
            }
        }
    }
}
