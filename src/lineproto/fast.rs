//! Fast path for the common line: one physical line, valid UTF-8, no backslash, no control
//! character, every string value closed on the same line, shorter than 64 KiB.
//!
//! ```text
//! body ──classify (64-byte blocks, AVX2/SSE2)──▶ structural bits, first '\n', any byte >= 0x80
//!      ──&str of the line (ASCII: no second pass)──▶ Cursor over the structural bits
//!      ──cut tokens, parse values in registers──▶ Scratch ──▶ ParsedLine (2 allocations, 0 if recycled)
//! ```
//!
//! One pass classifies the line (see `classify.rs`): bit `i` of a block's mask is set when
//! byte `i` is *structural* (`,` `=` space `"` `\` or an ASCII control character); the same
//! pass finds the line's end and whether it is all ASCII. Tokens are then cut by walking the
//! set bits in order with a [`Cursor`] and borrowed from the line's `&str`; numbers are
//! parsed from 8-byte words (`number.rs`); nothing is scanned twice.
//!
//! Why walk bits rather than search from each token's start: a search (memchr or a masked
//! bit scan) makes every token's end depend on the previous token's end through a load, a
//! shift and a bit scan, a chain of ~15 cycles per token. Clearing the lowest set bit is one
//! cycle, so the token boundaries come off the masks as fast as they are consumed.
//!
//! # Invariant
//!
//! [`parse_record`] returns a record only when the general parser ([`super::parser`]) would
//! return `Ok` with the same value (all `Cow`s borrowed) and the same record bounds. For
//! anything else — any error, a backslash, a control character, a string that is not closed
//! on this line, a limit reached — it returns `None` and the caller runs the general parser,
//! which produces the result and the error message. So this module never decides what is
//! valid on its own: it only accepts a subset of what the general parser accepts, and
//! `tests.rs` checks the two against each other (including on mutated and random input).

use std::borrow::Cow;

use super::classify::{BLOCK, classify_at, classify_prefix};
use super::number::{self, WORD_BYTES, Word};
use super::parser::{Record, SMALL_DEDUP, dedup_fields, fingerprint, first_duplicate};
use super::{FieldValue, MAX_STRING_FIELD_LEN, MAX_TOKEN_LEN, ParsedLine};

/// Lines that end within `STACK_BLOCKS * BLOCK` bytes keep their masks on the stack; longer
/// lines use a heap buffer (one allocation, amortized over at least 1 KiB of input).
const STACK_BLOCKS: usize = 16;

/// Lines longer than this go to the general parser. No token of a shorter line can exceed
/// a length limit, nor its keys [`super::MAX_KEY_LEN`], so the fast path does not check
/// them.
const MAX_LINE: usize = {
    let tokens = if MAX_TOKEN_LEN < MAX_STRING_FIELD_LEN {
        MAX_TOKEN_LEN
    } else {
        MAX_STRING_FIELD_LEN
    };
    if tokens < super::KEY_CHECK_ABOVE {
        tokens
    } else {
        super::KEY_CHECK_ABOVE
    }
};

/// Parses the record at the start of `buf` (from `start`, after any indentation the caller
/// skipped) if it is a fast-path line; see the module docs. The line ends at the first
/// `'\n'`; with `strip_cr` a `'\r'` before it (or at the end of `buf`) is not part of it,
/// as in [`super::parser::line_bounds`]. `utf8`: `buf` as a `&str` when the caller already
/// knows it is valid UTF-8 (a whole body validated at once), so the line is not validated
/// again.
pub(super) fn parse_record<'a>(
    buf: &'a [u8],
    utf8: Option<&'a str>,
    start: usize,
    strip_cr: bool,
    scratch: &mut Scratch<'a>,
) -> Option<Record<'a>> {
    let mut stack = [0u64; STACK_BLOCKS];
    let mut heap = Vec::new();
    let line = classify_line(buf, utf8, strip_cr, &mut stack, &mut heap)?;
    let parsed = parse(line.text, line.masks, start, scratch)?;
    Some(Record {
        result: Ok(parsed),
        text_end: line.text.len(),
        next: line.newline.map_or(buf.len(), |nl| nl + 1),
        newlines: usize::from(line.newline.is_some()),
    })
}

