//! The record parser. See the module documentation of `lineproto` for the grammar.
//!
//! A [`Parser`] works on a buffer that starts at the beginning of a record (a line) and may
//! extend past it: only a double-quoted string field value may continue over a `'\n'`, so all
//! other tokens are searched for within `[pos, end)`, the current physical line, and `end`
//! moves forward when a string value crosses a line break.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use memchr::memchr;

use super::number::{self, NumError};
use super::{
    FieldValue, MAX_STRING_FIELD_LEN, MAX_TOKEN_LEN, ParseError, ParseErrorKind, ParsedLine,
};

/// Result of parsing one record out of a buffer.
pub(super) struct Record<'a> {
    pub(super) result: Result<ParsedLine<'a>, ParseError>,
    /// End (exclusive) of the record's text, without the line terminator.
    pub(super) text_end: usize,
    /// Start of the next record: just past the terminating `'\n'`, or the buffer length.
    pub(super) next: usize,
    /// Number of `'\n'` bytes consumed (embedded in string values plus the terminator).
    pub(super) newlines: usize,
}

/// Bounds of one physical line starting at `from`.
#[derive(Clone, Copy, Debug)]
pub(super) struct LineBounds {
    /// Content end (exclusive): the `'\n'` position, minus a preceding `'\r'` if stripped.
    pub(super) end: usize,
    /// Start of the following line (past the `'\n'`), or `buf.len()`.
    pub(super) next: usize,
    /// Whether the line was terminated by a `'\n'` (false for the last line).
    pub(super) terminated: bool,
}

/// Finds the physical line starting at `from`. With `strip_cr`, a `'\r'` right before the
/// `'\n'` (or at the very end of the buffer) is excluded from the content.
#[inline]
pub(super) fn line_bounds(buf: &[u8], from: usize, strip_cr: bool) -> LineBounds {
    let rest = buf.get(from..).unwrap_or_default();
    let (nl, next, terminated) = match memchr(b'\n', rest) {
        Some(off) => (from + off, from + off + 1, true),
        None => (buf.len(), buf.len(), false),
    };
    let end = if strip_cr && nl > from && buf.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    LineBounds {
        end,
        next,
        terminated,
    }
}

/// Which kind of name is being scanned: decides the delimiters and the escapable bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Name {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
}

impl Name {
    fn what(self) -> &'static str {
        match self {
            Name::Measurement => "measurement",
            Name::TagKey => "tag key",
            Name::TagValue => "tag value",
            Name::FieldKey => "field key",
        }
    }

    /// Bytes that end the token when unescaped, and that a backslash escapes.
    /// Measurement: `,` and space. Tag keys/values and field keys: `,`, `=` and space.
    #[inline]
    fn is_special(self, b: u8) -> bool {
        match self {
            Name::Measurement => b == b',' || b == b' ',
            _ => b == b',' || b == b' ' || b == b'=',
        }
    }
}

/// A scanned name token: `[start, end)` in the buffer, the unescaped byte that stopped it
/// (`None` at end of line) and whether it contains escape sequences.
struct Token {
    end: usize,
    stop: Option<u8>,
    escaped: bool,
}

/// memchr searches for the short, per-token delimiter scans. On x86_64 the free functions
/// `memchr2`/`memchr3` pick an implementation at run time through an indirect call and
/// re-broadcast the needles on every call; for ~10-byte tokens that overhead dominates. The
/// SSE2 searchers (SSE2 is part of the x86_64 baseline, so `new` always succeeds) are fully
/// inlinable instead. Other architectures use the free functions.
#[inline(always)]
fn find1(n1: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = memchr::arch::x86_64::sse2::memchr::One::new(n1) {
        return searcher.find(hay);
    }
    memchr(n1, hay)
}

#[inline(always)]
fn find2(n1: u8, n2: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = memchr::arch::x86_64::sse2::memchr::Two::new(n1, n2) {
        return searcher.find(hay);
    }
    memchr::memchr2(n1, n2, hay)
}

