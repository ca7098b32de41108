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
//! * `unsafe` only in the byte classification (`classify.rs`), each block with a SAFETY
//!   comment, and tested against a per-byte definition and a portable version: the SSE2
//!   16-byte loads from `&[u8; 16]`, the AVX2 32-byte loads from `&[u8; 32]`, and the call of
//!   the AVX2 version after `is_x86_feature_detected!("avx2")`. Lines are always UTF-8
//!   validated with `std::str::from_utf8`, even when the classification says ASCII (skipping
//!   it was ~10% faster, but memory safety must not depend on the classifier).
//! * Error messages name the reason and the offending token (tokens longer than 64 bytes are
//!   truncated, control characters are escaped).
//!
//! # Structure
//!
//! ```text
//! lines(body) ─▶ fast::parse_record ── Some ─────────────────────────────▶ LineItem
//!                 (classify.rs, number.rs)  │
//!                                        None (escapes, control characters, multi-line
//!                                              strings, long lines, any error)
//!                                           ▼
//!                line_bounds + parser::Parser (the reference grammar) ─▶ LineItem
//! ```
//!
//! The general parser (`parser.rs`) implements the whole grammar above and produces every
//! error. The fast path (`fast.rs`) accepts only lines that the general parser would accept,
//! with the same result; it declines everything else, and tests compare the two.
//!
//! # Performance
//!
//! `cargo bench --bench lineproto -- lineproto_cpu` (`benches/lineproto.rs`, release, TSBS
//! `cpu` lines of ~350 bytes: 10 tags, 10 fields, a timestamp; bytes per second of thread
//! CPU time) on a shared, noisy 2-core machine (AMD EPYC, AVX2): best runs ~1.16–1.18 GB/s
//! (~3.3 M lines/s) for integer or float fields, best samples ~1.19–1.25 GB/s; under load
//! the estimates drop to 0.9–1.05 GB/s. Measured back to back with the binary from before
//! the AVX2 classification and the repeated-key fingerprints (best samples): integers
//! 1.09 → 1.24 GB/s (+13–14%), floats 1.07 → 1.20 GB/s (+12–13%); those two changes gave
//! +7–9% and +5–7%. Lines the general parser handles (escapes) ~0.35 GB/s (unchanged).
//! Before the fast path: ~0.4 GB/s.
//!
//! * One pass per line: a 64-byte-block classification (AVX2 when the CPU has it, detected at
//!   run time, else SSE2 on x86_64; AVX2 measured 7–9% faster overall) that yields the
//!   structural bits, the line end (no separate `memchr`) and whether the line is ASCII.
//!   Tokens are cut by walking the structural bits in order,
//!   never by searching from each token's start (see `fast.rs` for why).
//! * Numbers: values of up to 8 bytes (`58i`, `58.25`) are parsed from one 8-byte word with
//!   SWAR — no loop whose length varies by value (each such loop costs a branch
//!   misprediction); decimals become `mantissa / 10^k` with both operands exact, the Clinger
//!   fast path, bit-identical to `str::parse::<f64>`. Longer numbers use the general
//!   functions: SWAR integers with overflow checks, Clinger up to 2^53 and 10^22, then
//!   `str::parse`.
//! * Output: tags and fields are staged in buffers the [`Lines`] iterator reuses, so each
//!   result vector is allocated once with its exact length (pushing into the result directly
//!   measured slower), or not at all when the caller hands results back with
//!   [`Lines::recycle`] (the server does; ~3% faster).
//! * Duplicate keys: a line whose tag (field) keys have the same fingerprints, in order, as
//!   the last line whose fingerprints were pairwise distinct has no duplicate — one
//!   fingerprint and one compare per key (the usual case: bodies repeat their key sets; 5–7%
//!   faster than screening every line). Otherwise a 1024-bit fingerprint screen, exact
//!   comparison only on a collision (hashing above 32 keys).
//! * Lines the fast path declines cost one wasted classification pass on top of the general
//!   parser, which finds each delimiter with memchr's SSE2 `Two`/`Three` searchers (inlined,
//!   unlike the `memchr2`/`memchr3` free functions).
//! * Worst cases stay linear: the fast path only looks at one physical line, a string
//!   value's closing-quote search is bounded by the 64 KiB limit, and only the new line
//!   segment is re-validated when a string crosses a newline.

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

mod classify;
mod fast;
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

/// InfluxDB 1.x's bound on a series key (the measurement and its tags as line protocol
/// writes them, `m,k=v,…`), and on that key with `#!~#` and a field key: a longer one is
/// a bad line (`max key length exceeded: N > 65535`).
pub const MAX_KEY_LEN: usize = 65_535;

/// Records longer than this are the only ones whose keys can pass [`MAX_KEY_LEN`] (a key
/// with `#!~#` and a field key is at most the record's text plus 4, less its ` ` and `=`):
/// the general parser measures their keys, and the fast path takes none of them.
pub(crate) const KEY_CHECK_ABOVE: usize = MAX_KEY_LEN - 8;

