//! Numeric token parsing: integers (`i`), unsigned integers (`u`), floats and timestamps.
//!
//! All functions take the raw token bytes (suffix already removed) and never panic.
//! Syntax is validated here, byte by byte, so the float fallback to `str::parse::<f64>`
//! only ever sees text matching the line protocol float grammar (no `inf`, `NaN`, `+1`, hex).

/// Why a numeric token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumError {
    /// Not a number of the expected shape.
    Syntax,
    /// Well-formed, but does not fit the target type (or overflows `f64` to infinity).
    Range,
}

/// Powers of ten that are exactly representable as `f64` (10^0 ..= 10^22).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest integer such that every integer up to it is exactly representable in `f64`.
const MAX_EXACT_F64_INT: u64 = 1 << 53;

/// Parses 8 ASCII digits packed little-endian in `chunk`, or returns `None` if any byte is not a
/// digit. Classic SWAR: validate, then combine pairs, quads and octets with three multiplies.
#[inline]
fn parse_8_digits(chunk: u64) -> Option<u64> {
    let v = chunk.wrapping_sub(0x3030_3030_3030_3030);
    // Every byte must be in 0..=9: no borrow (high bit) after subtracting '0' and none after
    // adding 0x76 (so that 10..=255 overflow into the high bit).
    if (v | v.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let v = (v.wrapping_mul(10)).wrapping_add(v >> 8) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100)).wrapping_add(v >> 16) & 0x0000_ffff_0000_ffff;
    let v = (v.wrapping_mul(10000)).wrapping_add(v >> 32) & 0x0000_0000_ffff_ffff;
    Some(v)
}

/// Parses a non-empty run of ASCII digits into a `u64` with overflow detection.
/// Leading zeros are allowed (InfluxDB accepts `0009223372036854775807i`).
#[inline]
pub(super) fn parse_u64_digits(digits: &[u8]) -> Result<u64, NumError> {
    if digits.is_empty() {
        return Err(NumError::Syntax);
    }
    let mut value: u64 = 0;
    let mut rest = digits;
    // Up to 19 digits cannot overflow a u64 (10^19 - 1 < 2^64), so the first 19 digits are
    // accumulated with plain arithmetic; 8 at a time where possible.
    let mut budget = 19usize;
    while budget >= 8 {
        let Some((chunk, tail)) = rest.split_first_chunk::<8>() else {
            break;
        };
        let Some(eight) = parse_8_digits(u64::from_le_bytes(*chunk)) else {
            return Err(NumError::Syntax);
        };
        value = value * 100_000_000 + eight;
        rest = tail;
        budget -= 8;
    }
    while budget > 0 {
        let Some((&c, tail)) = rest.split_first() else {
            return Ok(value);
        };
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumError::Syntax);
        }
        value = value * 10 + u64::from(d);
        rest = tail;
        budget -= 1;
    }
    // Beyond 19 digits: checked arithmetic; keep validating after an overflow so that a
    // syntax error wins over a range error.
    let mut overflow = false;
    for &c in rest {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumError::Syntax);
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumError::Range)
    } else {
        Ok(value)
    }
}

/// Parses `[-]digits` into an `i64` (used for `i` fields and timestamps).
#[inline]
pub(super) fn parse_i64(token: &[u8]) -> Result<i64, NumError> {
    match token.split_first() {
        Some((b'-', digits)) => {
            let magnitude = parse_u64_digits(digits)?;
            0i64.checked_sub_unsigned(magnitude).ok_or(NumError::Range)
        }
        _ => {
            let magnitude = parse_u64_digits(token)?;
            i64::try_from(magnitude).map_err(|_| NumError::Range)
        }
    }
}

/// Parses `digits` (no sign allowed) into a `u64` (used for `u` fields).
#[inline]
pub(super) fn parse_u64(token: &[u8]) -> Result<u64, NumError> {
    parse_u64_digits(token)
}