/// The first line of a buffer, classified.
struct ClassifiedLine<'a, 'm> {
    /// The line without its terminator (and without a stripped `'\r'`).
    text: &'a str,
    /// Structural bits of `text`, one `u64` per 64-byte block; none at or past its end.
    masks: &'m [u64],
    /// Position of the terminating `'\n'` in the buffer, if any.
    newline: Option<usize>,
}

/// Classifies the first line of `buf` (up to the first `'\n'`, see [`parse_record`]) into
/// `stack`, or `heap` for lines longer than `stack` covers. `None` for lines that are longer
/// than [`MAX_LINE`] or not valid UTF-8.
fn classify_line<'a, 'm>(
    buf: &'a [u8],
    utf8: Option<&'a str>,
    strip_cr: bool,
    stack: &'m mut [u64; STACK_BLOCKS],
    heap: &'m mut Vec<u64>,
) -> Option<ClassifiedLine<'a, 'm>> {
    let (mut blocks, mut newline) = classify_prefix(buf, stack);
    let all_masks: &'m mut [u64] = if newline.is_none() && blocks * BLOCK < buf.len() {
        // A long line: find its end, then classify the rest into the heap buffer.
        let end = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
        if end > MAX_LINE {
            return None;
        }
        newline = buf.get(end).map(|_| end);
        heap.extend_from_slice(stack.as_slice());
        while blocks * BLOCK < end {
            let masks = classify_at(buf, blocks * BLOCK)?;
            heap.push(masks.structural);
            blocks += 1;
        }
        heap
    } else {
        stack.get_mut(..blocks)?
    };

    // The line proper: without the terminator, and without a '\r' before it if asked.
    let end = newline.unwrap_or(buf.len());
    let mut content_end = end;
    if strip_cr && end > 0 && buf.get(end - 1) == Some(&b'\r') {
        content_end = end - 1;
    }
    if content_end > MAX_LINE {
        return None;
    }
    let line = buf.get(..content_end)?;
    // Nothing at or after the content end is structural.
    let masks = all_masks.get_mut(..content_end.div_ceil(BLOCK))?;
    if let (Some(last), rem @ 1..) = (masks.last_mut(), content_end % BLOCK) {
        *last &= !(u64::MAX << rem);
    }
    // Always validated (trusting the classifier's ASCII bit instead would make memory safety
    // on network input depend on it being right), but when the whole body was validated at
    // once the line is a slice of that `&str` (a char-boundary check, not a pass).
    let text = match utf8.filter(|s| s.len() == buf.len()) {
        Some(s) => s.get(..content_end)?,
        None => std::str::from_utf8(line).ok()?,
    };
    Some(ClassifiedLine {
        text,
        masks,
        newline,
    })
}

/// Walks the structural positions of a classified line in increasing order.
struct Cursor<'m> {
    masks: &'m [u64],
    /// Index of the block `mask` belongs to.
    block: usize,
    /// Structural bits of `block` not yet returned.
    mask: u64,
    /// Returned when no structural byte is left.
    len: usize,
}

impl<'m> Cursor<'m> {
    fn new(masks: &'m [u64], len: usize) -> Self {
        Cursor {
            masks,
            block: 0,
            mask: masks.first().copied().unwrap_or(0),
            len,
        }
    }

    /// The next structural position, or the line length when there is none.
    #[inline(always)]
    fn next(&mut self) -> usize {
        while self.mask == 0 {
            match self.masks.get(self.block + 1) {
                Some(&m) => {
                    self.block += 1;
                    self.mask = m;
                }
                None => return self.len,
            }
        }
        let pos = self.block * BLOCK + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        pos
    }

