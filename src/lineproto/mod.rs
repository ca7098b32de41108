//! Zero-copy parser (and canonical writer) for InfluxDB line protocol.
//!
//! # Grammar
//!
//! ```text
//! line         = indent measurement { "," tag } spaces field { "," field } [ spaces timestamp ] [ spaces ]
//! indent       = { " " | "\t" }
//! spaces       = " " { " " }
//! tag          = tag_key "=" tag_value
//! field        = field_key "=" field_value
//! field_value  = float | integer "i" | unsigned "u" | string | boolean
//! float        = [ "-" ] ( digits [ "." [ digits ] ] | "." digits ) [ ( "e" | "E" ) [ "+" | "-" ] digits ]
//! integer      = [ "-" ] digits                      (i64; leading zeros allowed)
//! unsigned     = digits                              (u64; no sign)
//! string       = '"' { any byte except '"' and '\' | "\" any byte } '"'
//! boolean      = "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
//! timestamp    = [ "-" ] digits                      (i64, returned raw: no precision applied)
//! ```
//!
//! ## Names (measurement, tag keys, tag values, field keys)
//!
//! * Non-empty, valid UTF-8, at most [`MAX_TOKEN_LEN`] bytes after unescaping, and no ASCII
//!   control characters (U+0000–U+001F, U+007F; this includes tab and CR). Quotes are ordinary
//!   characters in names (`"cpu"` is a measurement named with quotes).
//! * Escapes: in the measurement `\,` and `\ `; in tag keys, tag values and field keys `\,`,
//!   `\=` and `\ `. A backslash before any other byte (including another backslash) is a
//!   literal backslash, and the byte after it is read normally: `a\\,b` in a tag value is
//!   `a\` followed by an escaped comma, i.e. `a\,b`. This is the behaviour of InfluxDB 1.x/2.x
//!   (`models/points.go`, e.g. the test `cpu,regions=\\ east` → tag value `\ east`) and of
//!   `influxdata/line-protocol`. Consequence: a name cannot end with a backslash (that
//!   backslash would escape the delimiter), exactly as in those implementations.
//!   Divergences, all in backslash corner cases: InfluxDB 3 additionally turns `\\` into `\`
//!   in names (and rejects names ending in a backslash), and the 1.x/2.x field-key scanner
//!   treats `\\` as a pair (so `a\\=1` is field `a\\` there; here it is a key without `=`).
//! * An unescaped `=` is allowed in the measurement (`cpu=load`), but is an error inside a
//!   tag value (InfluxDB 1.x/2.x: "invalid tag format").
//! * The tag set is optional, but a `,` after the measurement must be followed by a tag, and
//!   each tag needs a non-empty key and value: `cpu,`, `cpu,=v`, `cpu,k=`, `cpu,k=v,` and
//!   `cpu,k` are errors. Duplicate tag keys are an error. Tags are returned in input order.
//!
//! ## Field values
//!
//! * Numbers start with `-`, a digit or `.`. A trailing `i` makes an `i64`, `u` a `u64`
//!   (a `-` is an error), otherwise it is an `f64`. `1`, `1.`, `.5`, `-.5`, `1e3`, `1.5E-3`,
//!   `1e+3` are floats (as in InfluxDB 1.x/2.x and the `influxdata/line-protocol` EBNF).
//!   `+1`, `NaN`, `inf`, `Infinity`, hex, `1e`, `1.1.1` are errors; so are out-of-range
//!   integers and floats that overflow to infinity. Float values are bit-identical to
//!   `str::parse::<f64>` of the same text.
//! * Booleans: exactly the ten spellings above.
//! * Strings: `\"` is a quote, `\\` is a backslash, any other backslash is literal
//!   (`"a\nb"` is the four characters `a`, `\`, `n`, `b`). Commas, spaces, `=` and any other
//!   character (control characters included) may appear unescaped. At most
//!   [`MAX_STRING_FIELD_LEN`] (64 KiB) bytes after unescaping, InfluxDB's documented limit.
//! * A raw newline inside a string value is part of the value (as in InfluxDB 1.x/2.x/3.x, whose
//!   line splitters are quote-aware): [`lines`] continues the record on the next line(s).
//!   The search for the closing quote is bounded by the string length limit. If the string
//!   is never closed (or is too long), the error covers only the physical line where it
//!   started and parsing resumes on the next line.
//! * Duplicate field keys: the last value wins, kept at the position of the first occurrence.
//!
//! ## Whitespace, blank lines, comments
//!
//! * Leading spaces and tabs are skipped (InfluxDB 1.x/2.x and 3.x both skip them).
//! * Sections are separated by one **or more** ASCII spaces; trailing spaces after the field
//!   set or timestamp are allowed (InfluxDB `TestParsePointWhitespace`, and IOx
//!   `parse_multiple_whitespace_between_elements_is_allowed`). Tabs and other whitespace are
//!   not separators (a tab inside a name is a control-character error, elsewhere a syntax
//!   error).
//! * [`lines`] splits on `'\n'`, strips one `'\r'` before it (CRLF), skips lines that are
//!   empty or only spaces/tabs, and skips comment lines whose first non-indent byte is `#`.
//!   Consequently a measurement cannot start with `#`.
//! * Timestamps are returned as written; precision scaling and range checks (InfluxDB accepts
//!   `-9223372036854775806..=9223372036854775806` ns) are the caller's job.
//!
//! ## Not checked here (the caller's job)
//!
//! Timestamp range after precision scaling, reserved names (InfluxDB 2.x rejects the tag keys
//! `_measurement`, `_field` and `time`), the 1.x/2.x limit of 65535 bytes for a whole series
//! key, schema/type conflicts between lines, and the number of tags or fields per line.
//!
//! # Invariants
//!
//! * Zero-copy: every `Cow` in a [`ParsedLine`] is `Cow::Borrowed` from the input unless the
//!   token contained an escape sequence, in which case it is `Cow::Owned`.
//! * Never panics on any input: all input access is bounds-checked (`get`), numeric parsing
//!   uses checked arithmetic, and invalid UTF-8 is a [`ParseError`].
//! * Error messages name the reason and the offending token (tokens longer than 64 bytes are
//!   truncated, control characters are escaped).
//!
//! # Performance
//!
//! * Per line: one `memchr` for the newline, one vectorized pass that detects backslashes
//!   and control characters, one `str::from_utf8` (ASCII fast path) for the whole line. Lines
//!   without a backslash (the normal case) then find each delimiter with a memchr SSE2
//!   `Two`/`Three` searcher and borrow each token from the validated `&str` with no further
//!   checks. Only lines that contain a backslash use an escape-aware byte loop.
//! * Why not `memchr2`/`memchr3` directly: on x86_64 these free functions dispatch through an
//!   indirect call and re-broadcast the needles on every call, which dominates ~10-byte
//!   tokens. The SSE2 searchers (baseline on x86_64) inline into the scanner. Other
//!   architectures use the free functions.
//! * Integers and timestamps: SWAR 8-digits-at-a-time with overflow checks. Floats: exact
//!   Clinger fast path (mantissa ≤ 2^53, |exponent| ≤ 22), `str::parse` otherwise.
//! * The tag and field vectors are allocated once, with a capacity counted by `memchr`.
//!   Duplicate keys are found by fingerprint comparison (hashing above 32 keys).
//! * Worst cases stay linear: a string value's closing-quote search is bounded by the 64 KiB
//!   limit, and only the new line segment is re-validated when a string crosses a newline.
//! * `benches/lineproto.rs` measures 10k-line TSBS `cpu` bodies (integer, float, escaped).

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::borrow::Cow;