#[inline(always)]
fn find3(n1: u8, n2: u8, n3: u8, hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = memchr::arch::x86_64::sse2::memchr::Three::new(n1, n2, n3) {
        return searcher.find(hay);
    }
    memchr::memchr3(n1, n2, n3, hay)
}

/// Any ASCII control character (U+0000..=U+001F, U+007F) or a backslash in `bytes`?
/// Written without early exit so that it vectorizes.
#[inline]
fn scan_flags(bytes: &[u8]) -> (bool, bool) {
    let mut ctrl = false;
    let mut backslash = false;
    for &b in bytes {
        ctrl |= (b < 0x20) | (b == 0x7f);
        backslash |= b == b'\\';
    }
    (ctrl, backslash)
}

#[inline]
fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Renders (a prefix of) a token for an error message: at most 64 bytes, lossy UTF-8,
/// control characters shown as `\u{..}` escapes.
pub(super) fn show(bytes: &[u8]) -> String {
    const MAX: usize = 64;
    let (shown, truncated) = match bytes.get(..MAX) {
        Some(prefix) if bytes.len() > MAX => (prefix, true),
        _ => (bytes, false),
    };
    let text = String::from_utf8_lossy(shown);
    let mut text: &str = &text;
    if truncated {
        // Drop a multi-byte character that was cut in half (it shows up as U+FFFD at the end).
        text = text.strip_suffix('\u{FFFD}').unwrap_or(text);
    }
    let mut out = String::with_capacity(text.len() + 5);
    for c in text.chars() {
        if c.is_ascii_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if truncated {
        out.push_str("...");
    }
    out
}

fn err(kind: ParseErrorKind, message: String) -> ParseError {
    ParseError { kind, message }
}

/// Removes the backslash of every escape sequence `\x` where `x` satisfies `special`.
/// A backslash before anything else is kept. Works on bytes: all escapes are ASCII, so the
/// result is valid UTF-8 whenever the input is (checked anyway, never assumed).
fn unescape(raw: &[u8], special: impl Fn(u8) -> bool) -> Result<String, Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(off) = memchr(b'\\', rest) {
        let (before, from_backslash) = rest.split_at(off);
        out.extend_from_slice(before);
        match from_backslash.get(1) {
            Some(&next) if special(next) => {
                out.push(next);
                rest = from_backslash.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(b'\\');
                rest = from_backslash.get(1..).unwrap_or_default();
            }
        }
    }
    out.extend_from_slice(rest);
    String::from_utf8(out).map_err(|e| e.into_bytes())
}

/// Caps the capacity pre-allocated from delimiter counts (a hint, not a limit).
const MAX_CAPACITY_HINT: usize = 256;

/// Up to this many keys, duplicates are screened by fingerprint ([`may_have_duplicates`])
/// and confirmed pairwise; above it, a hash set is used.
pub(super) const SMALL_DEDUP: usize = 32;

/// Cheap key fingerprint from the length and up to 16 bytes at both ends, read with a few
/// (possibly overlapping) word loads. Equal keys have equal fingerprints; a fingerprint
/// match is confirmed with a full comparison.
#[inline(always)]
pub(super) fn fingerprint(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let len = bytes.len() as u64;
    let words = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(first), Some(last)) => {
            u64::from_le_bytes(*first) ^ u64::from_le_bytes(*last).rotate_left(29)
        }
        _ => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(first), Some(last)) => {
                u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32
            }
            _ => {
                // 0..=3 bytes: the first, middle and last byte cover them all.
                let at = |i: usize| u64::from(bytes.get(i).copied().unwrap_or(0));
                at(0) | at(bytes.len() / 2) << 8 | at(bytes.len().wrapping_sub(1)) << 16
            }
        },
    };
    words ^ len.rotate_right(8)
}