    /// Makes [`Cursor::next`] continue with the first structural position at or after `from`.
    #[inline(never)]
    fn seek(&mut self, from: usize) {
        self.block = from / BLOCK;
        self.mask = self.masks.get(self.block).copied().unwrap_or(0) & (u64::MAX << (from % BLOCK));
    }
}

/// The line, its `&str` view and a cursor over its structural bytes.
struct Scan<'a, 'm> {
    text: &'a str,
    line: &'a [u8],
    cursor: Cursor<'m>,
}

impl<'a> Scan<'a, '_> {
    #[inline(always)]
    fn byte(&self, i: usize) -> Option<u8> {
        self.line.get(i).copied()
    }

    /// End of a tag key, tag value or field key: the next `,`, `=`, space, backslash or
    /// control character (a `"` is an ordinary name character).
    #[inline(always)]
    fn name_end(&mut self) -> usize {
        let mut end = self.cursor.next();
        while self.byte(end) == Some(b'"') {
            end = self.cursor.next();
        }
        end
    }

    /// Skips the spaces from `from` (a position just after a consumed space); the cursor
    /// continues after them.
    #[inline(always)]
    fn skip_spaces(&mut self, from: usize) -> usize {
        if self.byte(from) != Some(b' ') {
            return from;
        }
        let mut i = from;
        while self.byte(i) == Some(b' ') {
            i += 1;
        }
        self.cursor.seek(i);
        i
    }

    /// The name `text[from..to]`, if it is non-empty. ([`parse`] only takes lines shorter
    /// than the length limits.)
    #[inline(always)]
    fn name(&self, from: usize, to: usize) -> Option<&'a str> {
        if to <= from {
            return None;
        }
        self.text.get(from..to)
    }

    /// One `key=value` starting at `pos`: the key, the value and the position of the byte
    /// after the value (the next structural position, already consumed, or the line length).
    #[inline(always)]
    fn field(&mut self, pos: usize) -> Option<(&'a str, FieldValue<'a>, usize)> {
        let key_end = self.name_end();
        if self.byte(key_end) != Some(b'=') {
            return None;
        }
        let key = self.name(pos, key_end)?;
        let value_start = key_end + 1;
        let value_end = self.cursor.next();
        if value_end != value_start || self.byte(value_start) != Some(b'"') {
            let value = value(self.line, value_start, value_end)?;
            return Some((key, value, value_end));
        }
        // A string. No backslash on the fast path, so the first quote closes it; other
        // structural bytes (`,`, `=`, space, control characters) are content.
        let close = loop {
            let i = self.cursor.next();
            match self.byte(i)? {
                b'"' => break i,
                b'\\' => return None,
                _ => {}
            }
        };
        let content = value_start + 1;
        let s = self.text.get(content..close)?;
        // The byte after the closing quote must be a delimiter (or the end of the line).
        let after = self.cursor.next();
        if after != close + 1 {
            return None;
        }
        Some((key, FieldValue::String(Cow::Borrowed(s)), after))
    }
}

/// The 8 bytes of `line` from `i` as a [`Word`] (zero past the end of the line).
#[inline(always)]
fn word_at(line: &[u8], i: usize) -> Word {
    match line
        .get(i..)
        .and_then(|rest| rest.first_chunk::<WORD_BYTES>())
    {
        Some(bytes) => Word::from_le_bytes(*bytes),
        None => word_at_end(line, i),
    }
}

#[cold]
fn word_at_end(line: &[u8], i: usize) -> Word {
    let mut bytes = [0u8; WORD_BYTES];
    for (b, &c) in bytes.iter_mut().zip(line.get(i..).unwrap_or_default()) {
        *b = c;
    }
    Word::from_le_bytes(bytes)
}

