//! What crosses nodes: checked rows as line protocol (HTTP forwarding) or as the WAL
//! payloads themselves, compressed per region (JetStream messages).
//!
//! ```text
//! message  = "MRDNLOG3" node_len:u8 node part*
//! part     = region_len:u8 region body_seq:u64le zlen:u32le zstd(payloads)
//! payloads = (len:u32le payload)*            len >= 8; payload: see region::rows
//! ```
//! `node` is the node that received the body (in a region's message, with the incarnation
//! of `MERIDIAN_IN` its body sequences count in: `<node>@<created>`). A body message holds a part per region of
//! one write, with `body_seq` 0; the splitter copies each part into its region's message as
//! it is, setting `body_seq` to the body's sequence in `MERIDIAN_IN` (the splitter neither
//! decompresses nor compresses), so an applier knows, per node, which bodies it applied.
//! Compression (zstd level 1, with the frame's checksum) cuts what JetStream stores and
//! copies by about six times on agents' data. Decoding never panics: a malformed message is
//! an error naming what is wrong; a part is decompressed only if its frame declares its
//! size and that size is within the caller's bound.

use crate::region::rows::Payload;

const MAGIC: &[u8; 8] = b"MRDNLOG3";
/// The smallest payload (its db length and row count).
const MIN_PAYLOAD: usize = 8;

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

/// A message, built a part at a time.
#[derive(Debug)]
pub struct MessageWriter {
    buf: Vec<u8>,
}

