//! InfluxQL duration literals (`10s`, `1h30m`, `500ms`, `2w`) ⇄ signed nanoseconds.
//!
//! Units (influxql `ParseDuration`): `ns`, `u` or `µ` (microseconds), `ms`, `s`, `m`, `h`,
//! `d`, `w`. A literal is one or more `<digits><unit>` groups, summed. Arithmetic is checked:
//! a literal that does not fit an `i64` of nanoseconds is an error, never a wrap-around.
//! [`format_duration`] prints the largest unit that divides the value exactly, as
//! influxql's `FormatDuration` does, so printing then parsing gives the same value.

/// Why a duration literal was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not of the form `<digits><unit>...`.
    #[error("invalid duration")]
    Invalid,
    /// Larger than `i64::MAX` nanoseconds (about 292 years).
    #[error("overflowed duration: choose a smaller duration or INF")]
    Overflow,
}

const NS: i64 = 1;
const US: i64 = 1_000;
const MS: i64 = 1_000_000;
const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// Parses an InfluxQL duration literal (an optional leading `-` is accepted) into
/// nanoseconds.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < 2 {
        return Err(DurationError::Invalid);
    }
    let negative = chars.first() == Some(&'-');
    let mut i = usize::from(negative);
    let mut total: i64 = 0;
    while i < chars.len() {
        let digits_start = i;
        while chars.get(i).is_some_and(|c| c.is_ascii_digit()) {
            i += 1;
        }
        if i == digits_start || i >= chars.len() {
            return Err(DurationError::Invalid);
        }
        let digits: String = chars
            .get(digits_start..i)
            .unwrap_or_default()
            .iter()
            .collect();
        let count: i64 = digits.parse().map_err(|_| DurationError::Overflow)?;
        let (unit, width) = match (chars.get(i), chars.get(i + 1)) {
            (Some('n'), Some('s')) => (NS, 2),
            (Some('u' | 'µ'), _) => (US, 1),
            (Some('m'), Some('s')) => (MS, 2),
            (Some('m'), _) => (MINUTE, 1),
            (Some('s'), _) => (SECOND, 1),
            (Some('h'), _) => (HOUR, 1),
            (Some('d'), _) => (DAY, 1),
            (Some('w'), _) => (WEEK, 1),
            _ => return Err(DurationError::Invalid),
        };
        i += width;
        total = count
            .checked_mul(unit)
            .and_then(|ns| total.checked_add(ns))
            .ok_or(DurationError::Overflow)?;
    }
    Ok(if negative { -total } else { total })
}

/// Formats nanoseconds as an InfluxQL duration literal using the largest unit that divides
/// it exactly (`0s` for zero; a negative value gets a leading `-`).
pub fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let units = [
        (WEEK, "w"),
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (MS, "ms"),
        (US, "u"),
    ];
    for (unit, suffix) in units {
        if ns % unit == 0 {
            return format!("{}{suffix}", ns / unit);
        }
    }
    format!("{ns}ns")
}