/// The non-string field value `line[start..end]`, exactly as the general parser reads it, or
/// `None` if it is invalid. Short numbers are read as one [`Word`]; anything else goes to the
/// functions the general parser uses.
#[inline(always)]
fn value(line: &[u8], start: usize, end: usize) -> Option<FieldValue<'static>> {
    let token = line.get(start..end)?;
    let (&first, &last) = (token.first()?, token.last()?);
    let negative = usize::from(first == b'-');
    match first {
        b't' | b'T' | b'f' | b'F' => match token {
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(FieldValue::Boolean(true)),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(FieldValue::Boolean(false)),
            _ => None,
        },
        b'-' | b'0'..=b'9' | b'.' => match last {
            b'i' => {
                let digits = token.get(..token.len() - 1)?;
                match number::parse_word_digits(
                    word_at(line, start + negative),
                    digits.len() - negative,
                ) {
                    // At most 8 digits: always in range.
                    Some(m) if negative == 1 => 0i64.checked_sub_unsigned(m),
                    Some(m) => i64::try_from(m).ok(),
                    None => number::parse_i64(digits).ok(),
                }
                .map(FieldValue::Integer)
            }
            b'u' => {
                let digits = token.get(..token.len() - 1)?;
                number::parse_word_digits(word_at(line, start), digits.len())
                    .or_else(|| number::parse_u64(digits).ok())
                    .map(FieldValue::UInteger)
            }
            _ => match number::parse_word_decimal(
                word_at(line, start + negative),
                token.len() - negative,
            ) {
                Some(v) if negative == 1 => Some(-v),
                Some(v) => Some(v),
                None => number::parse_f64(token).ok(),
            }
            .map(FieldValue::Float),
        },
        _ => None,
    }
}

/// The integer `token` (`[-]digits`) that starts at `line[start]`, exactly as
/// [`number::parse_i64`] reads it (which it falls back to).
#[inline(always)]
fn integer(line: &[u8], start: usize, token: &[u8]) -> Option<i64> {
    let negative = usize::from(token.first() == Some(&b'-'));
    let digits = token.len() - negative;
    let from = start + negative;
    match number::parse_words_digits(digits, |i| word_at(line, from + i)) {
        Some(m) if negative == 1 => 0i64.checked_sub_unsigned(m),
        Some(m) => i64::try_from(m).ok(),
        None => number::parse_i64(token).ok(),
    }
}

