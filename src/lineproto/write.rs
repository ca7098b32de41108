//! Canonical line protocol output.

use std::fmt::Write as _;

use super::{FieldValue, ParsedLine};

/// Appends `s`, putting a backslash before every byte for which `special` is true.
#[inline]
fn push_escaped(out: &mut String, s: &str, special: impl Fn(char) -> bool) {
    let mut rest = s;
    while let Some(i) = rest.find(&special) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let mut chars = from.chars();
        if let Some(c) = chars.next() {
            out.push('\\');
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

fn is_measurement_special(c: char) -> bool {
    c == ',' || c == ' '
}

fn is_key_special(c: char) -> bool {
    c == ',' || c == '=' || c == ' '
}

fn is_string_special(c: char) -> bool {
    c == '"' || c == '\\'
}

pub(super) fn write_line(line: &ParsedLine<'_>, out: &mut String) {
    push_escaped(out, &line.measurement, is_measurement_special);
    for (key, value) in &line.tags {
        out.push(',');
        push_escaped(out, key, is_key_special);
        out.push('=');
        push_escaped(out, value, is_key_special);
    }
    out.push(' ');
    for (i, (key, value)) in line.fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_escaped(out, key, is_key_special);
        out.push('=');
        write_value(value, out);
    }
    if let Some(ts) = line.timestamp {
        // Writing to a String cannot fail.
        let _ = write!(out, " {ts}");
    }
}

fn write_value(value: &FieldValue<'_>, out: &mut String) {
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    match value {
        // `{:?}` is Rust's shortest representation that parses back to the same f64
        // ("1.0", "0.1", "1e16", "5e-324"); every form it produces for finite values
        // (optional '-', digits, optional '.', optional exponent) is valid line protocol.
        FieldValue::Float(v) => {
            let _ = write!(out, "{v:?}");
        }
        FieldValue::Integer(v) => {
            let _ = write!(out, "{v}i");
        }
        FieldValue::UInteger(v) => {
            let _ = write!(out, "{v}u");
        }
        FieldValue::String(s) => {
            out.push('"');
            push_escaped(out, s, is_string_special);
            out.push('"');
        }
        FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}
