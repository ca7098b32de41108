//! InfluxDB 1.x answers of `/query`: statement results, series, cells, and their JSON and
//! CSV encodings, written as InfluxDB writes them (numbers as Go prints them: a float that
//! is a whole number has no `.0`; times as RFC 3339 with trailing zeros of the fraction cut,
//! or integers in the `epoch` unit).

use std::collections::BTreeMap;
use std::io::{self, Write};

/// One cell of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Shared: a tag's value is one allocation for every row of its series.
    Str(std::sync::Arc<str>),
    Bool(bool),
    /// A time in nanoseconds, written per the request's epoch.
    Time(i64),
}

/// One series of a statement's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSeries {
    /// `tz()`: RFC 3339 times are written with this zone's offset.
    pub zone: Option<chrono_tz::Tz>,
    pub name: String,
    /// Written only when some statement grouped by tags (InfluxDB omits `tags` otherwise).
    pub tags: Option<BTreeMap<String, String>>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Cell>>,
}

/// The answer to one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementResult {
    pub statement_id: usize,
    pub series: Vec<ResultSeries>,
    pub error: Option<String>,
    /// Notes InfluxDB sends as `messages` (e.g. a warning).
    pub messages: Vec<(String, String)>,
    /// How `chunked=true` sends it.
    pub chunking: Chunking,
}

/// How a statement's answer is cut into chunks (as InfluxDB cuts each kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chunking {
    /// A chunk per series, `partial` on all but the last (most SHOW statements).
    #[default]
    PerSeries,
    /// At most `chunk_size` rows a chunk (SELECT, SHOW SERIES).
    Rows,
    /// A chunk per series, no `partial` flags (SHOW TAG VALUES).
    PerSeriesWhole,
}

impl StatementResult {
    pub fn error(statement_id: usize, message: impl Into<String>) -> StatementResult {
        StatementResult {
            statement_id,
            error: Some(message.into()),
            ..Default::default()
        }
    }
}

/// How times are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    Rfc3339,
    /// Integers in units of this many nanoseconds.
    Epoch(i64),
}

impl TimeFormat {
    /// From the `epoch` parameter (`ns`, `n`, `u`, `µ`, `ms`, `s`, `m`, `h`).
    pub fn from_param(p: Option<&str>) -> Result<TimeFormat, String> {
        Ok(match p {
            None | Some("") => TimeFormat::Rfc3339,
            Some("ns") | Some("n") => TimeFormat::Epoch(1),
            Some("u") | Some("µ") | Some("us") => TimeFormat::Epoch(1_000),
            Some("ms") => TimeFormat::Epoch(1_000_000),
            Some("s") => TimeFormat::Epoch(1_000_000_000),
            Some("m") => TimeFormat::Epoch(60_000_000_000),
            Some("h") => TimeFormat::Epoch(3_600_000_000_000),
            // InfluxDB answers in nanoseconds for any other value.
            Some(_) => TimeFormat::Epoch(1),
        })
    }
}

/// A float as Go's `encoding/json` writes it: shortest round-trip digits, no `.0` on whole
/// numbers, exponent form below 1e-6 and from 1e21 (`1e-7`, `1e+21`).
pub fn go_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{f:e}");
        return Some(match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        });
    }
    Some(format!("{f}"))
}

/// RFC 3339 in a zone: the local time and its offset (`+01:00`; UTC is `Z`).
pub fn rfc3339_in(ns: i64, zone: Option<chrono_tz::Tz>) -> String {
    let Some(zone) = zone else {
        return rfc3339(ns);
    };
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let Some(utc) = chrono::DateTime::from_timestamp(secs, nanos) else {
        return ns.to_string();
    };
    let local = utc.with_timezone(&zone);
    let base = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{}", format!("{nanos:09}").trim_end_matches('0'))
    };
    let off = local.format("%:z").to_string();
    let off = if off == "+00:00" {
        "Z".to_string()
    } else {
        off
    };
    format!("{base}{frac}{off}")
}

/// RFC 3339 with nanoseconds, trailing zeros of the fraction cut (Go's RFC3339Nano).
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => {
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            if nanos == 0 {
                format!("{base}Z")
            } else {
                let frac = format!("{nanos:09}");
                format!("{base}.{}Z", frac.trim_end_matches('0'))
            }
        }
        None => ns.to_string(),
    }
}

