//! Write-ahead log of one ingest shard: segment files of framed records.
//!
//! ```text
//! segment  = "MRDNWAL1" frame*            named <first_seq:020>.wal
//! frame    = len:u32le crc:u32le seq:u64le payload[len]     crc = crc32c(seq ‖ payload)
//! ```
//! Invariants:
//! - sequence numbers increase by one per record across segments of a shard;
//! - a record is appended (and, per the sync policy, fsynced) before its write is acknowledged;
//! - a segment is deleted only when every record in it is in a file recorded in the manifest
//!   (the caller passes the lowest sequence number still needed);
//! - a failed append is rolled back (truncate to the previous length), so a later record
//!   never follows a torn one; if the rollback fails the segment is abandoned and a new one
//!   started.
//!
//! Reading: a frame that is cut short or fails its CRC at the end of a segment is a torn
//! tail (cut, with a warning naming file and offset); a bad frame followed by more data is
//! corruption in the middle: an error, unless the operator asked to skip it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::storage::paths::{parse_wal_segment_name, wal_segment_name};

const MAGIC: &[u8; 8] = b"MRDNWAL1";
const FRAME_HEADER: usize = 16;
/// Largest payload accepted when reading (a larger length field is corruption).
const MAX_RECORD: usize = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("WAL I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "WAL segment {path} is corrupt at offset {offset}: {reason} (more data follows, so this is not a torn tail; start with --skip-corrupt-wal to drop the rest of this segment)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

pub type Result<T> = std::result::Result<T, WalError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// What reading a shard's log found.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub records: Vec<Record>,
    /// Torn tails cut: (file, offset).
    pub torn: Vec<(PathBuf, u64)>,
    /// Corrupt middles skipped because the operator allowed it: (file, offset, reason).
    pub skipped: Vec<(PathBuf, u64, String)>,
    /// Highest sequence number seen in a segment name or record.
    pub max_seq: Option<u64>,
    pub segments: Vec<PathBuf>,
}

/// Lists the segments of a WAL directory in sequence order.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        if let Some(seq) = name.to_str().and_then(parse_wal_segment_name) {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every record of a shard's WAL directory, cutting torn tails.
pub fn read_dir(dir: &Path, skip_corrupt: bool) -> Result<ReadOutcome> {
    let mut outcome = ReadOutcome::default();
    for (first_seq, path) in list_segments(dir)? {
        outcome.max_seq = Some(outcome.max_seq.map_or(first_seq, |m| m.max(first_seq)));
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io(&path))?;
        outcome.segments.push(path.clone());
        if bytes.len() < MAGIC.len() {
            // Crashed while creating the segment: nothing was ever acknowledged from it.
            outcome.torn.push((path.clone(), 0));
            continue;
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            let err = WalError::Corrupt {
                path: path.clone(),
                offset: 0,
                reason: "bad segment header".into(),
            };
            if skip_corrupt {
                outcome.skipped.push((path.clone(), 0, err.to_string()));
                continue;
            }
            return Err(err);
        }
        let mut pos = MAGIC.len();
        while pos < bytes.len() {
            match decode_frame(&bytes[pos..]) {
                Ok((seq, payload, used)) => {
                    outcome.max_seq = Some(outcome.max_seq.map_or(seq, |m| m.max(seq)));
                    outcome.records.push(Record {
                        seq,
                        payload: payload.to_vec(),
                    });
                    pos += used;
                }
                Err(FrameError::Short) => {
                    outcome.torn.push((path.clone(), pos as u64));
                    break;
                }
                Err(FrameError::Bad(reason)) => {
                    let frame_end = frame_end(&bytes[pos..]).map(|e| pos + e);
                    let is_tail = match frame_end {
                        None => true,
                        Some(end) => end >= bytes.len() || bytes[end..].iter().all(|b| *b == 0),
                    };
                    if is_tail {
                        outcome.torn.push((path.clone(), pos as u64));
                    } else if skip_corrupt {
                        outcome.skipped.push((path.clone(), pos as u64, reason));
                    } else {
                        return Err(WalError::Corrupt {
                            path: path.clone(),
                            offset: pos as u64,
                            reason,
                        });
                    }
                    break;
                }
            }
        }
    }
    Ok(outcome)
}

enum FrameError {
    /// Not enough bytes for the frame: torn at the end.
    Short,
    Bad(String),
}

fn frame_end(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    Some(FRAME_HEADER + len)
}

