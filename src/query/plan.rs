//! Query parameters → a checked [`QuerySpec`], and the pure planning decisions: which
//! regions can hold matching data, which partitions and files overlap the time range.
//!
//! Tag predicate semantics follow InfluxQL: a series without the tag has the empty string
//! there, so `k!=v` and `k!~re` match it, and `k=` matches exactly the series lacking `k`.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;

use super::agg::Agg;
use crate::model::{RegionId, TIME_COLUMN, is_safe_name, parse_duration, truncate};
use crate::routing::Routing;

#[derive(Debug, Clone)]
pub enum TagOp {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

#[derive(Debug, Clone)]
pub struct TagPred {
    pub key: String,
    pub op: TagOp,
}

impl TagPred {
    /// Whether a series whose value for the key is `value` (None = tag absent) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match &self.op {
            TagOp::Eq(x) => v == x,
            TagOp::Ne(x) => v != x,
            TagOp::Re(r) => r.is_match(v),
            TagOp::NotRe(r) => !r.is_match(v),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epoch {
    Rfc3339,
    Ns,
    Us,
    Ms,
    S,
}

/// A checked query.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    pub db: String,
    pub measurement: String,
    /// `None` = every field (`*`).
    pub fields: Option<Vec<String>>,
    pub start: i64,
    /// Exclusive.
    pub end: i64,
    /// The earliest time retention keeps (`i64::MIN`: all); scans read from
    /// [`QuerySpec::lo`], while bucket times still follow `start`.
    pub retain_from: i64,
    pub preds: Vec<TagPred>,
    pub agg: Agg,
    pub every: Option<i64>,
    pub group_by: Vec<String>,
    pub format: Format,
    pub limit: Option<usize>,
    pub epoch: Epoch,
    /// Whether start/end were given (the time of an unbucketed aggregate is `start`, or 0).
    pub start_given: bool,
    /// When the whole request must be answered (`query.timeout` from its arrival): scans
    /// stop at it, so a timed-out query spends no more CPU. `None`: no deadline.
    pub deadline: Option<std::time::Instant>,
    /// The query's memory budget (`None`: unbounded, for tools and tests).
    pub budget: Option<std::sync::Arc<super::budget::QueryBudget>>,
}

const MAX_REGEX: usize = 1 << 16;

fn parse_time(key: &str, s: &str, unit: i64) -> Result<i64, String> {
    parse_time_in(
        key,
        s,
        unit,
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
    )
}

/// Nanoseconds per unit of the `precision` parameter (`ns` when absent): the unit of
/// integer `start` and `end`.
pub fn precision_unit(p: Option<&str>) -> Result<i64, String> {
    match p {
        None | Some("ns") | Some("n") => Ok(1),
        Some("us") | Some("u") | Some("µ") => Ok(1_000),
        Some("ms") => Ok(1_000_000),
        Some("s") => Ok(1_000_000_000),
        Some(other) => Err(format!(
            "invalid precision {:?}: the unit of integer start and end, use ns, us, ms or s",
            truncate(other, 16)
        )),
    }
}

/// Integer `start`/`end` given without `precision` that read as nanoseconds fall before
/// March 1973: almost surely seconds, milliseconds (Grafana's `${__from}`) or microseconds.
/// The warning says how they were read and what to pass.
pub fn time_unit_hints(p: &HashMap<String, String>) -> Vec<String> {
    if p.get("precision").is_some_and(|v| !v.is_empty()) {
        return Vec::new();
    }
    ["start", "end"]
        .into_iter()
        .filter_map(|k| {
            let n = p.get(k)?.trim().parse::<i64>().ok()?;
            (n > 0 && n < 100_000_000_000_000_000).then(|| {
                let at = chrono::DateTime::from_timestamp_nanos(n)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                format!(
                    "{k}={n} was read as nanoseconds ({at}); integer times are nanoseconds unless precision=s, ms or us says otherwise"
                )
            })
        })
        .collect()
}

/// [`parse_time_at`], with an integer read in `unit` nanoseconds (`precision`).
pub fn parse_time_in(key: &str, s: &str, unit: i64, now_ns: i64) -> Result<i64, String> {
    match s.trim().parse::<i64>() {
        Ok(n) => n
            .checked_mul(unit)
            .ok_or_else(|| format!("invalid {key} {n}: out of range in that precision")),
        Err(_) => parse_time_at(key, s, now_ns),
    }
}

/// A time parameter: integer nanoseconds, RFC 3339, or relative to `now_ns`: `now`,
/// `now-1h`, `now()+5m`, `-1h` (before now).
pub fn parse_time_at(key: &str, s: &str, now_ns: i64) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(ns) = t.parse::<i64>() {
        return Ok(ns);
    }
    let relative = t
        .strip_prefix("now()")
        .or_else(|| t.strip_prefix("now"))
        .or_else(|| t.starts_with('-').then_some(t));
    if let Some(rest) = relative {
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(now_ns);
        }
        let (sign, d) = match rest.split_at(1) {
            ("-", d) => (-1i128, d),
            ("+", d) => (1i128, d),
            _ => {
                return Err(format!(
                    "invalid {key} {:?}: use now, now-1h, -1h, RFC 3339 or integer nanoseconds",
                    truncate(t, 64)
                ));
            }
        };
        let ns = parse_duration(d.trim()).map_err(|e| format!("invalid {key}: {e}"))?;
        let at = now_ns as i128 + sign * ns as i128;
        return i64::try_from(at).map_err(|_| format!("invalid {key}: out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!(
                "invalid {key} {:?}: use RFC 3339 (2026-11-27T13:00:00Z), integer nanoseconds since the epoch, or now-1h",
                truncate(t, 64)
            )
        })
}