/// Parses a float token.
///
/// Grammar (from the reference EBNF in `influxdata/line-protocol`):
/// `[ "-" ] ( digits [ "." [ digits ] ] | "." digits ) [ ( "e" | "E" ) [ "+" | "-" ] digits ]`.
/// So `1`, `1.`, `.5`, `-.5`, `1e3`, `1.5E-3` are accepted; `+1`, `.`, `-`, `1e`, `inf`, `NaN`,
/// `0x1p3` are not. Values that overflow to infinity are a range error.
///
/// Fast path (Clinger): when the decimal mantissa is at most 2^53 and the decimal exponent is in
/// `-22..=22`, both operands are exact `f64`s and one IEEE multiply/divide gives the correctly
/// rounded result, identical to `str::parse::<f64>`. Everything else goes to `str::parse`.
pub(super) fn parse_f64(token: &[u8]) -> Result<f64, NumError> {
    let (negative, body) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, token),
    };

    let mut mantissa: u64 = 0;
    // Significant digits seen (leading zeros excluded); more than 19 means the mantissa no
    // longer fits and the slow path is needed.
    let mut significant = 0usize;
    let mut any_digit = false;
    let mut frac_digits: i64 = 0;
    let mut rest = body;

    // Integer part.
    while let Some((&c, tail)) = rest.split_first() {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        any_digit = true;
        if mantissa != 0 || d != 0 {
            significant += 1;
            if significant <= 19 {
                mantissa = mantissa * 10 + u64::from(d);
            }
        }
        rest = tail;
    }
    // Fractional part.
    if let Some((b'.', tail)) = rest.split_first() {
        rest = tail;
        while let Some((&c, tail)) = rest.split_first() {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            any_digit = true;
            if mantissa != 0 || d != 0 {
                significant += 1;
                if significant <= 19 {
                    mantissa = mantissa * 10 + u64::from(d);
                    frac_digits += 1;
                }
            } else {
                frac_digits += 1;
            }
            rest = tail;
        }
    }
    if !any_digit {
        return Err(NumError::Syntax);
    }
    // Exponent.
    let mut exponent: i64 = 0;
    if let Some((b'e' | b'E', tail)) = rest.split_first() {
        rest = tail;
        let exp_negative = match rest.split_first() {
            Some((b'-', tail)) => {
                rest = tail;
                true
            }
            Some((b'+', tail)) => {
                rest = tail;
                false
            }
            _ => false,
        };
        let mut exp_digits = false;
        while let Some((&c, tail)) = rest.split_first() {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            exp_digits = true;
            // Saturate: anything this large is decided by the slow path anyway.
            exponent = (exponent * 10 + i64::from(d)).min(1_000_000);
            rest = tail;
        }
        if !exp_digits {
            return Err(NumError::Syntax);
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if !rest.is_empty() {
        return Err(NumError::Syntax);
    }

    if significant <= 19 && mantissa <= MAX_EXACT_F64_INT {
        let e = exponent - frac_digits;
        // `mantissa as f64` is exact because mantissa <= 2^53.
        let m = mantissa as f64;
        let value = if e >= 0 {
            POW10.get(e.unsigned_abs() as usize).map(|p| m * p)
        } else {
            POW10.get(e.unsigned_abs() as usize).map(|p| m / p)
        };
        if let Some(v) = value {
            return Ok(if negative { -v } else { v });
        }
    }

    // Slow path: the syntax above is a subset of what `f64::from_str` accepts.
    let text = std::str::from_utf8(token).map_err(|_| NumError::Syntax)?;
    let value: f64 = text.parse().map_err(|_| NumError::Syntax)?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(NumError::Range)
    }
}

/// Up to eight bytes of a token, read as one little-endian word: byte `i` of the token is
/// byte `i` of the word. Bytes past the token's length may hold anything; the functions
/// below mask them off. (A word rather than a slice so that the digits are checked and
/// combined with a few operations instead of a loop whose length varies from token to
/// token, which costs a branch misprediction per value.)
pub(super) type Word = u64;