/// Parses the physical line `text` (no line terminator, classified into `masks`) from
/// `start`.
fn parse<'a>(
    text: &'a str,
    masks: &[u64],
    start: usize,
    scratch: &mut Scratch<'a>,
) -> Option<ParsedLine<'a>> {
    let line = text.as_bytes();
    let mut scan = Scan {
        text,
        line,
        cursor: Cursor::new(masks, line.len()),
    };

    // Indentation; blank and comment lines are the general parser's business.
    let mut pos = start;
    while matches!(scan.byte(pos), Some(b' ' | b'\t')) {
        pos += 1;
    }
    if matches!(scan.byte(pos), None | Some(b'#')) {
        return None;
    }
    if pos != 0 {
        scan.cursor.seek(pos);
    }

    // Measurement: up to the first `,` or space (`=` and `"` are ordinary characters here).
    let mut end = scan.cursor.next();
    while matches!(scan.byte(end), Some(b'=' | b'"')) {
        end = scan.cursor.next();
    }
    let measurement = Cow::Borrowed(scan.name(pos, end)?);
    pos = end;

    // Tag set.
    let tags = match scan.byte(pos)? {
        b',' => parse_tags(
            &mut scan,
            &mut pos,
            &mut scratch.tags,
            &mut scratch.spare_tags,
            &mut scratch.tag_fingerprints,
        )?,
        b' ' => Vec::new(),
        _ => return None,
    };

    // Field set: after one or more spaces, `key=value[,key=value...]`.
    pos = scan.skip_spaces(pos + 1);
    scan.byte(pos)?;
    let (fields, more) = parse_fields(
        &mut scan,
        &mut pos,
        &mut scratch.fields,
        &mut scratch.spare_fields,
        &mut scratch.field_fingerprints,
    )?;

    // Optional timestamp, then only spaces.
    let mut timestamp = None;
    if more {
        pos = scan.skip_spaces(pos + 1);
        if pos < line.len() {
            let end = scan.cursor.next();
            timestamp = Some(integer(line, pos, line.get(pos..end)?)?);
            let mut rest = end;
            while scan.byte(rest) == Some(b' ') {
                rest += 1;
            }
            if rest != line.len() {
                return None;
            }
        }
    }

    // Structural bytes accepted inside tokens above: `=` and `"` in the measurement, `"` in
    // other names, anything but `\` in string values. Everything else ended a token and had
    // to be the expected delimiter, so a backslash or control character in a name (which
    // the general parser would unescape or reject) always led to `None`.
    Some(ParsedLine {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

/// Buffers the fast path reuses from line to line: tags and fields are staged here while a
/// line is parsed, so that the vectors of the result are allocated once, with their exact
/// length, and filled in one go — or not allocated at all when the caller handed the
/// vectors of an earlier result back ([`super::Lines::recycle`]). Measured alternatives: pushing into the result vectors
/// directly (capacity counted ahead) was ~10% slower, and so was staging tags as `(Cow, Cow)`
/// (~20%: each pair is built on the stack, then copied with wider loads that stall on the
/// narrower stores).
///
/// Duplicate keys: see [`has_duplicate`], which keeps the key fingerprints of an earlier line
/// here.
#[derive(Clone, Default)]
pub(super) struct Scratch<'a> {
    tags: Vec<(&'a str, &'a str)>,
    fields: Vec<(&'a str, FieldValue<'a>)>,
    /// Empty vectors of recycled results (capacity 0 when there is none).
    pub(super) spare_tags: Vec<Tag<'a>>,
    pub(super) spare_fields: Vec<Field<'a>>,
    /// Pairwise distinct fingerprints of the tag keys / field keys of an earlier line.
    tag_fingerprints: Vec<u64>,
    field_fingerprints: Vec<u64>,
}

impl Scratch<'_> {
    /// With room for a typical line, for one-off use.
    pub(super) fn with_capacity(items: usize) -> Self {
        Scratch {
            tags: Vec::with_capacity(items),
            fields: Vec::with_capacity(items),
            spare_tags: Vec::new(),
            spare_fields: Vec::new(),
            tag_fingerprints: Vec::new(),
            field_fingerprints: Vec::new(),
        }
    }
}

type Tag<'a> = (Cow<'a, str>, Cow<'a, str>);

type Field<'a> = (Cow<'a, str>, FieldValue<'a>);

/// Parses `key=value[,key=value...]` from `*pos`. Returns the fields and whether a space
/// follows (`*pos` is then at it); `None` for anything the general parser must handle.
#[inline(never)]
fn parse_fields<'a>(
    scan: &mut Scan<'a, '_>,
    pos: &mut usize,
    staged: &mut Vec<(&'a str, FieldValue<'a>)>,
    spare: &mut Vec<Field<'a>>,
    known: &mut Vec<u64>,
) -> Option<(Vec<Field<'a>>, bool)> {
    staged.clear();
    let mut p = *pos;
    let more = loop {
        let (key, value, value_end) = scan.field(p)?;
        staged.push((key, value));
        match scan.byte(value_end) {
            None => break false,
            Some(b',') => p = value_end + 1,
            Some(b' ') => {
                p = value_end;
                break true;
            }
            Some(_) => return None,
        }
    };
    *pos = p;
    let duplicates = has_duplicate(staged, known);
    let mut fields = std::mem::take(spare);
    fields.reserve_exact(staged.len());
    fields.extend(
        staged
            .drain(..)
            .map(|(key, value)| (Cow::Borrowed(key), value)),
    );
    if duplicates {
        dedup_fields(&mut fields);
    }
    Some((fields, more))
}