/// The native `where` parameter: tag predicates joined by `,`.
pub fn parse_where(w: &str) -> Result<Vec<TagPred>, String> {
    split_escaped(w, ',')
        .iter()
        .flat_map(|s| split_and(s))
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_pred(&s))
        .collect()
}

/// Splits on ` AND ` (any case, spaces around) outside quotes: `host='a' AND dc='x'`, as
/// InfluxQL users write it, is two predicates.
fn split_and(s: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let mut quote: Option<char> = None;
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            // An escaped character inside quotes (`\'`) is kept with its backslash.
            Some(_) if c == '\\' && i + 1 < chars.len() => {
                cur.push(c);
                cur.push(chars[i + 1]);
                i += 2;
                continue;
            }
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c.is_whitespace() => {
                let next: Vec<char> = chars[i..]
                    .iter()
                    .skip_while(|c| c.is_whitespace())
                    .take(4)
                    .copied()
                    .collect();
                if next.len() == 4
                    && next[..3]
                        .iter()
                        .zip("and".chars())
                        .all(|(a, b)| a.eq_ignore_ascii_case(&b))
                    && next[3].is_whitespace()
                {
                    out.push(std::mem::take(&mut cur));
                    // Past the spaces, `AND` and the space after it.
                    while i < chars.len() && chars[i].is_whitespace() {
                        i += 1;
                    }
                    i += 4;
                    continue;
                }
            }
            None => {}
        }
        cur.push(c);
        i += 1;
    }
    out.push(cur);
    out
}