fn write_str<W: Write + ?Sized>(w: &mut W, s: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *w, s).map_err(io::Error::other)
}

fn write_cell<W: Write + ?Sized>(
    w: &mut W,
    c: &Cell,
    time: TimeFormat,
    zone: Option<chrono_tz::Tz>,
) -> io::Result<()> {
    match c {
        Cell::Null => w.write_all(b"null"),
        Cell::Int(i) => w.write_all(itoa::Buffer::new().format(*i).as_bytes()),
        Cell::UInt(u) => w.write_all(itoa::Buffer::new().format(*u).as_bytes()),
        // Without an allocation in the common range (Rust's shortest digits, no exponent,
        // no `.0`: what Go prints there).
        // Whole numbers as integers; others with ryu's shortest round-trip digits where
        // they need no exponent (Go's form in this range), else Rust's formatting. Two
        // shortest forms of one value may differ in the last digit; both parse to it.
        Cell::Float(f) if *f == 0.0 => w.write_all(if f.is_sign_negative() { b"-0" } else { b"0" }),
        Cell::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
            w.write_all(itoa::Buffer::new().format(*f as i64).as_bytes())
        }
        Cell::Float(f) if f.is_finite() && (1e-6..1e21).contains(&f.abs()) => {
            let mut buf = ryu::Buffer::new();
            let s = buf.format_finite(*f);
            if s.contains('e') {
                write!(w, "{f}")
            } else {
                w.write_all(s.strip_suffix(".0").unwrap_or(s).as_bytes())
            }
        }
        Cell::Float(f) => match go_float(*f) {
            Some(s) => w.write_all(s.as_bytes()),
            None => w.write_all(b"null"),
        },
        Cell::Str(s) => write_str(w, s),
        Cell::Bool(b) => write!(w, "{b}"),
        Cell::Time(ns) => match time {
            TimeFormat::Rfc3339 => write_str(w, &rfc3339_in(*ns, zone)),
            TimeFormat::Epoch(unit) => {
                // Truncated toward zero, as Go's UnixNano() / unit.
                w.write_all(itoa::Buffer::new().format(*ns / unit).as_bytes())
            }
        },
    }
}

/// Bytes of encoded rows [`write_series`] gathers before it writes them.
const ROW_BUFFER: usize = 32 * 1024;

/// Some rows of a series, as one series object of an answer (a chunk is one).
pub struct SeriesPart<'a> {
    pub series: &'a ResultSeries,
    pub rows: &'a [Vec<Cell>],
    /// More chunks of this series follow.
    pub partial: bool,
}

impl<'a> SeriesPart<'a> {
    /// A whole series.
    pub fn whole(series: &'a ResultSeries) -> SeriesPart<'a> {
        SeriesPart {
            series,
            rows: &series.values,
            partial: false,
        }
    }
}

/// Writes one series object; `partial` marks a chunk that more chunks continue.
pub fn write_series(w: &mut dyn Write, part: &SeriesPart<'_>, time: TimeFormat) -> io::Result<()> {
    let (s, partial) = (part.series, part.partial);
    w.write_all(b"{")?;
    let mut first = true;
    if !s.name.is_empty() {
        w.write_all(b"\"name\":")?;
        write_str(w, &s.name)?;
        first = false;
    }
    if let Some(tags) = &s.tags {
        if !first {
            w.write_all(b",")?;
        }
        w.write_all(b"\"tags\":")?;
        serde_json::to_writer(&mut *w, tags).map_err(io::Error::other)?;
        first = false;
    }
    if !first {
        w.write_all(b",")?;
    }
    w.write_all(b"\"columns\":")?;
    serde_json::to_writer(&mut *w, &s.columns).map_err(io::Error::other)?;
    if !part.rows.is_empty() {
        w.write_all(b",\"values\":[")?;
        // Rows are encoded into a buffer handed on every ROW_BUFFER bytes: one call of the
        // writer for many rows, not one for each punctuation mark and cell.
        let mut buf: Vec<u8> = Vec::with_capacity(ROW_BUFFER + 1024);
        for (i, row) in part.rows.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.push(b'[');
            for (j, c) in row.iter().enumerate() {
                if j > 0 {
                    buf.push(b',');
                }
                write_cell(&mut buf, c, time, s.zone)?;
            }
            buf.push(b']');
            if buf.len() >= ROW_BUFFER {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        buf.push(b']');
        w.write_all(&buf)?;
    }
    if partial {
        w.write_all(b",\"partial\":true")?;
    }
    w.write_all(b"}")
}

/// Writes one statement result object (`series` as given; `partial` for a chunk).
pub fn write_statement(
    w: &mut dyn Write,
    r: &StatementResult,
    series: &[SeriesPart<'_>],
    time: TimeFormat,
    partial: bool,
) -> io::Result<()> {
    write!(w, "{{\"statement_id\":{}", r.statement_id)?;
    if !series.is_empty() {
        w.write_all(b",\"series\":[")?;
        for (i, part) in series.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            write_series(w, part, time)?;
        }
        w.write_all(b"]")?;
    }
    if !r.messages.is_empty() {
        w.write_all(b",\"messages\":[")?;
        for (i, (level, text)) in r.messages.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            w.write_all(b"{\"level\":")?;
            write_str(w, level)?;
            w.write_all(b",\"text\":")?;
            write_str(w, text)?;
            w.write_all(b"}")?;
        }
        w.write_all(b"]")?;
    }
    if let Some(e) = &r.error {
        w.write_all(b",\"error\":")?;
        write_str(w, e)?;
    }
    if partial {
        w.write_all(b",\"partial\":true")?;
    }
    w.write_all(b"}")
}

/// The whole answer: `{"results":[…]}`.
pub fn write_results(
    w: &mut dyn Write,
    results: &[StatementResult],
    time: TimeFormat,
) -> io::Result<()> {
    w.write_all(b"{\"results\":[")?;
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        let series: Vec<SeriesPart<'_>> = r.series.iter().map(SeriesPart::whole).collect();
        write_statement(w, r, &series, time, false)?;
    }
    w.write_all(b"]}")
}