impl MessageWriter {
    /// A message of bodies received by `node` (a name checked at start-up: at most 32
    /// bytes).
    pub fn new(node: &str) -> MessageWriter {
        let name = &node.as_bytes()[..node.len().min(255)];
        let mut buf = MAGIC.to_vec();
        buf.push(name.len() as u8);
        buf.extend_from_slice(name);
        MessageWriter { buf }
    }

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
        self.compressed_part(region, 0, &z);
        Ok(())
    }

    /// Adds a part as found in another message (see [`Part::bytes`]), as body `body_seq`.
    pub fn compressed_part(&mut self, region: &str, body_seq: u64, z: &[u8]) {
        // Region names are checked at start-up: at most 64 bytes.
        let name = &region.as_bytes()[..region.len().min(255)];
        self.buf.push(name.len() as u8);
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(&body_seq.to_le_bytes());
        self.buf.extend_from_slice(&(z.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(z);
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether it holds no part yet.
    pub fn is_empty(&self) -> bool {
        self.buf
            .get(MAGIC.len())
            .is_none_or(|n| self.buf.len() == MAGIC.len() + 1 + *n as usize)
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// One region's part of a message, still compressed.
#[derive(Debug, PartialEq)]
pub struct Part<'a> {
    pub region: &'a str,
    /// The body's sequence in `MERIDIAN_IN` (0 in a body message).
    pub body_seq: u64,
    pub bytes: &'a [u8],
}

impl Part<'_> {
    /// Its payloads, decompressed once into one buffer: refused unless the frame declares
    /// a size of at most `max_bytes` (so a forged header cannot make it allocate more).
    pub fn payloads(&self, max_bytes: usize) -> Result<Payloads, String> {
        let region = self.region;
        let size = match zstd::zstd_safe::get_frame_content_size(self.bytes) {
            Ok(Some(n)) if n <= max_bytes as u64 => n as usize,
            Ok(Some(n)) => {
                return Err(format!(
                    "the part of region {region:?} holds {n} bytes, more than {max_bytes}"
                ));
            }
            _ => return Err(format!("the part of region {region:?} declares no size")),
        };
        let raw = zstd::bulk::decompress(self.bytes, size)
            .map_err(|e| format!("the part of region {region:?} does not decompress: {e}"))?;
        let mut ranges = Vec::new();
        let mut at = 0;
        while at < raw.len() {
            let len = raw
                .get(at..at + 4)
                .ok_or("a payload's length is cut short")?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if len < MIN_PAYLOAD {
                return Err(format!("a payload of {len} bytes is not a payload"));
            }
            let start = at + 4;
            let end = start.checked_add(len).filter(|e| *e <= raw.len());
            let end = end.ok_or("a payload is cut short")?;
            ranges.push(start..end);
            at = end;
        }
        Ok(Payloads { raw, ranges })
    }
}

/// A part's payloads: one decompressed buffer and where each payload lies in it.
#[derive(Debug)]
pub struct Payloads {
    raw: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Payloads {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ranges.iter().map(|r| &self.raw[r.clone()])
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// A message: the node that received its bodies, and its parts in order.
#[derive(Debug, PartialEq)]
pub struct Message<'a> {
    pub node: &'a str,
    pub parts: Vec<Part<'a>>,
}

/// Reads a message.
pub fn parse(msg: &[u8]) -> Result<Message<'_>, String> {
    let rest = msg
        .strip_prefix(MAGIC)
        .ok_or("not a Meridian log message (bad magic)")?;
    let (node, mut rest) = name(rest).ok_or("the node name is cut short")?;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let (region, tail) = name(rest).ok_or("a part's region name is cut short")?;
        let (seq, tail) = tail
            .split_at_checked(8)
            .ok_or("a part's body sequence is cut short")?;
        let body_seq = u64::from_le_bytes(seq.try_into().map_err(|_| "a body sequence")?);
        let (len, tail) = tail
            .split_at_checked(4)
            .ok_or("a part's length is cut short")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (bytes, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| format!("part of region {region:?} is cut short"))?;
        parts.push(Part {
            region,
            body_seq,
            bytes,
        });
        rest = tail;
    }
    Ok(Message { node, parts })
}

/// A length-prefixed (u8) UTF-8 name and what follows it.
fn name(b: &[u8]) -> Option<(&str, &[u8])> {
    let (&n, tail) = b.split_first()?;
    let (name, tail) = tail.split_at_checked(n as usize)?;
    Some((std::str::from_utf8(name).ok()?, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn parts_round_trip_and_damage_is_an_error() {
        let mut w = MessageWriter::new("n1");
        assert!(w.is_empty());
        w.part("eu", &[&[b"abcdefgh", b"ij"], &[b"klmnopqr"]])
            .unwrap();
        w.part("apac", &[]).unwrap();
        assert!(!w.is_empty());
        let msg = w.finish();
        let m = parse(&msg).unwrap();
        assert_eq!(m.node, "n1");
        let p = &m.parts;
        let all = |p: &Part<'_>| -> Vec<Vec<u8>> {
            p.payloads(MAX)
                .unwrap()
                .iter()
                .map(<[u8]>::to_vec)
                .collect()
        };
        assert_eq!(
            (p[0].region, p[0].body_seq, all(&p[0])),
            ("eu", 0, vec![b"abcdefghij".to_vec(), b"klmnopqr".to_vec()])
        );
        assert_eq!((p[1].region, all(&p[1])), ("apac", vec![]));
        // A part copied into another message reads the same, with its body sequence.
        let mut one = MessageWriter::new("n1");
        one.compressed_part(p[0].region, 42, p[0].bytes);
        let one = one.finish();
        let q = parse(&one).unwrap();
        assert_eq!(
            (q.parts[0].body_seq, q.parts[0].payloads(MAX).unwrap().len()),
            (42, 2)
        );
        // A bound below the declared size refuses it before decompressing.
        assert!(
            q.parts[0]
                .payloads(10)
                .unwrap_err()
                .contains("more than 10")
        );
        // Cut anywhere but between parts: an error.
        let head = 8 + 1 + 2;
        let first_end = head + 1 + 2 + 8 + 4 + p[0].bytes.len();
        for cut in 0..msg.len() {
            if let Ok(got) = parse(&msg[..cut]) {
                assert!(cut == head || cut == first_end, "cut {cut}: {got:?}");
            }
        }
        assert!(parse(b"MRDNLOG2").is_err());
        // A damaged compressed part is an error (the frame's checksum), not a panic nor
        // other rows.
        for at in head + 1 + 2 + 8 + 4..first_end {
            let mut bad = msg.clone();
            bad[at] ^= 0x5a;
            let m = parse(&bad).unwrap();
            assert!(
                m.parts[0].payloads(MAX).is_err(),
                "damage at {at} went unnoticed"
            );
        }
        // Payloads shorter than a payload's header are refused (no empty vectors by the
        // million from a small message).
        let mut w = MessageWriter::new("n1");
        w.part("eu", &[&[b""], &[b"x"]]).unwrap();
        let msg = w.finish();
        assert!(parse(&msg).unwrap().parts[0].payloads(MAX).is_err());
    }
}