/// Parses `,key=value` pairs; `*pos` is at the first `,` and ends on the space before the
/// field set. `None` for anything the general parser must handle.
#[inline(never)]
fn parse_tags<'a>(
    scan: &mut Scan<'a, '_>,
    pos: &mut usize,
    staged: &mut Vec<(&'a str, &'a str)>,
    spare: &mut Vec<Tag<'a>>,
    known: &mut Vec<u64>,
) -> Option<Vec<Tag<'a>>> {
    staged.clear();
    // Tokens are split off the front of `rest` (which starts at `base`): one char-boundary
    // check per token instead of two.
    let mut base = *pos + 1;
    let mut rest = scan.text.get(base..)?;
    let p = loop {
        let key_end = scan.name_end();
        if scan.byte(key_end) != Some(b'=') || key_end == base {
            return None;
        }
        let (key, after) = rest.split_at_checked(key_end - base)?;
        let value_end = scan.name_end();
        if value_end == key_end + 1 {
            return None;
        }
        let (value, after) = after
            .strip_prefix('=')?
            .split_at_checked(value_end - key_end - 1)?;
        staged.push((key, value));
        match scan.byte(value_end)? {
            b',' => {
                rest = after.strip_prefix(',')?;
                base = value_end + 1;
            }
            b' ' => break value_end,
            _ => return None,
        }
    };
    *pos = p;
    if has_duplicate(staged, known) {
        return None;
    }
    let mut tags = std::mem::take(spare);
    tags.reserve_exact(staged.len());
    tags.extend(
        staged
            .iter()
            .map(|&(key, value)| (Cow::Borrowed(key), Cow::Borrowed(value))),
    );
    Some(tags)
}

/// Whether two keys of `items` are equal. `known`: fingerprints (`parser::fingerprint`) that
/// are pairwise distinct, of the keys of an earlier line, or empty.
///
/// Bodies repeat their key sets line after line, so the keys usually have exactly the
/// fingerprints in `known`, in order; those are pairwise distinct, hence so are the keys
/// (equal keys have equal fingerprints). This costs a fingerprint and a compare per key,
/// against the duplicate screen's extra multiply, bit set update and (above all) its
/// load-modify-store on a 1024-bit table, which took ~17% of a TSBS line's parse. Other lines
/// take [`first_duplicate`] and refresh `known`.
#[inline(always)]
fn has_duplicate<T>(items: &[(&str, T)], known: &mut Vec<u64>) -> bool {
    if items.len() == known.len()
        && items
            .iter()
            .zip(known.iter())
            .fold(0, |diff, ((key, _), known)| {
                diff | (fingerprint(key) ^ known)
            })
            == 0
    {
        return false;
    }
    has_duplicate_slow(items, known)
}