mod number;
mod parser;
mod write;

#[cfg(test)]
mod tests;

/// Maximum length in bytes of a string field value after unescaping (InfluxDB: 64 KiB).
pub const MAX_STRING_FIELD_LEN: usize = 64 * 1024;

/// Maximum length in bytes of a measurement, tag key, tag value or field key after unescaping
/// (the same limit InfluxDB 3 applies to names).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    String(Cow<'a, str>),
    Boolean(bool),
}

/// One parsed line of line protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine<'a> {
    pub measurement: Cow<'a, str>,
    /// In input order. Duplicate tag keys are an error.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// At least one. Duplicate field keys: the last value wins, kept at the position of the first occurrence.
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    /// Raw integer as written (no precision applied). None when absent.
    pub timestamp: Option<i64>,
}

/// Category of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The line is empty or only whitespace (only from [`parse_line`]).
    EmptyLine,
    /// The line is a comment (only from [`parse_line`]).
    CommentLine,
    /// A token is not valid UTF-8.
    InvalidUtf8,
    /// A name contains an ASCII control character.
    ControlCharacter,
    /// A name or string value exceeds its length limit.
    TooLong,
    MissingMeasurement,
    MissingTagKey,
    MissingTagValue,
    /// Unescaped `=` in a tag value.
    InvalidTagValue,
    DuplicateTagKey,
    /// No field set after the measurement and tags.
    MissingFields,
    MissingFieldKey,
    MissingFieldValue,
    /// A field value is not a valid float, integer, unsigned, string or boolean.
    InvalidFieldValue,
    /// A numeric field value does not fit its type.
    ValueOutOfRange,
    UnterminatedString,
    InvalidTimestamp,
    /// Something other than spaces after the timestamp.
    TrailingData,
    /// [`parse_line`] was given a line terminator or more than one line.
    UnexpectedNewline,
}