/// Index of the first key (by position) that repeats an earlier key, if any.
#[inline]
pub(super) fn first_duplicate<K: AsRef<str>, T>(items: &[(K, T)]) -> Option<usize> {
    if items.len() < 2 {
        return None;
    }
    if items.len() <= SMALL_DEDUP {
        if !may_have_duplicates(items.iter().map(|(key, _)| key.as_ref())) {
            return None;
        }
        items
            .iter()
            .enumerate()
            .skip(1)
            .find(|(i, (key, _))| {
                items
                    .iter()
                    .take(*i)
                    .any(|(earlier, _)| earlier.as_ref() == key.as_ref())
            })
            .map(|(i, _)| i)
    } else {
        let mut seen: HashSet<&str> = HashSet::with_capacity(items.len());
        items.iter().position(|(key, _)| !seen.insert(key.as_ref()))
    }
}

/// A branch-free screen for duplicates among (up to [`SMALL_DEDUP`]) keys: each key's
/// fingerprint picks one bit of a 1024-bit set. Distinct keys (the normal case) rarely pick
/// the same bit, so `false` ("certainly all distinct") is the usual answer; equal keys always
/// collide, so `true` means "check exactly".
#[inline(always)]
fn may_have_duplicates<'k>(keys: impl Iterator<Item = &'k str>) -> bool {
    let mut seen = [0u64; 16];
    let mut collided = 0u64;
    for key in keys {
        let bit = (fingerprint(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize;
        if let Some(word) = seen.get_mut(bit / 64) {
            collided |= *word >> (bit % 64);
            *word |= 1 << (bit % 64);
        }
    }
    collided & 1 != 0
}

/// Merges duplicate field keys: the last value wins, at the position of the first occurrence.
#[inline]
pub(super) fn dedup_fields<'a>(fields: &mut Vec<(Cow<'a, str>, FieldValue<'a>)>) {
    if first_duplicate(fields).is_some() {
        merge_duplicate_fields(fields);
    }
}

#[cold]
fn merge_duplicate_fields<'a>(fields: &mut Vec<(Cow<'a, str>, FieldValue<'a>)>) {
    let mut index: HashMap<Cow<'a, str>, usize> = HashMap::with_capacity(fields.len());
    let mut merged: Vec<(Cow<'a, str>, FieldValue<'a>)> = Vec::with_capacity(fields.len());
    for (key, value) in fields.drain(..) {
        match index.get(key.as_ref()).and_then(|&i| merged.get_mut(i)) {
            Some(slot) => slot.1 = value,
            None => {
                index.insert(key.clone(), merged.len());
                merged.push((key, value));
            }
        }
    }
    *fields = merged;
}

pub(super) struct Parser<'a> {
    buf: &'a [u8],
    /// UTF-8 view of the current line segment `buf[text_base..end]` when it is valid; tokens
    /// inside it are borrowed without re-validation. `None`: tokens are validated one by one.
    text: Option<&'a str>,
    text_base: usize,
    /// Content end of the current physical line.
    end: usize,
    /// Start of the next physical line.
    next: usize,
    terminated: bool,
    newlines: usize,
    strip_cr: bool,
    /// The current line contains an ASCII control character / a backslash.
    has_ctrl: bool,
    has_backslash: bool,
    pos: usize,
}

/// Parses the record that starts at the beginning of `buf` with the general parser.
/// `bounds` must be `line_bounds(buf, 0, strip_cr)`; `start` is where parsing begins
/// (callers may already have skipped leading whitespace).
pub(super) fn parse_record(
    buf: &[u8],
    bounds: LineBounds,
    strip_cr: bool,
    start: usize,
) -> Record<'_> {
    Parser::new(buf, bounds, strip_cr, start).parse_record()
}

impl<'a> Parser<'a> {
    /// `bounds` must be `line_bounds(buf, 0, strip_cr)`; `start` is where parsing begins
    /// (callers may already have skipped leading whitespace).
    pub(super) fn new(buf: &'a [u8], bounds: LineBounds, strip_cr: bool, start: usize) -> Self {
        let line = buf.get(..bounds.end).unwrap_or(buf);
        let (has_ctrl, has_backslash) = scan_flags(line);
        Parser {
            buf,
            text: std::str::from_utf8(line).ok(),
            text_base: 0,
            end: bounds.end,
            next: bounds.next,
            terminated: bounds.terminated,
            newlines: 0,
            strip_cr,
            has_ctrl,
            has_backslash,
            pos: start,
        }
    }