/// [`has_duplicate`] for keys that do not match `known`. Up to [`SMALL_DEDUP`] keys whose
/// fingerprints are pairwise distinct are distinct, and their fingerprints are remembered
/// (compared pairwise once per change of key set: a screen could show a false collision and
/// leave `known` empty for every later line of the set). Otherwise [`first_duplicate`]
/// decides, and nothing is remembered.
#[cold]
#[inline(never)]
fn has_duplicate_slow<T>(items: &[(&str, T)], known: &mut Vec<u64>) -> bool {
    known.clear();
    if items.len() <= SMALL_DEDUP {
        known.extend(items.iter().map(|&(key, _)| fingerprint(key)));
        if known
            .iter()
            .enumerate()
            .all(|(i, f)| !known.get(i + 1..).is_some_and(|rest| rest.contains(f)))
        {
            return false;
        }
        known.clear();
    }
    first_duplicate(items).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a naive check, over a sequence of key sets that repeat, change by one key,
    /// gain a duplicate, have colliding screen bits or exceed the screen's size, with the
    /// remembered fingerprints carried from one call to the next as on a body.
    #[test]
    fn has_duplicate_matches_naive_check_across_lines() {
        let names: Vec<String> = (0..400)
            .map(|i| format!("key_{i}_{}", "x".repeat(i % 19)))
            .collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut known = Vec::new();
        let mut keys: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
        // Lines without and with a duplicate.
        let mut seen = [0usize; 2];
        for round in 0..20_000 {
            match next() % 8 {
                // Same keys as the previous line (the common case).
                0..=3 => {}
                // Replace one key by another key of the line (a duplicate) or by any name.
                4 | 5 => {
                    if !keys.is_empty() {
                        let at = next() as usize % keys.len();
                        keys[at] = if next() % 2 == 0 {
                            keys[next() as usize % keys.len()]
                        } else {
                            &names[next() as usize % names.len()]
                        };
                    }
                }
                // A new key set, possibly longer than the screen covers.
                _ => {
                    let len = next() as usize % 36;
                    keys = (0..len)
                        .map(|_| names[next() as usize % names.len()].as_str())
                        .collect();
                }
            }
            let items: Vec<(&str, ())> = keys.iter().map(|&k| (k, ())).collect();
            let naive = keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k));
            assert_eq!(
                has_duplicate(&items, &mut known),
                naive,
                "round {round}: {keys:?}"
            );
            // A set of distinct keys with distinct fingerprints is remembered, so that the
            // next line with these keys takes the one-compare-per-key path.
            let fps: Vec<u64> = keys.iter().map(|k| fingerprint(k)).collect();
            let distinct = fps.iter().enumerate().all(|(i, f)| !fps[..i].contains(f));
            if keys.len() <= SMALL_DEDUP && distinct {
                assert_eq!(known, fps, "round {round}: {keys:?} not remembered");
            }
            seen[usize::from(naive)] += 1;
        }
        assert!(seen[0] > 2_000 && seen[1] > 2_000, "{seen:?}");
    }

    /// Lines parsed one after another (sharing the remembered fingerprints) give what the
    /// general parser gives for each line alone.
    #[test]
    fn remembered_keys_do_not_hide_duplicates() {
        let body = "m,a=1,b=2 x=1,y=2 1\n\
                    m,a=1,b=2 x=1,y=2 2\n\
                    m,a=1,a=2 x=1,x=2 3\n\
                    m,a=1,b=2 x=1,y=2 4\n\
                    m,b=1,b=2 y=1,y=2 5\n\
                    m,a=1,b=2,a=3 x=1,y=2,x=3 6\n\
                    m,a=1,b=2 x=1,y=2 7\n\
                    m,service_environment=1,service_environmenu=2 usage_guest_nice=1,usage_guest_nicf=2\n\
                    m,service_environment=1,service_environment=2 usage_guest_nice=1,usage_guest_nice=2\n\
                    m,a=1 x=1,x=2\n\
                    m,a=1 x=1,x=2\n";
        let mut duplicates = 0;
        for item in super::super::lines(body.as_bytes()) {
            // The general parser alone (`parse_line` would try this fast path first).
            let bounds = super::super::parser::line_bounds(item.text, 0, false);
            let alone = super::super::parser::parse_record(item.text, bounds, false, 0).result;
            match &alone {
                Ok(line) if line.fields.len() == 1 => duplicates += 1,
                Err(e) => {
                    assert_eq!(e.kind, super::super::ParseErrorKind::DuplicateTagKey);
                    duplicates += 1;
                }
                Ok(_) => {}
            }
            assert_eq!(
                item.result,
                alone,
                "{:?}",
                String::from_utf8_lossy(item.text)
            );
        }
        assert_eq!(duplicates, 6);
    }
}