/// Bytes in a [`Word`].
pub(super) const WORD_BYTES: usize = 8;

const ONES: u64 = 0x0101_0101_0101_0101;

/// The first `len` (`1..=8`) bytes of `word` minus `'0'` (an XOR: digits become 0..=9, '.'
/// becomes 0x1e, no borrows between bytes), moved to the top of the word; the bytes below
/// them are 0, i.e. leading zero digits.
#[inline(always)]
fn align_digits(word: Word, len: usize) -> u64 {
    (word ^ (u64::from(b'0') * ONES)) << (8 * (WORD_BYTES - len))
}

/// 0x80 in every byte of `v` that is not a digit value (greater than 9). A byte >= 0x8a may
/// also flag the byte above it; callers only rely on "no flag" meaning "all digits" and on
/// a lone flag being exact.
#[inline(always)]
fn non_digits(v: u64) -> u64 {
    (v | v.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080
}

/// The number written by eight digit values (0..=9, the most significant in the low byte).
#[inline(always)]
fn combine_8_digits(v: u64) -> u64 {
    let v = (v.wrapping_mul(10)).wrapping_add(v >> 8) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100)).wrapping_add(v >> 16) & 0x0000_ffff_0000_ffff;
    (v.wrapping_mul(10000)).wrapping_add(v >> 32) & 0x0000_0000_ffff_ffff
}

/// Parses the `len` (`1..=8`) ASCII digits at the start of `word`, or `None` if any of them
/// is not a digit.
#[inline(always)]
pub(super) fn parse_word_digits(word: Word, len: usize) -> Option<u64> {
    if len.wrapping_sub(1) >= WORD_BYTES {
        return None;
    }
    let v = align_digits(word, len);
    if non_digits(v) != 0 {
        return None;
    }
    Some(combine_8_digits(v))
}

/// Parses a decimal `digits [ "." [ digits ] ] | "." digits` held in the first `len` (`1..=8`)
/// bytes of `word` (no sign, no exponent) exactly as [`parse_f64`] does, or returns `None`
/// for any other token (then call `parse_f64`).
///
/// The result is `mantissa / 10^fraction_digits` with both operands exact (at most eight
/// digits), the same single correctly rounded operation as `parse_f64`'s fast path, hence
/// bit-identical to it.
#[inline(always)]
pub(super) fn parse_word_decimal(word: Word, len: usize) -> Option<f64> {
    if len.wrapping_sub(1) >= WORD_BYTES {
        return None;
    }
    let v = align_digits(word, len);
    let flags = non_digits(v);
    let (digits, fraction_digits) = if flags == 0 {
        (v, 0)
    } else {
        // Exactly one non-digit, a '.' (0x1e after the XOR), and at least one digit.
        let at = flags.trailing_zeros() / 8; // byte index, 0..=7
        if flags & (flags - 1) != 0 || (v >> (8 * at)) & 0xff != 0x1e || len < 2 {
            return None;
        }
        // Close the gap: the bytes below the dot move up by one (a zero digit comes in at
        // the bottom), the fraction digits above it stay.
        let below = (1u64 << (8 * at)) - 1;
        let above = !((below << 8) | 0xff);
        (((v & below) << 8) | (v & above), 7 - at as usize)
    };
    // `mantissa as f64` is exact (< 10^8); so is 10^fraction_digits (fraction_digits < 8).
    let mantissa = combine_8_digits(digits);
    POW10.get(fraction_digits).map(|p| mantissa as f64 / p)
}