/// Splits on `sep` not preceded by a backslash; `\,` becomes `,`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&sep) {
            cur.push(sep);
            chars.next();
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn parse_pred(p: &str) -> Result<TagPred, String> {
    // The operator is the first `=`, `!=`, `=~` or `!~` from the left (a value may contain
    // any of them: `k=a!=b` is k equal to "a!=b").
    let found = p.char_indices().find_map(|(pos, c)| {
        let rest = &p[pos..];
        match c {
            '!' if rest.starts_with("!~") => Some((pos, "!~", 3)),
            '!' if rest.starts_with("!=") => Some((pos, "!=", 1)),
            '=' if rest.starts_with("=~") => Some((pos, "=~", 2)),
            '=' => Some((pos, "=", 0)),
            _ => None,
        }
    });
    let Some((pos, op, kind)) = found else {
        return Err(format!(
            "invalid where predicate {:?}: use k=v, k!=v, k=~regex or k!~regex joined with ','",
            truncate(p, 64)
        ));
    };
    let key = p[..pos].trim();
    let val = p[pos + op.len()..].trim();
    let unbalanced = |open: char| {
        val.starts_with(open) && (val.len() < 2 || !val.ends_with(open))
            || (val.ends_with(open) && !val.starts_with(open) && open != '/')
    };
    if val.starts_with('=') {
        return Err(format!(
            "invalid where predicate {:?}: one `=` compares (k=v)",
            truncate(p, 64)
        ));
    }
    if unbalanced('\'') || unbalanced('"') || (kind >= 2 && unbalanced('/')) {
        return Err(format!(
            "invalid where predicate {:?}: a quote (or a regex's slash) is not closed",
            truncate(p, 64)
        ));
    }
    if key.is_empty() {
        return Err(format!(
            "invalid where predicate {:?}: missing tag key",
            truncate(p, 64)
        ));
    }
    let re = |v: &str| {
        if v.len() > MAX_REGEX {
            return Err("regex too long".to_string());
        }
        regex::RegexBuilder::new(v)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("invalid regex {:?} in where: {e}", truncate(v, 64)))
    };
    let op = match kind {
        0 => TagOp::Eq(unquote(val)),
        1 => TagOp::Ne(unquote(val)),
        2 => TagOp::Re(re(&unslash(val))?),
        _ => TagOp::NotRe(re(&unslash(val))?),
    };
    Ok(TagPred {
        key: key.to_string(),
        op,
    })
}

/// A tag value as InfluxQL users type it: `'host_1'` or `"host_1"` is `host_1` (a
/// backslash escapes the quote inside). Unquoted values are taken as they are.
fn unquote(v: &str) -> String {
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].replace(&format!("\\{q}"), &q.to_string());
        }
    }
    v.to_string()
}

/// A regex as InfluxQL writes it, `/^eu-/`, is the regex between the slashes.
fn unslash(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('/') && v.ends_with('/') {
        v[1..v.len() - 1].replace("\\/", "/")
    } else {
        v.to_string()
    }
}