fn decode_frame(buf: &[u8]) -> std::result::Result<(u64, &[u8], usize), FrameError> {
    if buf.len() < FRAME_HEADER {
        return Err(FrameError::Short);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_RECORD {
        return Err(FrameError::Bad(format!(
            "record length {len} is implausible"
        )));
    }
    let end = FRAME_HEADER + len;
    if buf.len() < end {
        return Err(FrameError::Short);
    }
    let body = &buf[8..end];
    if crc32c::crc32c(body) != crc {
        return Err(FrameError::Bad("CRC mismatch".into()));
    }
    let seq = u64::from_le_bytes([
        body[0], body[1], body[2], body[3], body[4], body[5], body[6], body[7],
    ]);
    Ok((seq, &body[8..], end))
}

/// The 16-byte frame header of a record whose payload is `parts` concatenated; the payload
/// follows it unchanged (no copy).
fn frame_header(seq: u64, parts: &[&[u8]]) -> [u8; FRAME_HEADER] {
    let seq_bytes = seq.to_le_bytes();
    let crc = parts.iter().fold(crc32c::crc32c(&seq_bytes), |c, p| {
        crc32c::crc32c_append(c, p)
    });
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut h = [0u8; FRAME_HEADER];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h[8..16].copy_from_slice(&seq_bytes);
    h
}

/// The appendable log of one shard.
pub struct Wal {
    dir: PathBuf,
    /// Segments in order: (first seq, path). The last is the active one.
    segments: Vec<(u64, PathBuf)>,
    file: Option<File>,
    len: u64,
    next_seq: u64,
    segment_limit: u64,
    dirty: bool,
    last_sync: Instant,
    bytes_written: u64,
    syncs: u64,
}

impl Wal {
    /// Opens a log whose next record gets `next_seq`. Existing segments (already replayed by
    /// the caller) are kept until [`Wal::remove_below`] says they are covered.
    pub fn open(dir: &Path, next_seq: u64, segment_limit: u64) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let segments = list_segments(dir)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segments,
            file: None,
            len: 0,
            next_seq,
            segment_limit,
            dirty: false,
            last_sync: Instant::now(),
            bytes_written: 0,
            syncs: 0,
        })
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn dirty(&self) -> bool {
        self.dirty
    }

    pub fn since_last_sync(&self) -> std::time::Duration {
        self.last_sync.elapsed()
    }

    /// (bytes written, syncs) since open.
    pub fn stats(&self) -> (u64, u64) {
        (self.bytes_written, self.syncs)
    }

    fn start_segment(&mut self) -> Result<()> {
        let path = self.dir.join(wal_segment_name(self.next_seq));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(MAGIC).map_err(io(&path))?;
        // The new name must survive a crash before any record in it is acknowledged.
        f.sync_all().map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.segments.push((self.next_seq, path));
        self.file = Some(f);
        self.len = MAGIC.len() as u64;
        Ok(())
    }

    /// Appends records whole (tests; the shards append theirs in parts).
    #[cfg(test)]
    pub fn append(&mut self, payloads: &[&[u8]]) -> Result<u64> {
        let records: Vec<[&[u8]; 1]> = payloads.iter().map(|p| [*p]).collect();
        let refs: Vec<&[&[u8]]> = records.iter().map(|r| &r[..]).collect();
        self.append_parts(&refs)
    }

    /// Appends records (not yet synced) given in parts: a record's payload is its parts
    /// concatenated (written one after the other, with no copy into one buffer). Returns the
    /// seq of the first. All or nothing: on an error the segment is rolled back to where it
    /// was.
    pub fn append_parts(&mut self, records: &[&[&[u8]]]) -> Result<u64> {
        let len = |r: &[&[u8]]| r.iter().map(|p| p.len()).sum::<usize>();
        // A record the reader would refuse must never be acknowledged (config caps the body
        // size well below this; this is the last line of defence).
        if let Some(r) = records.iter().find(|r| len(r) > MAX_RECORD) {
            return Err(WalError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "a record of {} bytes exceeds the WAL limit of {MAX_RECORD}",
                        len(r)
                    ),
                ),
            });
        }
        if self.file.is_none() || self.len >= self.segment_limit {
            if self.file.is_some() {
                self.sync()?;
            }
            self.file = None;
            self.start_segment()?;
        }
        let first = self.next_seq;
        let total: u64 = records.iter().map(|r| (len(r) + FRAME_HEADER) as u64).sum();
        let write = |f: &mut File| -> std::io::Result<()> {
            for (i, r) in records.iter().enumerate() {
                f.write_all(&frame_header(first + i as u64, r))?;
                for p in r.iter() {
                    f.write_all(p)?;
                }
            }
            Ok(())
        };
        let path = self
            .segments
            .last()
            .map(|s| s.1.clone())
            .unwrap_or_default();
        let Some(f) = self.file.as_mut() else {
            return Err(WalError::Io {
                path,
                source: std::io::Error::other("no active WAL segment"),
            });
        };
        if let Err(e) = write(f) {
            let rolled_back =
                f.set_len(self.len).is_ok() && f.seek(SeekFrom::Start(self.len)).is_ok();
            if !rolled_back {
                // Leave the torn segment behind (its tail is cut on read) and start afresh.
                self.file = None;
            }
            return Err(io(&path)(e));
        }
        self.len += total;
        self.bytes_written += total;
        self.next_seq += records.len() as u64;
        self.dirty = true;
        Ok(first)
    }

    /// fsyncs the active segment if anything was written since the last sync.
    pub fn sync(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(f) = &self.file {
            let path = self
                .segments
                .last()
                .map(|s| s.1.clone())
                .unwrap_or_default();
            f.sync_data().map_err(io(&path))?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        self.syncs += 1;
        Ok(())
    }

    /// Closes the active segment (after a final sync), so that [`Wal::remove_below`] may
    /// delete it too; the next append starts a new segment.
    pub fn retire_active(&mut self) -> Result<()> {
        self.sync()?;
        self.file = None;
        Ok(())
    }

    /// Deletes every segment whose records all have seq < `needed` (never the active one).
    pub fn remove_below(&mut self, needed: u64) -> Result<usize> {
        let mut removed = 0;
        while self.segments.len() > 1 || (self.file.is_none() && !self.segments.is_empty()) {
            // Records of segment 0 end where segment 1 starts (or at next_seq if it is the last).
            let end = self.segments.get(1).map_or(self.next_seq, |s| s.0);
            if end > needed {
                break;
            }
            let (_, path) = self.segments.remove(0);
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        if removed > 0 {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.dir))?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    #[test]
    fn append_read_rotate_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 1, 64).unwrap();
        let ps = payloads(10);
        for p in &ps {
            w.append(&[p]).unwrap();
            w.sync().unwrap();
        }
        let segs = list_segments(dir.path()).unwrap();
        assert!(segs.len() > 2, "small segment limit rotates");
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(out.records.len(), 10);
        assert_eq!(
            out.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(out.records[3].payload, ps[3]);
        assert!(out.torn.is_empty());
        // Segments hold 3 records each ([1-3], [4-6], [7-9], [10]). Needing seq 6 onwards
        // removes only the first segment: the one holding 6 stays whole.
        assert_eq!(w.remove_below(6).unwrap(), 1);
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(
            out.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (4..=10).collect::<Vec<_>>()
        );
        // The active segment is never removed, even when everything is covered.
        w.remove_below(11).unwrap();
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(
            out.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![10]
        );
    }

    #[test]
    fn torn_tail_is_cut_and_middle_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 1, 1 << 20).unwrap();
        for p in payloads(5) {
            w.append(&[&p]).unwrap();
        }
        w.sync().unwrap();
        let seg = list_segments(dir.path()).unwrap()[0].1.clone();
        let full = fs::read(&seg).unwrap();

        // Truncated in the middle of the last frame.
        fs::write(&seg, &full[..full.len() - 3]).unwrap();
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(out.records.len(), 4);
        assert_eq!(out.torn.len(), 1);

        // Garbled last bytes (CRC fails on the last frame).
        let mut g = full.clone();
        let n = g.len();
        g[n - 1] ^= 0xff;
        fs::write(&seg, &g).unwrap();
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(out.records.len(), 4);

        // Corrupt second frame with more frames after it.
        let mut m = full.clone();
        m[MAGIC.len() + FRAME_HEADER + 12 + FRAME_HEADER + 2] ^= 0xff;
        fs::write(&seg, &m).unwrap();
        let err = read_dir(dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        let out = read_dir(dir.path(), true).unwrap();
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.skipped.len(), 1);
    }

    #[test]
    fn reopen_continues_sequence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut w = Wal::open(dir.path(), 1, 1 << 20).unwrap();
            w.append(&[b"a", b"b"]).unwrap();
            w.sync().unwrap();
        }
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(out.max_seq, Some(2));
        let mut w = Wal::open(dir.path(), 3, 1 << 20).unwrap();
        assert_eq!(w.append(&[b"c"]).unwrap(), 3);
        w.sync().unwrap();
        let out = read_dir(dir.path(), false).unwrap();
        assert_eq!(
            out.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // The replayed segment is deleted once everything in it is covered.
        assert_eq!(w.remove_below(3).unwrap(), 1);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    }

    /// A record appended in parts reads back as the parts concatenated, with a checksum
    /// that verifies (the same frame as a record appended whole).
    #[test]
    fn records_in_parts_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Wal::open(dir.path(), 1, 1 << 20).unwrap();
        let first = w
            .append_parts(&[&[b"head-1", b"heap-1"], &[b"", b"only"], &[b"x"]])
            .unwrap();
        assert_eq!(first, 1);
        w.append(&[b"head-2heap-2"]).unwrap();
        w.sync().unwrap();
        let out = read_dir(dir.path(), false).unwrap();
        let got: Vec<&[u8]> = out.records.iter().map(|r| &r.payload[..]).collect();
        assert_eq!(
            got,
            vec![&b"head-1heap-1"[..], b"only", b"x", b"head-2heap-2"]
        );
    }
}