/// Parses `len` (`1..=19`) ASCII digits, or `None` if any is not a digit. `word(i)` must
/// return the [`Word`] that starts at digit `i` (bytes past the digits may be anything).
/// The first `len % 8` digits (or eight) come from one word, then whole words of eight.
/// At most 19 digits always fit a `u64`.
#[inline(always)]
pub(super) fn parse_words_digits(len: usize, word: impl Fn(usize) -> Word) -> Option<u64> {
    if len == 0 || len > 19 {
        return None;
    }
    let head = (len - 1) % WORD_BYTES + 1;
    let mut value = parse_word_digits(word(0), head)?;
    let mut at = head;
    while at < len {
        value = value * 100_000_000 + parse_8_digits(word(at))?;
        at += WORD_BYTES;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swar_digits() {
        assert_eq!(
            parse_8_digits(u64::from_le_bytes(*b"12345678")),
            Some(12_345_678)
        );
        assert_eq!(parse_8_digits(u64::from_le_bytes(*b"00000000")), Some(0));
        assert_eq!(
            parse_8_digits(u64::from_le_bytes(*b"99999999")),
            Some(99_999_999)
        );
        assert_eq!(parse_8_digits(u64::from_le_bytes(*b"1234567a")), None);
        assert_eq!(parse_8_digits(u64::from_le_bytes(*b"/1234567")), None);
        assert_eq!(parse_8_digits(u64::from_le_bytes(*b"1234:567")), None);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"-0"), Ok(0));
        assert_eq!(
            parse_i64(b"1451606400000000000"),
            Ok(1_451_606_400_000_000_000)
        );
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"0009223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), Err(NumError::Range));
        assert_eq!(parse_i64(b"-9223372036854775809"), Err(NumError::Range));
        assert_eq!(parse_i64(b"99999999999999999999999"), Err(NumError::Range));
        assert_eq!(
            parse_i64(b"99999999999999999999999x"),
            Err(NumError::Syntax)
        );
        assert_eq!(parse_i64(b""), Err(NumError::Syntax));
        assert_eq!(parse_i64(b"-"), Err(NumError::Syntax));
        assert_eq!(parse_i64(b"+1"), Err(NumError::Syntax));
        assert_eq!(parse_i64(b"1-"), Err(NumError::Syntax));
        assert_eq!(parse_i64(b"--1"), Err(NumError::Syntax));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), Err(NumError::Range));
        assert_eq!(parse_u64(b"-1"), Err(NumError::Syntax));
    }

    #[test]
    fn floats_match_std() {
        for s in [
            "0",
            "-0",
            "1",
            "1.",
            ".5",
            "-.5",
            "58.63",
            "0.1",
            "0.3",
            "1e3",
            "1E3",
            "1.5e-3",
            "1e+3",
            "123456789012345678",
            "9007199254740993",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "0.000000000000000000000000000001",
            "1.7976931348623157e308",
            "5e-324",
            "1e-400",
            "00001.5",
            "2.2250738585072014e-308",
            "4.9406564584124654e-324",
            "123456.789e-3",
            "1.234456e+78",
            "-1.234456e+78",
        ] {
            let expected: f64 = s.parse().expect("std parse");
            let got = parse_f64(s.as_bytes()).expect("our parse");
            assert_eq!(got.to_bits(), expected.to_bits(), "{s}");
        }
    }

    #[test]
    fn float_syntax_errors() {
        for s in [
            "", "-", ".", "-.", "+1", "1e", "1e+", "1E-", "e5", "1.1.1", "1a", "inf", "-inf",
            "NaN", "nan", "infinity", "0x10", "1_000", "1e5.5", "42+3", "0.-1", " 1",
        ] {
            assert_eq!(parse_f64(s.as_bytes()), Err(NumError::Syntax), "{s:?}");
        }
        assert_eq!(parse_f64(b"1e400"), Err(NumError::Range));
        assert_eq!(parse_f64(b"-1e400"), Err(NumError::Range));
        let huge = format!("{}.0", "9".repeat(400));
        assert_eq!(parse_f64(huge.as_bytes()), Err(NumError::Range));
    }

    /// `token` as a [`Word`] followed by `junk` bytes (what follows a token in a line).
    fn word(token: &[u8], junk: u8) -> Word {
        let mut bytes = [junk; WORD_BYTES];
        for (b, &c) in bytes.iter_mut().zip(token) {
            *b = c;
        }
        Word::from_le_bytes(bytes)
    }

    /// Every token of up to five bytes over an alphabet of digits and near-misses (the
    /// neighbours of '0' and '9', bytes that carry in the SWAR check): the word functions
    /// either decline or agree exactly with the general ones.
    #[test]
    fn word_parsers_agree_with_general_parsers() {
        let alphabet = b"0159.e-/:\xff\xbe";
        let mut token = Vec::new();
        let (mut ints, mut floats) = (0, 0);
        for len in 1..=5u32 {
            for n in 0..(alphabet.len() as u64).pow(len) {
                token.clear();
                let mut n = n;
                for _ in 0..len {
                    token.push(alphabet[(n % alphabet.len() as u64) as usize]);
                    n /= alphabet.len() as u64;
                }
                for junk in [b'0', b'.', b',', 0xff] {
                    let w = word(&token, junk);
                    if let Some(v) = parse_word_digits(w, token.len()) {
                        assert_eq!(Ok(v), parse_u64(&token), "{token:?}");
                        ints += 1;
                    }
                    if let Some(v) = parse_word_decimal(w, token.len()) {
                        let general = parse_f64(&token).map(f64::to_bits);
                        assert_eq!(Ok(v.to_bits()), general, "{token:?}");
                        floats += 1;
                    }
                }
            }
        }
        // Sanity: the word functions do take the well-formed tokens.
        assert!(ints > 5_000 && floats > 10_000, "{ints} {floats}");
        // Eight-byte tokens: all digits, or digits around one dot at every position.
        for digits in ["12345678", "00000000", "99999999", "10000001"] {
            let w = word(digits.as_bytes(), b'x');
            assert_eq!(parse_word_digits(w, 8), parse_u64(digits.as_bytes()).ok());
            for dot in 0..8 {
                let mut text = digits.as_bytes().to_vec();
                text[dot] = b'.';
                let got = parse_word_decimal(word(&text, b'x'), 8).map(f64::to_bits);
                assert_eq!(got, parse_f64(&text).ok().map(f64::to_bits), "{text:?}");
                assert!(got.is_some(), "{text:?}");
            }
        }
        assert_eq!(
            parse_word_digits(word(b"12345678", b'x'), 8),
            Some(12_345_678)
        );
        assert_eq!(parse_word_digits(word(b"1", b'9'), 1), Some(1));
        assert_eq!(parse_word_digits(word(b"", b'9'), 0), None);
        assert_eq!(parse_word_digits(word(b"123456789", b'9'), 9), None);
        for (text, expected) in [
            ("58.63", 58.63f64),
            ("0.1", 0.1),
            (".5", 0.5),
            ("1.", 1.0),
            ("9999999.", 9_999_999.0),
            ("1.234567", 1.234567),
            (".0000001", 1e-7),
            ("12345678", 12_345_678.0),
        ] {
            let got = parse_word_decimal(word(text.as_bytes(), b'7'), text.len());
            assert_eq!(got.map(f64::to_bits), Some(expected.to_bits()), "{text}");
        }
        for text in [".", "1.2.3", "1e5", "-1", "..", "1.23456789"] {
            assert_eq!(
                parse_word_decimal(word(text.as_bytes(), b'7'), text.len()),
                None,
                "{text}"
            );
        }
    }

    #[test]
    fn words_digits_agree_with_parse_u64() {
        let cases = [
            "0",
            "7",
            "12345678",
            "123456789",
            "1451606400000000000",
            "9999999999999999999",
            "0000000000000000001",
            "18446744073709551615",
            "1234567a9",
            "",
            "12345678901234567x9",
        ];
        for text in cases {
            let bytes = text.as_bytes();
            let got = parse_words_digits(bytes.len(), |i| {
                word(bytes.get(i..).unwrap_or_default(), b'x')
            });
            let expected = parse_u64(bytes).ok().filter(|_| bytes.len() <= 19);
            assert_eq!(got, expected, "{text:?}");
        }
    }
}