/// The CSV form InfluxDB 1.x sends for `Accept: application/csv`: per statement a header
/// `name,tags,<columns>` (again when the columns change), a row per value with tags as
/// `k=v,k=v`, a blank line between statements; times are integers (nanoseconds unless
/// `epoch` says otherwise); a failed statement writes nothing.
pub fn write_csv(
    w: &mut dyn Write,
    results: &[StatementResult],
    time: TimeFormat,
) -> io::Result<()> {
    let mut wrote_any = false;
    for r in results {
        if r.error.is_some() || r.series.is_empty() {
            continue;
        }
        if wrote_any {
            writeln!(w)?;
        }
        wrote_any = true;
        let mut last_header: Option<&Vec<String>> = None;
        for s in &r.series {
            if last_header != Some(&s.columns) {
                let mut h = vec!["name".to_string(), "tags".to_string()];
                h.extend(s.columns.iter().map(|c| csv_field(c)));
                writeln!(w, "{}", h.join(","))?;
                last_header = Some(&s.columns);
            }
            // As InfluxDB: tags with an empty value left out, `,`, ` ` and `=` escaped as
            // line protocol escapes them.
            let escape = |x: &str| {
                x.replace(',', "\\,")
                    .replace(' ', "\\ ")
                    .replace('=', "\\=")
            };
            let tags = s
                .tags
                .as_ref()
                .map(|t| {
                    t.iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            for row in &s.values {
                let mut fields = vec![csv_field(&s.name), csv_field(&tags)];
                for c in row {
                    fields.push(match c {
                        Cell::Null => String::new(),
                        Cell::Int(i) => i.to_string(),
                        Cell::UInt(u) => u.to_string(),
                        // Every digit, never an exponent (Go's FormatFloat 'f', -1).
                        Cell::Float(f) if f.is_finite() => format!("{f}"),
                        Cell::Float(f) => go_float(*f).unwrap_or_default(),
                        Cell::Str(s) => csv_field(s),
                        Cell::Bool(b) => b.to_string(),
                        Cell::Time(ns) => match time {
                            TimeFormat::Rfc3339 => ns.to_string(),
                            TimeFormat::Epoch(unit) => (ns / unit).to_string(),
                        },
                    });
                }
                writeln!(w, "{}", fields.join(","))?;
            }
        }
    }
    Ok(())
}

/// A CSV field quoted where Go's `csv.Writer` quotes it: a delimiter, a quote or a line
/// break inside, a leading space, or the field `\.`.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(char::is_whitespace) || s == "\\." {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CSV as influxd 1.6.7 wrote it for the same series (checked by hand against it): tags
    /// with an empty value left out, `,`, ` ` and `=` escaped, the field quoted by Go's
    /// rules (a leading space), floats with every digit, epoch times truncated toward zero.
    #[test]
    fn csv_is_written_as_influxdb_writes_it() {
        let tags: BTreeMap<String, String> = [("dc", ""), ("host", "x y"), ("k", "a,b=c")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let r = StatementResult {
            statement_id: 0,
            series: vec![ResultSeries {
                zone: None,
                name: "c".into(),
                tags: Some(tags),
                columns: vec!["time".into(), "v".into(), "s".into()],
                values: vec![
                    vec![
                        Cell::Time(-1_500_000_000),
                        Cell::Float(1e21),
                        Cell::Str(" x".into()),
                    ],
                    vec![
                        Cell::Time(2_000_000_000),
                        Cell::Float(-0.0),
                        Cell::Str("a\"b".into()),
                    ],
                ],
            }],
            error: None,
            messages: Vec::new(),
            chunking: Chunking::default(),
        };
        let mut out = Vec::new();
        write_csv(&mut out, &[r], TimeFormat::Epoch(1_000_000_000)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name,tags,time,v,s\n\
             c,\"host=x\\ y,k=a\\,b\\=c\",-1,1000000000000000000000,\" x\"\n\
             c,\"host=x\\ y,k=a\\,b\\=c\",2,-0,\"a\"\"b\"\n"
        );
    }

    #[test]
    fn floats_and_times_are_written_as_influxdb_writes_them() {
        assert_eq!(go_float(2.0).unwrap(), "2");
        assert_eq!(go_float(-0.5).unwrap(), "-0.5");
        assert_eq!(go_float(0.1 + 0.2).unwrap(), "0.30000000000000004");
        assert_eq!(go_float(1e-7).unwrap(), "1e-7");
        assert_eq!(go_float(1e21).unwrap(), "1e+21");
        assert_eq!(go_float(123456789012.5).unwrap(), "123456789012.5");
        assert_eq!(go_float(f64::NAN), None);
        // The writer's fast paths print Go's form: the same value, no exponent in
        // 1e-6..1e21, no `.0`.
        let check = |f: f64| {
            let mut out = Vec::new();
            write_cell(&mut out, &Cell::Float(f), TimeFormat::Epoch(1), None).unwrap();
            let got = String::from_utf8(out).unwrap();
            let want = go_float(f).unwrap();
            assert_eq!(
                got.parse::<f64>().unwrap().to_bits(),
                f.to_bits(),
                "{f:e}: {got}"
            );
            assert_eq!(
                got.contains('e'),
                want.contains('e'),
                "{f:e}: {got} vs {want}"
            );
            assert!(!got.ends_with(".0"), "{f:e}: {got}");
            if f.fract() == 0.0 && f.abs() < 1e15 {
                assert_eq!(got, want);
            }
        };
        for f in [
            2.0,
            -0.0,
            0.5,
            1e-6,
            1.5e-6,
            3.0e-5,
            0.1 + 0.2,
            123456789012.5,
            1e15,
            1.5e16,
            9.9e20,
            -7.25,
            1e-7,
            1e21,
            1234567.0,
        ] {
            check(f);
        }
        // And for random values of every magnitude.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = if i % 2 == 0 {
                f64::from_bits(x)
            } else {
                (x % 10_000_000) as f64 / [1.0, 10.0, 100.0, 1e4, 1e9][(i % 5) as usize]
            };
            if f.is_finite() {
                check(f);
            }
        }
    }

    #[test]
    fn results_have_the_1x_shape() {
        let r = StatementResult {
            statement_id: 0,
            series: vec![ResultSeries {
                zone: None,
                name: "cpu".into(),
                tags: Some(BTreeMap::from([("host".into(), "a".into())])),
                columns: vec!["time".into(), "mean".into()],
                values: vec![vec![Cell::Time(0), Cell::Float(1.5)]],
            }],
            ..Default::default()
        };
        let e = StatementResult::error(1, "database not found: x");
        let mut out = Vec::new();
        write_results(&mut out, &[r, e], TimeFormat::Epoch(1_000_000)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"results":[
                {"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[[0,1.5]]}]},
                {"statement_id":1,"error":"database not found: x"}
            ]})
        );
    }
}
