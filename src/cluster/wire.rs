//! What crosses nodes: checked rows as line protocol (HTTP forwarding) or as the WAL
//! payloads themselves, compressed per region (JetStream messages).
//!
//! ```text
//! message  = "MRDNLOG2" part*
//! part     = region_len:u8 region zlen:u32le zstd(payloads)       level 1, with checksum
//! payloads = (len:u32le payload)*                                 payload: see region::rows
//! ```
//! A body message holds a part per region of one write; a region's message is one part of
//! a body, its bytes copied as they are (the splitter neither decompresses nor compresses).
//! Compression cuts what JetStream stores and copies (a body is written three times: as a
//! body, as region parts, as the region's log) by about six times on agents' data.
//! Decoding never panics: a malformed message is an error naming what is wrong, and a part
//! that would decompress past [`MAX_PART`] is refused.

use crate::region::rows::Payload;

const MAGIC: &[u8; 8] = b"MRDNLOG2";
/// Largest part, decompressed: a body is at most `http.max_body_bytes` (capped at 1 GiB)
/// and its checked rows about 1.25 times that.
pub const MAX_PART: usize = 1280 << 20;

/// Appends the rows of a payload as line protocol (timestamps in ns), one line each.
pub fn payload_lines(payload: &Payload, out: &mut String) {
    if let Some((_, rows)) = payload.decode() {
        rows_lines(rows, out);
    }
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

/// A message, built a region part at a time.
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
    /// Adds region `region`'s payloads, each given in pieces, compressed together.
    pub fn part(&mut self, region: &str, payloads: &[&[&[u8]]]) -> Result<(), String> {
        let mut raw = Vec::with_capacity(
            payloads
                .iter()
                .map(|p| 4 + p.iter().map(|x| x.len()).sum::<usize>())
                .sum(),
        );
        for p in payloads {
            let len: usize = p.iter().map(|x| x.len()).sum();
            raw.extend_from_slice(&(len as u32).to_le_bytes());
            for x in p.iter() {
                raw.extend_from_slice(x);
            }
        }
        // With the frame's checksum: damage is found when the part is read, not applied.
        let z = zstd::bulk::Compressor::new(1)
            .and_then(|mut c| {
                c.include_checksum(true)?;
                c.compress(&raw)
            })
            .map_err(|e| format!("compressing a part: {e}"))?;
        self.compressed_part(region, &z);
        Ok(())
    }

    /// Adds a part as found in another message (see [`Part::bytes`]).
    pub fn compressed_part(&mut self, region: &str, z: &[u8]) {
        // Region names are checked at start-up: at most 64 bytes.
        let name = &region.as_bytes()[..region.len().min(255)];
        self.buf.push(name.len() as u8);
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(&(z.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(z);
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

/// One region's part of a message, still compressed.
#[derive(Debug, PartialEq)]
pub struct Part<'a> {
    pub region: &'a str,
    pub bytes: &'a [u8],
}

impl Part<'_> {
    /// Its payloads, decompressed (at most [`MAX_PART`] bytes).
    pub fn payloads(&self) -> Result<Vec<Vec<u8>>, String> {
        let raw = zstd::bulk::decompress(self.bytes, MAX_PART).map_err(|e| {
            format!(
                "the part of region {:?} does not decompress: {e}",
                self.region
            )
        })?;
        let mut rest = &raw[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_at_checked(4)
                .ok_or("a payload's length is cut short")?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let (p, tail) = tail.split_at_checked(len).ok_or("a payload is cut short")?;
            out.push(p.to_vec());
            rest = tail;
        }
        Ok(out)
    }
}

/// The parts of a message, in order.
pub fn parts(msg: &[u8]) -> Result<Vec<Part<'_>>, String> {
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
        let (bytes, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| format!("part of region {region:?} is cut short"))?;
        out.push(Part { region, bytes });
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
        w.part("eu", &[&[b"abc", b"de"], &[b"f"]]).unwrap();
        w.part("apac", &[]).unwrap();
        let msg = w.finish();
        let p = parts(&msg).unwrap();
        assert_eq!(
            (p[0].region, p[0].payloads().unwrap()),
            ("eu", vec![b"abcde".to_vec(), b"f".to_vec()])
        );
        assert_eq!((p[1].region, p[1].payloads().unwrap()), ("apac", vec![]));
        // A part copied into another message reads the same.
        let mut one = MessageWriter::default();
        one.compressed_part(p[0].region, p[0].bytes);
        let one = one.finish();
        assert_eq!(parts(&one).unwrap()[0].payloads().unwrap().len(), 2);
        // Cut anywhere but between parts: an error.
        let first_end = 8 + 1 + 2 + 4 + p[0].bytes.len();
        for cut in 0..msg.len() {
            if let Ok(got) = parts(&msg[..cut]) {
                assert!(cut == 8 || cut == first_end, "cut {cut}: {got:?}");
            }
        }
        assert!(parts(b"MRDNLOG1").is_err());
        // A damaged compressed part is an error (the frame's checksum), not a panic nor
        // other rows.
        for at in 8 + 1 + 2 + 4..first_end {
            let mut bad = msg.clone();
            bad[at] ^= 0x5a;
            let p = parts(&bad).unwrap();
            assert!(p[0].payloads().is_err(), "damage at {at} went unnoticed");
        }
    }
}