    /// Parses one record and reports where it ended.
    pub(super) fn parse_record(mut self) -> Record<'a> {
        let start = self.pos;
        let mut result = self.parse();
        // Only a record this long (its physical lines together, a string value may span
        // several) can hold a key past InfluxDB's bound; the fast path takes shorter
        // single lines only.
        let long = self.end.saturating_sub(start) > super::KEY_CHECK_ABOVE;
        if long
            && let Ok(line) = &result
            && let len = super::key_length(line)
            && len > super::MAX_KEY_LEN
        {
            result = Err(err(
                ParseErrorKind::TooLong,
                format!(
                    "max key length exceeded: {len} > {} (the measurement and its tags as line protocol writes them, and with a field key)",
                    super::MAX_KEY_LEN
                ),
            ));
        }
        Record {
            result,
            text_end: self.end,
            next: self.next,
            newlines: self.newlines + usize::from(self.terminated),
        }
    }

    #[inline]
    fn byte(&self, i: usize) -> Option<u8> {
        if i < self.end {
            self.buf.get(i).copied()
        } else {
            None
        }
    }

    #[inline]
    fn line_rest(&self, from: usize) -> &'a [u8] {
        self.buf.get(from..self.end).unwrap_or_default()
    }

    #[inline]
    fn bytes(&self, from: usize, to: usize) -> &'a [u8] {
        self.buf.get(from..to).unwrap_or_default()
    }

    #[inline]
    fn skip_spaces(&mut self) {
        while self.byte(self.pos) == Some(b' ') {
            self.pos += 1;
        }
    }

    /// `buf[from..to]` as `&str`: borrowed from the validated view when possible, otherwise
    /// validated now (so invalid UTF-8 is reported against the token that contains it).
    #[inline(always)]
    fn str_at(&self, from: usize, to: usize, what: &str) -> Result<&'a str, ParseError> {
        match self.text_slice(from, to) {
            Some(s) => Ok(s),
            None => self.validate_at(from, to, what),
        }
    }

    /// `buf[from..to]` from the already validated view of the current line segment.
    #[inline(always)]
    fn text_slice(&self, from: usize, to: usize) -> Option<&'a str> {
        let text = self.text?;
        text.get(from.checked_sub(self.text_base)?..to.checked_sub(self.text_base)?)
    }

    #[inline(never)]
    fn validate_at(&self, from: usize, to: usize, what: &str) -> Result<&'a str, ParseError> {
        let raw = self.bytes(from, to);
        std::str::from_utf8(raw).map_err(|_| {
            err(
                ParseErrorKind::InvalidUtf8,
                format!("invalid UTF-8 in {what} '{}'", show(raw)),
            )
        })
    }

    /// Scans a name starting at `self.pos` up to the first unescaped special byte of `kind`.
    #[inline(always)]
    fn scan_name(&self, kind: Name) -> Token {
        let start = self.pos;
        let hay = self.line_rest(start);
        if !self.has_backslash {
            let found = match kind {
                Name::Measurement => find2(b',', b' ', hay),
                _ => find3(b',', b' ', b'=', hay),
            };
            return match found {
                Some(off) => Token {
                    end: start + off,
                    stop: hay.get(off).copied(),
                    escaped: false,
                },
                None => Token {
                    end: self.end,
                    stop: None,
                    escaped: false,
                },
            };
        }
        // Escape-aware scan. `\x` with `x` special is an escaped `x`; a backslash before
        // anything else is a literal backslash and the next byte is scanned normally.
        let mut escaped = false;
        let mut i = 0;
        while let Some(&b) = hay.get(i) {
            if b == b'\\' {
                match hay.get(i + 1) {
                    Some(&n) if kind.is_special(n) => {
                        escaped = true;
                        i += 2;
                    }
                    _ => i += 1,
                }
            } else if kind.is_special(b) {
                return Token {
                    end: start + i,
                    stop: Some(b),
                    escaped,
                };
            } else {
                i += 1;
            }
        }
        Token {
            end: self.end,
            stop: None,
            escaped,
        }
    }

    /// Converts a scanned, non-empty name token into a `Cow`, enforcing the name rules.
    #[inline(always)]
    fn make_name(&self, kind: Name, tok: &Token) -> Result<Cow<'a, str>, ParseError> {
        // Hot path: no escapes, no control characters on the line, validated UTF-8.
        if !tok.escaped
            && !self.has_ctrl
            && let Some(s) = self.text_slice(self.pos, tok.end)
            && s.len() <= MAX_TOKEN_LEN
        {
            return Ok(Cow::Borrowed(s));
        }
        self.make_name_slow(kind, tok)
    }

    #[inline(never)]
    fn make_name_slow(&self, kind: Name, tok: &Token) -> Result<Cow<'a, str>, ParseError> {
        let start = self.pos;
        let raw = self.bytes(start, tok.end);
        if self.has_ctrl && raw.iter().copied().any(is_control) {
            return Err(err(
                ParseErrorKind::ControlCharacter,
                format!(
                    "invalid control character in {} '{}'",
                    kind.what(),
                    show(raw)
                ),
            ));
        }
        let name: Cow<'a, str> = if tok.escaped {
            match unescape(raw, |b| kind.is_special(b)) {
                Ok(s) => Cow::Owned(s),
                Err(_) => {
                    return Err(err(
                        ParseErrorKind::InvalidUtf8,
                        format!("invalid UTF-8 in {} '{}'", kind.what(), show(raw)),
                    ));
                }
            }
        } else {
            Cow::Borrowed(self.str_at(start, tok.end, kind.what())?)
        };
        if name.len() > MAX_TOKEN_LEN {
            return Err(err(
                ParseErrorKind::TooLong,
                format!(
                    "{} is longer than {MAX_TOKEN_LEN} bytes: '{}'",
                    kind.what(),
                    show(raw)
                ),
            ));
        }
        Ok(name)
    }

    fn parse(&mut self) -> Result<ParsedLine<'a>, ParseError> {
        // Indentation: spaces and tabs.
        while matches!(self.byte(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        match self.byte(self.pos) {
            None => {
                return Err(err(ParseErrorKind::EmptyLine, "empty line".to_string()));
            }
            Some(b'#') => {
                return Err(err(
                    ParseErrorKind::CommentLine,
                    "line is a comment (starts with '#')".to_string(),
                ));
            }
            _ => {}
        }

        // Measurement.
        let tok = self.scan_name(Name::Measurement);
        if tok.end == self.pos {
            return Err(err(
                ParseErrorKind::MissingMeasurement,
                "missing measurement name".to_string(),
            ));
        }
        let measurement = self.make_name(Name::Measurement, &tok)?;
        self.pos = tok.end;

        // Tag set.
        let mut tags = Vec::new();
        if tok.stop == Some(b',') {
            let section = self.line_rest(self.pos);
            let section = memchr(b' ', section)
                .and_then(|sp| section.get(..sp))
                .unwrap_or(section);
            let hint = memchr::memchr_iter(b',', section).count();
            tags.reserve_exact(hint.min(MAX_CAPACITY_HINT));
            self.parse_tags(&mut tags)?;
        } else if tok.stop.is_none() {
            return Err(self.missing_fields());
        }

        // Field set (at least one), separated from the key by one or more spaces.
        self.skip_spaces();
        if self.pos >= self.end {
            return Err(self.missing_fields());
        }
        let hint = memchr::memchr_iter(b'=', self.line_rest(self.pos)).count();
        let mut fields = Vec::with_capacity(hint.clamp(1, MAX_CAPACITY_HINT));
        let more = self.parse_fields(&mut fields)?;
        dedup_fields(&mut fields);

        // Optional timestamp, then only spaces.
        let timestamp = if more { self.parse_timestamp()? } else { None };

        Ok(ParsedLine {
            measurement,
            tags,
            fields,
            timestamp,
        })
    }

    fn missing_fields(&self) -> ParseError {
        err(
            ParseErrorKind::MissingFields,
            "missing field set (expected a space followed by at least one field=value)".to_string(),
        )
    }

    /// Parses `,key=value` pairs; `self.pos` is at the first `,`. Ends on the space before
    /// the field set.
    fn parse_tags(
        &mut self,
        tags: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
    ) -> Result<(), ParseError> {
        loop {
            self.pos += 1; // the ','
            let key_tok = self.scan_name(Name::TagKey);
            if key_tok.end == self.pos {
                let found = match self.byte(self.pos) {
                    Some(b) => format!("'{}'", show(&[b])),
                    None => "end of line".to_string(),
                };
                return Err(err(
                    ParseErrorKind::MissingTagKey,
                    format!("missing tag key after ',' (found {found})"),
                ));
            }
            let key = self.make_name(Name::TagKey, &key_tok)?;
            if key_tok.stop != Some(b'=') {
                return Err(err(
                    ParseErrorKind::MissingTagValue,
                    format!(
                        "missing '=' and tag value after tag key '{}'",
                        show(key.as_bytes())
                    ),
                ));
            }
            self.pos = key_tok.end + 1;
            let value_tok = self.scan_name(Name::TagValue);
            if value_tok.end == self.pos {
                return Err(err(
                    ParseErrorKind::MissingTagValue,
                    format!("missing tag value for tag key '{}'", show(key.as_bytes())),
                ));
            }
            let value = self.make_name(Name::TagValue, &value_tok)?;
            self.pos = value_tok.end;
            match value_tok.stop {
                Some(b',') => tags.push((key, value)),
                Some(b' ') => {
                    tags.push((key, value));
                    break;
                }
                Some(_) => {
                    return Err(err(
                        ParseErrorKind::InvalidTagValue,
                        format!(
                            "invalid tag value for tag key '{}': unescaped '=' after '{}'",
                            show(key.as_bytes()),
                            show(value.as_bytes())
                        ),
                    ));
                }
                None => return Err(self.missing_fields()),
            }
        }
        if let Some(i) = first_duplicate(tags) {
            let key = tags.get(i).map(|(k, _)| k.as_bytes()).unwrap_or_default();
            return Err(err(
                ParseErrorKind::DuplicateTagKey,
                format!("duplicate tag key '{}'", show(key)),
            ));
        }
        Ok(())
    }

    /// Parses `key=value[,key=value...]`. Returns whether a space follows (timestamp section).
    fn parse_fields(
        &mut self,
        fields: &mut Vec<(Cow<'a, str>, FieldValue<'a>)>,
    ) -> Result<bool, ParseError> {
        loop {
            let key_tok = self.scan_name(Name::FieldKey);
            if key_tok.end == self.pos {
                let found = match self.byte(self.pos) {
                    Some(b) => format!("'{}'", show(&[b])),
                    None => "end of line".to_string(),
                };
                return Err(err(
                    ParseErrorKind::MissingFieldKey,
                    format!("missing field key (found {found})"),
                ));
            }
            let key = self.make_name(Name::FieldKey, &key_tok)?;
            if key_tok.stop != Some(b'=') {
                return Err(err(
                    ParseErrorKind::MissingFieldValue,
                    format!(
                        "missing '=' and value after field key '{}'",
                        show(key.as_bytes())
                    ),
                ));
            }
            self.pos = key_tok.end + 1;
            let value = self.field_value(&key)?;
            fields.push((key, value));
            match self.byte(self.pos) {
                None => return Ok(false),
                Some(b',') => self.pos += 1,
                Some(b' ') => return Ok(true),
                Some(_) => {
                    let key = fields.last().map(|(k, _)| k.as_bytes()).unwrap_or_default();
                    return Err(err(
                        ParseErrorKind::InvalidFieldValue,
                        format!(
                            "invalid field value for field '{}': unexpected '{}' after closing quote",
                            show(key),
                            show(self.bytes(self.pos, self.pos + 1))
                        ),
                    ));
                }
            }
        }
    }

    fn field_value(&mut self, key: &str) -> Result<FieldValue<'a>, ParseError> {
        let first = match self.byte(self.pos) {
            None | Some(b',' | b' ') => {
                return Err(err(
                    ParseErrorKind::MissingFieldValue,
                    format!("missing value for field '{}'", show(key.as_bytes())),
                ));
            }
            Some(b) => b,
        };
        if first == b'"' {
            return self.string_value(key);
        }
        let start = self.pos;
        let hay = self.line_rest(start);
        let end = find2(b',', b' ', hay).map_or(self.end, |off| start + off);
        let token = self.bytes(start, end);
        self.pos = end;
        let invalid = |kind: ParseErrorKind, what: &str| {
            err(
                kind,
                format!(
                    "{what} for field '{}': '{}'",
                    show(key.as_bytes()),
                    show(token)
                ),
            )
        };
        match first {
            b't' | b'T' | b'f' | b'F' => match token {
                b"t" | b"T" | b"true" | b"True" | b"TRUE" => Ok(FieldValue::Boolean(true)),
                b"f" | b"F" | b"false" | b"False" | b"FALSE" => Ok(FieldValue::Boolean(false)),
                _ => Err(invalid(
                    ParseErrorKind::InvalidFieldValue,
                    "invalid field value",
                )),
            },
            b'-' | b'0'..=b'9' | b'.' => match token.split_last() {
                Some((b'i', digits)) => match number::parse_i64(digits) {
                    Ok(v) => Ok(FieldValue::Integer(v)),
                    Err(NumError::Range) => Err(invalid(
                        ParseErrorKind::ValueOutOfRange,
                        "integer field value out of range",
                    )),
                    Err(NumError::Syntax) => Err(invalid(
                        ParseErrorKind::InvalidFieldValue,
                        "invalid field value",
                    )),
                },
                Some((b'u', digits)) => match number::parse_u64(digits) {
                    Ok(v) => Ok(FieldValue::UInteger(v)),
                    Err(NumError::Range) => Err(invalid(
                        ParseErrorKind::ValueOutOfRange,
                        "unsigned field value out of range",
                    )),
                    Err(NumError::Syntax) => Err(invalid(
                        ParseErrorKind::InvalidFieldValue,
                        "invalid field value",
                    )),
                },
                _ => match number::parse_f64(token) {
                    Ok(v) => Ok(FieldValue::Float(v)),
                    Err(NumError::Range) => Err(invalid(
                        ParseErrorKind::ValueOutOfRange,
                        "float field value out of range",
                    )),
                    Err(NumError::Syntax) => Err(invalid(
                        ParseErrorKind::InvalidFieldValue,
                        "invalid field value",
                    )),
                },
            },
            _ => Err(invalid(
                ParseErrorKind::InvalidFieldValue,
                "invalid field value",
            )),
        }
    }

    /// Parses a double-quoted string value; `self.pos` is at the opening quote.
    /// `\"` and `\\` are escapes; any other backslash is literal. The value may contain
    /// raw newlines, in which case the record continues on the following line(s).
    fn string_value(&mut self, key: &str) -> Result<FieldValue<'a>, ParseError> {
        let start = self.pos + 1;
        // No string longer than MAX_STRING_FIELD_LEN unescaped bytes can be valid, and every
        // unescaped byte costs at most two raw bytes: bound the search for the closing quote.
        let limit = self
            .buf
            .len()
            .min(start.saturating_add(2 * MAX_STRING_FIELD_LEN + 2));
        let mut escapes = 0usize;
        let mut i = start;
        let close = loop {
            if !self.has_backslash && i < self.end {
                // No backslash on this line: the first quote on the line closes the string.
                if let Some(off) = find1(b'"', self.line_rest(i)) {
                    break i + off;
                }
                i = self.end;
                continue;
            }
            let found = self
                .buf
                .get(i..limit)
                .and_then(|hay| find2(b'"', b'\\', hay))
                .map(|off| i + off);
            let Some(j) = found else {
                let (kind, why) = if limit < self.buf.len() {
                    (
                        ParseErrorKind::TooLong,
                        format!("has no closing quote within {MAX_STRING_FIELD_LEN} bytes"),
                    )
                } else {
                    (
                        ParseErrorKind::UnterminatedString,
                        "has no closing quote".to_string(),
                    )
                };
                return Err(err(
                    kind,
                    format!(
                        "string value for field '{}' {why}: '{}'",
                        show(key.as_bytes()),
                        show(self.bytes(start - 1, self.end.max(start)))
                    ),
                ));
            };
            if self.buf.get(j) == Some(&b'"') {
                break j;
            }
            // A backslash.
            match self.buf.get(j + 1) {
                Some(b'"' | b'\\') => {
                    escapes += 1;
                    i = j + 2;
                }
                _ => i = j + 1,
            }
        };

        let raw_len = close - start;
        if raw_len - escapes > MAX_STRING_FIELD_LEN {
            return Err(err(
                ParseErrorKind::TooLong,
                format!(
                    "string value for field '{}' is longer than {MAX_STRING_FIELD_LEN} bytes: '{}'",
                    show(key.as_bytes()),
                    show(self.bytes(start, close))
                ),
            ));
        }

        // Converted before the segment bookkeeping below changes `text`; the record is
        // extended to the closing quote's line either way.
        let value = self.string_content(start, close, escapes, key);
        if close > self.end {
            // The value spans one or more line breaks: continue the record on the line that
            // contains the closing quote.
            let embedded = self.bytes(self.end, close);
            self.newlines += memchr::memchr_iter(b'\n', embedded).count();
            let bounds = line_bounds(self.buf, close + 1, self.strip_cr);
            self.end = bounds.end;
            self.next = bounds.next;
            self.terminated = bounds.terminated;
            let (ctrl, backslash) = scan_flags(self.bytes(close + 1, self.end));
            self.has_ctrl = ctrl;
            self.has_backslash = backslash;
            // Validate only the new segment: re-validating from the record start on every
            // multi-line string would be quadratic.
            self.text = std::str::from_utf8(self.bytes(close + 1, self.end)).ok();
            self.text_base = close + 1;
        }
        self.pos = close + 1;
        Ok(FieldValue::String(value?))
    }

    /// The unescaped content of a string value spanning `buf[start..close]`.
    fn string_content(
        &self,
        start: usize,
        close: usize,
        escapes: usize,
        key: &str,
    ) -> Result<Cow<'a, str>, ParseError> {
        if escapes == 0 {
            return Ok(Cow::Borrowed(self.str_at(
                start,
                close,
                "string field value",
            )?));
        }
        let raw = self.bytes(start, close);
        unescape(raw, |b| b == b'"' || b == b'\\')
            .map(Cow::Owned)
            .map_err(|_| {
                err(
                    ParseErrorKind::InvalidUtf8,
                    format!(
                        "invalid UTF-8 in string value for field '{}': '{}'",
                        show(key.as_bytes()),
                        show(raw)
                    ),
                )
            })
    }

    /// `self.pos` is at the space after the field set.
    fn parse_timestamp(&mut self) -> Result<Option<i64>, ParseError> {
        self.skip_spaces();
        if self.pos >= self.end {
            return Ok(None);
        }
        let start = self.pos;
        let end = find1(b' ', self.line_rest(start)).map_or(self.end, |off| start + off);
        let token = self.bytes(start, end);
        let ts = match number::parse_i64(token) {
            Ok(ts) => ts,
            Err(NumError::Range) => {
                return Err(err(
                    ParseErrorKind::InvalidTimestamp,
                    format!("timestamp out of range (i64): '{}'", show(token)),
                ));
            }
            Err(NumError::Syntax) => {
                return Err(err(
                    ParseErrorKind::InvalidTimestamp,
                    format!("invalid timestamp '{}'", show(token)),
                ));
            }
        };
        self.pos = end;
        self.skip_spaces();
        if self.pos < self.end {
            return Err(err(
                ParseErrorKind::TrailingData,
                format!(
                    "unexpected data after timestamp: '{}'",
                    show(self.line_rest(self.pos))
                ),
            ));
        }
        Ok(Some(ts))
    }
}