impl QuerySpec {
    /// Checks parameters given as key/value pairs (query string or JSON body).
    pub fn from_params(p: &HashMap<String, String>) -> Result<QuerySpec, String> {
        const KNOWN: [&str; 17] = [
            "db",
            "measurement",
            "fields",
            "start",
            "end",
            "where",
            "agg",
            "every",
            "group_by",
            "format",
            "limit",
            "epoch",
            "precision",
            "p",
            "token",
            // The user name 1.x clients send beside `p`; tokens need no user.
            "u",
            // Answered through the InfluxQL engine (`query::influxql::native`).
            "fill",
        ];
        if let Some(k) = p.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!(
                "unknown parameter {:?}; known: {}",
                truncate(k, 32),
                KNOWN[..13].join(", ")
            ));
        }
        let get = |k: &str| p.get(k).map(|s| s.as_str()).filter(|s| !s.is_empty());
        let db = get("db").ok_or("missing required parameter `db`")?;
        if !is_safe_name(db) {
            return Err(format!("invalid db name {:?}", truncate(db, 64)));
        }
        let measurement = get("measurement").ok_or("missing required parameter `measurement`")?;
        let fields = match get("fields") {
            None | Some("*") => None,
            Some(list) => {
                let f: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
                if f.iter().any(|s| s.is_empty()) {
                    return Err("invalid fields: empty name in the list".into());
                }
                if f.iter().any(|s| s == TIME_COLUMN) {
                    return Err(
                        "invalid fields: `time` is always returned and is not a field".into(),
                    );
                }
                Some(f)
            }
        };
        let unit = precision_unit(get("precision"))?;
        let start = get("start")
            .map(|s| parse_time("start", s, unit))
            .transpose()?;
        let end = get("end").map(|s| parse_time("end", s, unit)).transpose()?;
        let (s, e) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
        if e <= s {
            return Err(
                "invalid time range: end must be after start ([start, end) is half-open)".into(),
            );
        }
        let preds = match get("where") {
            None => Vec::new(),
            Some(w) => parse_where(w)?,
        };
        let agg_s = get("agg").unwrap_or("none");
        let agg = Agg::parse(agg_s).ok_or_else(|| {
            format!(
                "unknown agg {:?}: use none, count, sum, mean, min, max, first, last or stddev",
                truncate(agg_s, 32)
            )
        })?;
        let every = match get("every") {
            None => None,
            Some(d) => {
                let ns = parse_duration(d).map_err(|e| format!("invalid every: {e}"))?;
                if ns <= 0 {
                    return Err("invalid every: must be greater than zero".into());
                }
                Some(ns)
            }
        };
        if every.is_some() && agg == Agg::None {
            return Err("`every` needs an aggregate (agg=count, sum, mean, …)".into());
        }
        if let (Some(w), Some(a), Some(b)) = (every, start, end) {
            let buckets = ((b as i128 - a as i128) / w as i128) + 1;
            if buckets > 10_000_000 {
                return Err(format!(
                    "every={} over this range makes {buckets} buckets; use a wider bucket",
                    get("every").unwrap_or("")
                ));
            }
        }
        let group_by: Vec<String> = match get("group_by") {
            None => Vec::new(),
            Some(g) => g
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        };
        let mut seen = BTreeSet::new();
        for g in &group_by {
            if g == crate::model::TIME_COLUMN {
                return Err(
                    "group_by=time is not a tag: use every=<duration> (e.g. every=1h) for time buckets"
                        .into(),
                );
            }
            if !seen.insert(g) {
                return Err(format!("group_by lists {g:?} twice"));
            }
        }
        let format = match get("format").unwrap_or("json") {
            "json" => Format::Json,
            "csv" => Format::Csv,
            "arrow" => Format::Arrow,
            other => {
                return Err(format!(
                    "unknown format {:?}: use json, csv or arrow",
                    truncate(other, 32)
                ));
            }
        };
        let limit = match get("limit") {
            None => None,
            Some(l) => Some(l.parse::<usize>().map_err(|_| {
                format!(
                    "invalid limit {:?}: use a non-negative integer",
                    truncate(l, 32)
                )
            })?),
        };
        let epoch = match get("epoch") {
            None => Epoch::Rfc3339,
            Some("ns") | Some("n") => Epoch::Ns,
            Some("us") | Some("u") => Epoch::Us,
            Some("ms") => Epoch::Ms,
            Some("s") => Epoch::S,
            Some(other) => {
                return Err(format!(
                    "invalid epoch {:?}: use ns, us, ms or s",
                    truncate(other, 16)
                ));
            }
        };
        Ok(QuerySpec {
            db: db.to_string(),
            measurement: measurement.to_string(),
            fields,
            start: s,
            end: e,
            retain_from: i64::MIN,
            preds,
            agg,
            every,
            group_by,
            format,
            limit,
            epoch,
            start_given: start.is_some(),
            deadline: None,
            budget: None,
        })
    }

    /// Whether the request's deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// The bucket start of a timestamp (epoch-aligned), or the single bucket's time.
    pub fn bucket_of(&self, t: i64) -> i64 {
        match self.every {
            // i128: the floor of a time near i64::MIN may lie below it; clamp.
            Some(w) => ((t as i128).div_euclid(w as i128) * w as i128).max(i64::MIN as i128) as i64,
            None => self.unbucketed_time(),
        }
    }

    pub fn unbucketed_time(&self) -> i64 {
        if self.start_given { self.start } else { 0 }
    }

    /// The first time a scan reads: the query's start, or later where retention hides
    /// older points.
    pub fn lo(&self) -> i64 {
        self.start.max(self.retain_from)
    }

    /// Whether a time range `[min, max]` (inclusive) overlaps what the query reads,
    /// `[lo, end)`.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        max >= self.lo() && min < self.end
    }
}

