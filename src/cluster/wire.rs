//! What crosses nodes: checked rows as line protocol (HTTP forwarding) or as the WAL
//! payloads themselves, framed per region (JetStream messages).
//!
//! ```text
//! message = "MRDNLOG1" part*
//! part    = region_len:u8 region payload_len:u32le payload      payload: see region::rows
//! ```
//! A body message holds every part of one write; a region message only parts of that
//! region. Decoding never panics: a malformed message is an error naming what is wrong.

use crate::region::rows::{Payload, decode};

const MAGIC: &[u8; 8] = b"MRDNLOG1";

/// Appends the rows of a payload as line protocol (timestamps in ns), one line each.
pub fn payload_lines(payload: &Payload, out: &mut String) {
    if let Some((_, rows)) = payload.decode() {
        rows_lines(rows, out);
    }
}

/// [`payload_lines`] of a payload given as bytes; false if the bytes are not a payload.
pub fn payload_bytes_lines<'a>(payload: &'a [u8], out: &mut String) -> Option<&'a str> {
    let (db, rows) = decode(payload)?;
    rows_lines(rows, out);
    Some(db)
}

fn rows_lines(rows: crate::region::rows::Rows<'_>, out: &mut String) {
    for row in rows.map_while(Result::ok) {
        let line = crate::lineproto::ParsedLine {
            measurement: row.measurement.into(),
            tags: row
                .tags
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            fields: row.fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            timestamp: Some(row.ts),
        };
        crate::lineproto::write_line(&line, out);
        out.push('\n');
    }
}

/// A message of parts, built part by part.
#[derive(Debug)]
pub struct MessageWriter {
    buf: Vec<u8>,
}

impl Default for MessageWriter {
    fn default() -> Self {
        MessageWriter {
            buf: MAGIC.to_vec(),
        }
    }
}

impl MessageWriter {
    /// Adds a part whose payload is the concatenation of `payload`'s pieces.
    pub fn part(&mut self, region: &str, payload: &[&[u8]]) {
        // Region names are checked at start-up: at most 64 bytes.
        let name = &region.as_bytes()[..region.len().min(255)];
        self.buf.push(name.len() as u8);
        self.buf.extend_from_slice(name);
        let len: usize = payload.iter().map(|p| p.len()).sum();
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        for p in payload {
            self.buf.extend_from_slice(p);
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == MAGIC.len()
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// The parts of a message: (region, payload), in order.
pub fn parts(msg: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let mut rest = msg
        .strip_prefix(MAGIC)
        .ok_or("not a Meridian log message (bad magic)")?;
    let mut out = Vec::new();
    while let Some((&n, tail)) = rest.split_first() {
        let (name, tail) = tail
            .split_at_checked(n as usize)
            .ok_or("a part's region name is cut short")?;
        let region = std::str::from_utf8(name).map_err(|_| "a region name is not UTF-8")?;
        let (len, tail) = tail
            .split_at_checked(4)
            .ok_or("a part's length is cut short")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (payload, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| format!("part of region {region:?} is cut short"))?;
        out.push((region, payload));
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_damage_is_an_error() {
        let mut w = MessageWriter::default();
        assert!(w.is_empty());
        w.part("eu", &[b"abc", b"de"]);
        w.part("apac", &[]);
        let msg = w.finish();
        assert_eq!(
            parts(&msg).unwrap(),
            vec![("eu", &b"abcde"[..]), ("apac", &b""[..])]
        );
        for cut in 0..msg.len() {
            let r = parts(&msg[..cut]);
            // Cut at a part boundary is a shorter valid message; anywhere else an error.
            if let Ok(p) = r {
                assert!(cut == 8 || cut == 8 + 1 + 2 + 4 + 5, "cut {cut}: {p:?}");
            }
        }
        assert!(parts(b"MRDNLOG2").is_err());
    }
}