/// The longest key of `line` in [`MAX_KEY_LEN`]'s terms: the series key with its longest
/// field key (and `#!~#`), or the series key alone when that is already over.
pub fn key_length(line: &ParsedLine<'_>) -> usize {
    let escaped = |s: &str, special: &dyn Fn(char) -> bool| {
        s.len() + s.chars().filter(|c| special(*c)).count()
    };
    let measurement = |c: char| c == ',' || c == ' ';
    let key = |c: char| c == ',' || c == ' ' || c == '=';
    let series = escaped(&line.measurement, &measurement)
        + line
            .tags
            .iter()
            .map(|(k, v)| 2 + escaped(k, &key) + escaped(v, &key))
            .sum::<usize>();
    let field = line
        .fields
        .iter()
        .map(|(k, _)| escaped(k, &key))
        .max()
        .unwrap_or(0);
    if series > MAX_KEY_LEN {
        series
    } else {
        series + 4 + field
    }
}

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
    let mut scratch = fast::Scratch::with_capacity(16);
    let record = fast::parse_record(line, None, 0, false, &mut scratch).unwrap_or_else(|| {
        let bounds = parser::line_bounds(line, 0, false);
        parser::parse_record(line, bounds, false, 0)
    });
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
#[derive(Clone)]
pub struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
    /// 1-based number of the physical line starting at `pos`.
    line_number: usize,
    /// Reused by the fast path from line to line.
    scratch: fast::Scratch<'a>,
    /// The body as `&str` when it is valid UTF-8 (validated once, SIMD): lines are then
    /// sliced from it instead of being validated one by one (~7% of a TSBS line's parse).
    utf8: Option<&'a str>,
}

impl std::fmt::Debug for Lines<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("body", &self.body)
            .field("pos", &self.pos)
            .field("line_number", &self.line_number)
            .finish()
    }
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
        scratch: fast::Scratch::default(),
        utf8: simdutf8::basic::from_utf8(body).ok(),
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = LineItem<'a>;

    fn next(&mut self) -> Option<LineItem<'a>> {
        loop {
            let rest = self.body.get(self.pos..).filter(|r| !r.is_empty())?;
            // A line that starts with anything but indentation, a comment or a line end is a
            // record: try the fast path first, before any other pass over the line.
            let plain = !matches!(rest.first(), Some(b' ' | b'\t' | b'#' | b'\r' | b'\n'));
            let utf8 = self.utf8.and_then(|s| s.get(self.pos..));
            if plain
                && let Some(record) = fast::parse_record(rest, utf8, 0, true, &mut self.scratch)
            {
                return Some(self.consume(rest, record));
            }
            let bounds = parser::line_bounds(rest, 0, true);
            let line = rest.get(..bounds.end).unwrap_or_default();
            let first = line.iter().position(|&b| b != b' ' && b != b'\t');
            match first.and_then(|i| line.get(i)) {
                // InfluxDB's parsers end a comment at a carriage return too, so what follows
                // a bare '\r' would be a record to them: refuse the line rather than guess.
                Some(b'#') if memchr::memchr(b'\r', line).is_some() => {
                    let record = parser::Record {
                        result: Err(ParseError {
                            kind: ParseErrorKind::ControlCharacter,
                            message: "comment line holds a carriage return ('\\r') that does not end the line".into(),
                        }),
                        text_end: bounds.end,
                        next: bounds.next,
                        newlines: usize::from(bounds.terminated),
                    };
                    return Some(self.consume(rest, record));
                }
                None | Some(b'#') => {
                    // Blank or comment: skip the physical line.
                    self.pos += bounds.next;
                    self.line_number += 1;
                    continue;
                }
                Some(_) => {}
            }
            let start = first.unwrap_or(0);
            let record = (!plain)
                .then(|| fast::parse_record(rest, utf8, start, true, &mut self.scratch))
                .flatten()
                .unwrap_or_else(|| parser::parse_record(rest, bounds, true, start));
            return Some(self.consume(rest, record));
        }
    }
}

impl<'a> Lines<'a> {
    /// Hands the vectors of a parsed line back to the iterator: the next line the fast path
    /// parses reuses them (emptied, capacity kept) instead of allocating two new ones.
    /// Optional; a caller that keeps its lines simply does not call it.
    pub fn recycle(&mut self, line: ParsedLine<'a>) {
        let ParsedLine {
            mut tags,
            mut fields,
            ..
        } = line;
        tags.clear();
        fields.clear();
        self.scratch.spare_tags = tags;
        self.scratch.spare_fields = fields;
    }

    /// Turns the record parsed at the start of `rest` into an item and moves past it.
    #[inline(always)]
    fn consume(&mut self, rest: &'a [u8], record: parser::Record<'a>) -> LineItem<'a> {
        let item = LineItem {
            line_number: self.line_number,
            text: rest.get(..record.text_end).unwrap_or_default(),
            result: record.result,
        };
        // A record always consumes at least its first physical line (`next` is past it).
        self.pos += record.next.max(1);
        self.line_number += record.newlines.max(1);
        item
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