/// Why a line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Machine-readable category.
    pub kind: ParseErrorKind,
    /// Human-readable reason naming the offending token,
    /// e.g. `invalid field value for field 'usage': '1.2.3'`.
    pub message: String,
}

/// Parses one line (no trailing `'\n'` or `'\r\n'`; the caller strips them). It must not be
/// blank or a comment (those are errors here; [`lines`] skips them). A raw newline is only
/// accepted inside a string field value.
pub fn parse_line(line: &[u8]) -> Result<ParsedLine<'_>, ParseError> {
    let bounds = parser::line_bounds(line, 0, false);
    let record = parser::Parser::new(line, bounds, false, 0).parse_record();
    let parsed = record.result?;
    if record.text_end != line.len() {
        return Err(ParseError {
            kind: ParseErrorKind::UnexpectedNewline,
            message: format!(
                "unexpected newline outside a string field value before '{}'",
                parser::show(line.get(record.text_end..).unwrap_or_default())
            ),
        });
    }
    Ok(parsed)
}

/// Iterator over the lines of a request body; see [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
    /// 1-based number of the physical line starting at `pos`.
    line_number: usize,
}

/// One non-skipped line of a body.
#[derive(Debug, Clone, PartialEq)]
pub struct LineItem<'a> {
    /// 1-based physical line number where the line starts (blank and comment lines count).
    pub line_number: usize,
    /// The line's bytes without the line terminator. Contains `'\n'` only when a string field
    /// value spans lines.
    pub text: &'a [u8],
    pub result: Result<ParsedLine<'a>, ParseError>,
}

/// Iterates over a whole request body. Splits on `'\n'` with memchr, strips a trailing `'\r'`,
/// skips blank/whitespace-only lines and comment lines (first non-whitespace char `#`).
/// Yields every non-skipped line: its 1-based line number (counting all lines in the body,
/// skipped ones included), its bytes (without EOL) and the parse result.
pub fn lines(body: &[u8]) -> Lines<'_> {
    Lines {
        body,
        pos: 0,
        line_number: 1,
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = LineItem<'a>;

    fn next(&mut self) -> Option<LineItem<'a>> {
        loop {
            let rest = self.body.get(self.pos..).filter(|r| !r.is_empty())?;
            let bounds = parser::line_bounds(rest, 0, true);
            let line = rest.get(..bounds.end).unwrap_or_default();
            let first = line.iter().position(|&b| b != b' ' && b != b'\t');
            match first.and_then(|i| line.get(i)) {
                None | Some(b'#') => {
                    // Blank or comment: skip the physical line.
                    self.pos += bounds.next;
                    self.line_number += 1;
                    continue;
                }
                Some(_) => {}
            }
            let start = first.unwrap_or(0);
            let record = parser::Parser::new(rest, bounds, true, start).parse_record();
            let item = LineItem {
                line_number: self.line_number,
                text: rest.get(..record.text_end).unwrap_or_default(),
                result: record.result,
            };
            // A record always consumes at least its first physical line.
            self.pos += record.next.max(bounds.next);
            self.line_number += record.newlines.max(1);
            return Some(item);
        }
    }
}

impl std::iter::FusedIterator for Lines<'_> {}

/// Formats a line as canonical line protocol (no trailing newline) and appends it to `out`.
///
/// Measurement: `,` and space are escaped; tag keys, tag values and field keys: `,`, `=` and
/// space; string values: `"` and `\`. Floats use Rust's shortest round-trip representation
/// (`{:?}`: `1.0`, `0.1`, `1e16`), integers get an `i` suffix, unsigned integers a `u`,
/// booleans are `true`/`false`, and the timestamp is appended when present.
///
/// The output parses back to an equal `ParsedLine` provided the line is representable: at
/// least one field, non-empty names without ASCII control characters that do not end with a
/// backslash, a measurement not starting with `#`, unique tag keys, finite floats and the
/// length limits. Otherwise the output is written anyway but will not round-trip.
pub fn write_line(line: &ParsedLine<'_>, out: &mut String) {
    write::write_line(line, out);
}