/// Which regions can hold points matching the query's `where`. Pruning uses the router's
/// own rules: an equality on the geo tag names the region its glob routes to, unless a
/// directory entry or coordinates may have routed such points elsewhere. The query's time
/// range may span several routing versions: a region is a candidate if one of them routes
/// there, and every region is when one of them is not known here.
pub fn candidate_regions(routing: &Routing, spec: &QuerySpec, all: usize) -> BTreeSet<RegionId> {
    let everything: BTreeSet<RegionId> = (0..all).map(RegionId).collect();
    let Some(routers) = routing.over(spec.lo(), spec.end) else {
        return everything;
    };
    let mut out = BTreeSet::new();
    for router in routers {
        let geo = spec.preds.iter().find_map(|p| match &p.op {
            TagOp::Eq(v) if p.key == router.geo_tag() && !v.is_empty() => Some(v.as_str()),
            _ => None,
        });
        let Some(region) = geo.and_then(|value| router.region_for_geo_value(value)) else {
            return everything;
        };
        // Points with this geo value go to `region`, unless a directory entry claimed them
        // first.
        out.insert(region);
        out.extend(router.directory_regions());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn spec(q: &str) -> Result<QuerySpec, String> {
        let p: HashMap<String, String> =
            form_urlencoded::parse(q.as_bytes()).into_owned().collect();
        QuerySpec::from_params(&p)
    }

    #[test]
    fn parses_everything() {
        let s = spec("db=tel&measurement=cpu&fields=a,b&start=2026-01-01T00:00:00Z&end=1767229200000000000&where=host=a,region=~^eu-,dc!=x,os!~win&agg=mean&every=1h&group_by=region,host&format=csv&limit=10&epoch=ms").unwrap();
        assert_eq!(s.fields, Some(vec!["a".into(), "b".into()]));
        assert_eq!(s.start, 1_767_225_600_000_000_000);
        assert_eq!(s.end, 1_767_229_200_000_000_000);
        assert_eq!(s.preds.len(), 4);
        assert!(s.preds[1].matches(Some("eu-west-1")) && !s.preds[1].matches(Some("us-east-1")));
        assert!(s.preds[2].matches(None) && !s.preds[2].matches(Some("x")));
        assert!(s.preds[3].matches(None));
        assert_eq!(s.agg, Agg::Mean);
        assert_eq!(s.every, Some(3_600_000_000_000));
        assert_eq!(s.group_by, vec!["region", "host"]);
        assert_eq!(
            (s.format, s.limit, s.epoch),
            (Format::Csv, Some(10), Epoch::Ms)
        );
        assert_eq!(s.bucket_of(s.start + 5), s.start);
    }

    #[test]
    fn operator_is_the_leftmost_one() {
        let s = spec("db=d&measurement=m&where=k=a!%3Db,x!%3Dy%3Dz,a!b%3Dc").unwrap();
        assert!(s.preds[0].key == "k" && s.preds[0].matches(Some("a!=b")));
        assert!(s.preds[1].key == "x" && !s.preds[1].matches(Some("y=z")));
        assert!(s.preds[2].key == "a!b" && s.preds[2].matches(Some("c")));
    }

    #[test]
    fn escaped_commas_in_where() {
        let s = spec("db=d&measurement=m&where=k=a%5C,b").unwrap();
        assert!(s.preds[0].matches(Some("a,b")));
    }

    /// `where` as InfluxQL users type it: quotes, spaces around values, ` AND `; what would
    /// silently match nothing (an unclosed quote, `==`) is an error.
    #[test]
    fn where_values_as_influxql_users_type_them() {
        let eq = |w: &str| -> Vec<(String, String)> {
            parse_where(w)
                .unwrap_or_else(|e| panic!("{w}: {e}"))
                .into_iter()
                .map(|p| match p.op {
                    TagOp::Eq(v) => (p.key, v),
                    other => panic!("{w}: {other:?}"),
                })
                .collect()
        };
        let a = vec![("host".to_string(), "a".to_string())];
        for w in [
            "host=a",
            "host='a'",
            "host=\"a\"",
            "host = 'a'",
            "host= 'a' ",
            " host =a",
        ] {
            assert_eq!(eq(w), a, "{w}");
        }
        let two = vec![
            ("host".to_string(), "a".to_string()),
            ("region".to_string(), "eu west".to_string()),
        ];
        assert_eq!(eq("host='a' AND region='eu west'"), two);
        assert_eq!(eq("host='a' and region='eu west'"), two);
        assert_eq!(eq("host=a,region=eu west"), two);
        // ` AND ` inside quotes is part of the value.
        assert_eq!(eq("k='x AND y'"), vec![("k".into(), "x AND y".into())]);
        assert_eq!(eq("k='it\\'s'"), vec![("k".into(), "it's".into())]);
        assert_eq!(
            eq("k='it\\'s' AND x='y'"),
            vec![("k".into(), "it's".into()), ("x".into(), "y".into())]
        );
        for bad in ["host='a", "host=a'", "host==a", "host=~/^a", "host=\"a"] {
            let e = parse_where(bad)
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(e.contains("invalid where predicate"), "{bad}: {e}");
        }
        assert!(
            matches!(&parse_where("h=~/^a$/").unwrap()[0].op, TagOp::Re(r) if r.as_str() == "^a$")
        );
    }

    #[test]
    fn clear_errors() {
        for (q, needle) in [
            ("measurement=m", "db"),
            ("db=d", "measurement"),
            ("db=../x&measurement=m", "db name"),
            ("db=d&measurement=m&agg=median", "unknown agg"),
            ("db=d&measurement=m&where=k=~(", "invalid regex"),
            ("db=d&measurement=m&where=nonsense", "invalid where"),
            (
                "db=d&measurement=m&start=10&end=5",
                "end must be after start",
            ),
            ("db=d&measurement=m&start=yesterday", "invalid start"),
            (
                "db=d&measurement=m&agg=mean&every=fortnight",
                "invalid every",
            ),
            ("db=d&measurement=m&every=1h", "needs an aggregate"),
            ("db=d&measurement=m&format=xml", "unknown format"),
            ("db=d&measurement=m&limit=-1", "invalid limit"),
            ("db=d&measurement=m&bogus=1", "unknown parameter"),
            (
                "db=d&measurement=m&agg=sum&every=1ns&start=0&end=9000000000000000000",
                "buckets",
            ),
        ] {
            let e = spec(q).unwrap_err();
            assert!(e.contains(needle), "{q}: {e}");
        }
    }

    #[test]
    fn region_pruning_follows_the_router() {
        let cfg = Config::parse(include_str!("../../regions.toml")).unwrap();
        let r = Routing::from_config(&cfg.routing).unwrap();
        let n = cfg.routing.regions.len();
        let eu = spec("db=d&measurement=m&where=region=eu-west-1").unwrap();
        // eu by glob, plus the directory override target (also eu in the default config).
        assert_eq!(candidate_regions(&r, &eu, n), BTreeSet::from([RegionId(1)]));
        let us = spec("db=d&measurement=m&where=region=us-east-1").unwrap();
        assert_eq!(
            candidate_regions(&r, &us, n),
            BTreeSet::from([RegionId(0), RegionId(1)])
        );
        let unknown = spec("db=d&measurement=m&where=region=af-south-1").unwrap();
        assert_eq!(candidate_regions(&r, &unknown, n).len(), n);
        let re = spec("db=d&measurement=m&where=region=~eu").unwrap();
        assert_eq!(candidate_regions(&r, &re, n).len(), n);
    }

    /// A routing change moves `us-*` from americas to apac at t = 1h: a query reads the
    /// regions of each version its range covers.
    #[test]
    fn region_pruning_follows_each_routing_version_of_the_range() {
        use crate::routing::{History, Rules};
        let cfg = Config::parse(include_str!("../../regions.toml")).unwrap();
        let old = Rules::from_config(&cfg.routing);
        let mut moved = old.clone();
        let us = moved.regions[0].tag_values.clone();
        moved.regions[0].tag_values.clear();
        moved.regions[2].tag_values.extend(us);
        let mut h = History::first(&old, 0);
        let hour = 3_600_000_000_000i64;
        h.push(&moved, hour, 0).unwrap();
        let r = Routing::compile(&h, &cfg.routing);
        let n = cfg.routing.regions.len();
        let q = |range: &str| {
            candidate_regions(
                &r,
                &spec(&format!(
                    "db=d&measurement=m&where=region=us-east-1&{range}"
                ))
                .unwrap(),
                n,
            )
        };
        let (americas, eu, apac) = (RegionId(0), RegionId(1), RegionId(2));
        assert_eq!(
            q("start=0&end=3600000000000"),
            BTreeSet::from([americas, eu])
        );
        assert_eq!(
            q("start=3600000000000&end=9000000000000"),
            BTreeSet::from([apac, eu])
        );
        assert_eq!(
            q("start=0&end=3600000000001"),
            BTreeSet::from([americas, eu, apac])
        );
    }
}
