//! The write-ahead log: every ingest is framed, appended to a segment file and fsynced before it
//! is acknowledged, so the live tier can be rebuilt after any crash.
//!
//! A segment is a file `wal-<first lsn, 20 digits>.log` holding records back to back:
//!
//! ```text
//! magic "TVW1" (4 bytes) | payload length u32 LE | CRC32 of lsn+payload u32 LE | lsn u64 LE | payload
//! ```
//!
//! Each record carries its log sequence number (LSN); replay orders records by LSN, so a
//! segment rewritten after damage keeps its place in history. Segments are deleted oldest-LSN
//! first once their rows are in Parquet, so what remains is always a suffix of history.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub type Lsn = u64;

const MAGIC: [u8; 4] = *b"TVW1";
const HEADER: usize = 4 + 4 + 4 + 8;
/// Larger payloads are refused (a request body is capped far below this).
pub const MAX_RECORD_BYTES: usize = 1 << 30;
/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
const DAMAGED_SUFFIX: &str = ".damaged";

/// One replayed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// A segment found damaged in the middle at start-up: moved aside, its good records kept.
#[derive(Debug, Clone)]
pub struct Damage {
    /// Where the segment now lies (renamed with a `.damaged` suffix).
    pub moved_to: PathBuf,
    /// Byte offsets of the damage in the original file.
    pub offsets: Vec<u64>,
    /// Records read intact from it (they were written again to a fresh segment).
    pub recovered: usize,
}

/// What start-up found in the WAL directory.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every good record, in LSN order.
    pub records: Vec<Record>,
    /// Bytes cut off the end of the last segment (a write torn by a crash, never acknowledged).
    pub torn_tail_bytes: u64,
    pub damaged: Vec<Damage>,
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first_lsn: Lsn,
    /// Highest LSN written to it; `None` while it is empty.
    max_lsn: Option<Lsn>,
    bytes: u64,
}

/// Segment count and bytes on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub segments: usize,
    pub bytes: u64,
    pub next_lsn: Lsn,
}

/// The log's writer. Not shared: one thread owns it and batches concurrent writers' records
/// into one fsync (see `live::committer`).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// Closed segments, then the open one last.
    segments: Vec<Segment>,
    file: File,
    next_lsn: Lsn,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and reads back every good record.
    ///
    /// A partial record at the end of the newest segment is a write that was never acknowledged:
    /// it is cut off. Damage anywhere else moves its segment aside, reports it, and writes the
    /// segment's good records to a fresh segment so they stay durable.
    pub fn open(dir: &Path) -> io::Result<(Wal, Replay)> {
        fs::create_dir_all(dir)?;
        let mut found = list_segments(dir)?;
        found.sort_by_key(|(first, _)| *first);
        let mut replay = Replay::default();
        let mut segments = Vec::new();
        let mut rewrite: Vec<Vec<Record>> = Vec::new();
        let last = found.len().saturating_sub(1);
        for (i, (first_lsn, path)) in found.into_iter().enumerate() {
            let bytes = fs::read(&path)?;
            let scan = scan_segment(&bytes);
            let max_lsn = scan.records.iter().map(|r| r.lsn).max();
            if scan.damage.is_empty() && (scan.torn_at.is_none() || i == last) {
                if let Some(at) = scan.torn_at {
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(at)?;
                    file.sync_all()?;
                    replay.torn_tail_bytes += bytes.len() as u64 - at;
                    tracing::warn!(
                        "WAL {}: cut a torn record of {} bytes at offset {at} (never acknowledged)",
                        path.display(),
                        bytes.len() as u64 - at
                    );
                }
                let size = scan.torn_at.unwrap_or(bytes.len() as u64);
                segments.push(Segment {
                    path,
                    first_lsn,
                    max_lsn,
                    bytes: size,
                });
                replay.records.extend(scan.records);
                continue;
            }
            let mut offsets = scan.damage.clone();
            offsets.extend(scan.torn_at);
            let moved_to = path.with_extension(format!("log{DAMAGED_SUFFIX}"));
            fs::rename(&path, &moved_to)?;
            tracing::error!(
                "WAL {}: damaged at byte offset(s) {offsets:?}; moved to {} and kept {} good \
                 record(s)",
                path.display(),
                moved_to.display(),
                scan.records.len()
            );
            replay.damaged.push(Damage {
                moved_to,
                offsets,
                recovered: scan.records.len(),
            });
            rewrite.push(scan.records);
        }
        replay.records.sort_by_key(|r| r.lsn);
        replay.records.dedup_by_key(|r| r.lsn);

        let mut next_lsn = replay.records.last().map_or(1, |r| r.lsn + 1);
        for s in &segments {
            next_lsn = next_lsn.max(s.first_lsn);
        }
        // Good records of damaged segments go to segments of their own, so every segment still
        // holds a disjoint LSN range (deletion in LSN order stays a prefix of history).
        for records in rewrite.into_iter().filter(|r| !r.is_empty()) {
            let first = records.iter().map(|r| r.lsn).min().expect("non-empty");
            let max = records.iter().map(|r| r.lsn).max().expect("non-empty");
            let path = segment_path(dir, first);
            let path = if path.exists() {
                dir.join(format!(
                    "{SEGMENT_PREFIX}{first:020}-recovered{SEGMENT_SUFFIX}"
                ))
            } else {
                path
            };
            let mut buf = Vec::new();
            for r in &records {
                encode_frame(r.lsn, &r.payload, &mut buf);
            }
            let mut file = File::create(&path)?;
            file.write_all(&buf)?;
            file.sync_all()?;
            segments.push(Segment {
                path,
                first_lsn: first,
                max_lsn: Some(max),
                bytes: buf.len() as u64,
            });
            replay.records.extend(records);
        }
        replay.records.sort_by_key(|r| r.lsn);
        replay.records.dedup_by_key(|r| r.lsn);

        // Always append to a fresh segment: closed segments are never written again. An empty
        // segment named for the next LSN (left by a rotation) is that fresh segment already.
        segments.sort_by_key(|s| s.first_lsn);
        let path = segment_path(dir, next_lsn);
        let reuse = segments
            .last()
            .is_some_and(|s| s.path == path && s.bytes == 0);
        if !reuse {
            segments.push(Segment {
                path: path.clone(),
                first_lsn: next_lsn,
                max_lsn: None,
                bytes: 0,
            });
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(dir)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            file,
            next_lsn,
        };
        Ok((wal, replay))
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Appends records and fsyncs once for all of them: when this returns Ok, every one is
    /// durable. Returns the LSN of each. On an error nothing may be acknowledged, and the
    /// caller must stop using the log (a failed fsync leaves the file in an unknown state).
    pub fn append(&mut self, payloads: &[&[u8]]) -> io::Result<Vec<Lsn>> {
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + HEADER).sum());
        let mut lsns = Vec::with_capacity(payloads.len());
        for p in payloads {
            if p.len() > MAX_RECORD_BYTES {
                return Err(io::Error::other(format!(
                    "WAL record of {} bytes is over the {MAX_RECORD_BYTES}-byte limit",
                    p.len()
                )));
            }
            let lsn = self.next_lsn + lsns.len() as u64;
            encode_frame(lsn, p, &mut buf);
            lsns.push(lsn);
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.next_lsn += lsns.len() as u64;
        let open = self.segments.last_mut().expect("an open segment");
        open.bytes += buf.len() as u64;
        if let Some(&max) = lsns.last() {
            open.max_lsn = Some(max);
        }
        if open.bytes >= SEGMENT_BYTES {
            self.rotate()?;
        }
        Ok(lsns)
    }

    /// Closes the open segment and starts a new one (unless the open one is still empty).
    /// Returns the highest LSN written so far: everything up to it is in closed segments.
    pub fn rotate(&mut self) -> io::Result<Lsn> {
        let last_written = self.next_lsn - 1;
        if self.segments.last().is_some_and(|s| s.bytes == 0) {
            return Ok(last_written);
        }
        let path = segment_path(&self.dir, self.next_lsn);
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            path,
            first_lsn: self.next_lsn,
            max_lsn: None,
            bytes: 0,
        });
        Ok(last_written)
    }

    /// Deletes closed segments whose records all have LSN <= `upto` (their rows are in
    /// Parquet), lowest LSNs first, so a crash part-way leaves a suffix of history.
    pub fn truncate(&mut self, upto: Lsn) -> io::Result<usize> {
        let open = self.segments.len() - 1;
        let mut doomed: Vec<usize> = (0..open)
            .filter(|&i| self.segments[i].max_lsn.is_none_or(|m| m <= upto))
            .collect();
        doomed.sort_by_key(|&i| self.segments[i].max_lsn.unwrap_or(0));
        let mut deleted = Vec::new();
        for i in doomed {
            match fs::remove_file(&self.segments[i].path) {
                Ok(()) => deleted.push(i),
                Err(e) if e.kind() == io::ErrorKind::NotFound => deleted.push(i),
                Err(e) => {
                    self.forget(&deleted);
                    return Err(e);
                }
            }
        }
        self.forget(&deleted);
        sync_dir(&self.dir)?;
        Ok(deleted.len())
    }

    fn forget(&mut self, indices: &[usize]) {
        let mut i = 0;
        self.segments.retain(|_| {
            let keep = !indices.contains(&i);
            i += 1;
            keep
        });
    }

    pub fn stats(&self) -> WalStats {
        WalStats {
            segments: self.segments.len(),
            bytes: self.segments.iter().map(|s| s.bytes).sum(),
            next_lsn: self.next_lsn,
        }
    }
}

fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// Segment files in `dir` with the first LSN their name gives.
fn list_segments(dir: &Path) -> io::Result<Vec<(Lsn, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
        else {
            continue;
        };
        let digits = stem.split('-').next().unwrap_or("");
        if let Ok(first) = digits.parse::<Lsn>() {
            out.push((first, path));
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode_frame(lsn: Lsn, payload: &[u8], out: &mut Vec<u8>) {
    let lsn_bytes = lsn.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn_bytes);
    crc.update(payload);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&lsn_bytes);
    out.extend_from_slice(payload);
}

/// Reading one segment's bytes.
#[derive(Debug, Default)]
struct Scan {
    records: Vec<Record>,
    /// Offsets where a record failed its checks but good records followed.
    damage: Vec<u64>,
    /// Offset where the segment ends in a partial or bad record with nothing good after it.
    torn_at: Option<u64>,
}

/// A well-formed record at `at`: its LSN, payload and end offset.
fn frame_at(bytes: &[u8], at: usize) -> Option<(Lsn, &[u8], usize)> {
    let header = bytes.get(at..at + HEADER)?;
    if header[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let lsn_bytes = &header[12..20];
    let payload = bytes.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(lsn_bytes);
    hasher.update(payload);
    (hasher.finalize() == crc).then(|| {
        (
            u64::from_le_bytes(lsn_bytes.try_into().expect("8 bytes")),
            payload,
            at + HEADER + len,
        )
    })
}

fn scan_segment(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0;
    while at < bytes.len() {
        if let Some((lsn, payload, end)) = frame_at(bytes, at) {
            scan.records.push(Record {
                lsn,
                payload: payload.to_vec(),
            });
            at = end;
            continue;
        }
        // Not a good record here: look for the next one. None after it means a torn tail.
        let resume = (at + 1..bytes.len())
            .filter(|&i| bytes[i..].starts_with(&MAGIC))
            .find(|&i| frame_at(bytes, i).is_some());
        match resume {
            Some(next) => {
                scan.damage.push(at as u64);
                at = next;
            }
            None => {
                scan.torn_at = Some(at as u64);
                break;
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(r: &Replay) -> Vec<(Lsn, Vec<u8>)> {
        r.records
            .iter()
            .map(|r| (r.lsn, r.payload.clone()))
            .collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn appends_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert!(replay.records.is_empty());
        assert_eq!(wal.append(&[b"a", b"bb"]).unwrap(), vec![1, 2]);
        assert_eq!(wal.append(&[b"ccc"]).unwrap(), vec![3]);
        drop(wal);
        let (wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            payloads(&replay),
            vec![
                (1, b"a".to_vec()),
                (2, b"bb".to_vec()),
                (3, b"ccc".to_vec())
            ]
        );
        assert_eq!(wal.next_lsn(), 4);
    }

    #[test]
    fn empty_and_huge_records() {
        let dir = tempfile::tempdir().unwrap();
        let huge: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"", &huge, b""]).unwrap();
        drop(wal);
        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(payloads(&replay), vec![(1, vec![]), (2, huge), (3, vec![])]);
    }

    #[test]
    fn torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"one", b"two"]).unwrap();
        drop(wal);
        let seg = segment_files(dir.path()).pop().unwrap();
        let good_len = fs::metadata(&seg).unwrap().len();
        // A third record torn half-way through its payload.
        let mut frame = Vec::new();
        encode_frame(3, b"three-three-three", &mut frame);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&frame[..frame.len() - 5]).unwrap();
        drop(f);

        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(replay.records.len(), 2);
        assert_eq!(replay.torn_tail_bytes, frame.len() as u64 - 5);
        assert!(replay.damaged.is_empty());
        assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
        assert_eq!(wal.append(&[b"four"]).unwrap(), vec![3]);
        drop(wal);
        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            payloads(&replay).last().unwrap(),
            &(3, b"four".to_vec()),
            "the torn record is gone for good"
        );
    }

    #[test]
    fn flipped_bits_in_the_middle_move_the_segment_aside_and_keep_good_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"first", b"second", b"third"]).unwrap();
        wal.rotate().unwrap();
        wal.append(&[b"fourth"]).unwrap();
        drop(wal);
        let first_seg = segment_files(dir.path()).remove(0);
        let mut bytes = fs::read(&first_seg).unwrap();
        // Flip a bit inside the second record's payload.
        let second_payload = HEADER + 5 + HEADER;
        bytes[second_payload + 2] ^= 0x10;
        fs::write(&first_seg, &bytes).unwrap();

        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            payloads(&replay),
            vec![
                (1, b"first".to_vec()),
                (3, b"third".to_vec()),
                (4, b"fourth".to_vec())
            ]
        );
        assert_eq!(replay.damaged.len(), 1);
        let damage = &replay.damaged[0];
        assert_eq!(damage.offsets, vec![(HEADER + 5) as u64]);
        assert_eq!(damage.recovered, 2);
        assert!(damage.moved_to.exists());
        assert!(!first_seg.exists() || fs::read(&first_seg).unwrap() != bytes);
        // New writes continue after the highest LSN; a second start finds no damage and the
        // same good records (the recovered ones were rewritten durably).
        assert_eq!(wal.append(&[b"fifth"]).unwrap(), vec![5]);
        drop(wal);
        let (_, again) = Wal::open(dir.path()).unwrap();
        assert!(again.damaged.is_empty());
        assert_eq!(
            again.records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            vec![1, 3, 4, 5]
        );
    }

    #[test]
    fn garbage_header_in_the_middle_resyncs_on_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"aaaa", b"bbbb", b"cccc"]).unwrap();
        wal.rotate().unwrap();
        drop(wal);
        let seg = segment_files(dir.path()).remove(0);
        let mut bytes = fs::read(&seg).unwrap();
        let second = HEADER + 4;
        bytes[second..second + 4].copy_from_slice(b"XXXX"); // magic gone
        bytes[second + 4] = 0xff; // and a wild length
        fs::write(&seg, &bytes).unwrap();
        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(
            replay.records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            vec![1, 3]
        );
        assert_eq!(replay.damaged.len(), 1);
    }

    #[test]
    fn replay_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        for i in 0..50u32 {
            wal.append(&[&i.to_le_bytes()]).unwrap();
            if i % 7 == 0 {
                wal.rotate().unwrap();
            }
        }
        drop(wal);
        let first = payloads(&Wal::open(dir.path()).unwrap().1);
        let second = payloads(&Wal::open(dir.path()).unwrap().1);
        assert_eq!(first.len(), 50);
        assert_eq!(first, second);
    }

    #[test]
    fn truncate_deletes_only_covered_closed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"1", b"2"]).unwrap();
        let upto = wal.rotate().unwrap();
        assert_eq!(upto, 2);
        wal.append(&[b"3"]).unwrap();
        assert_eq!(wal.truncate(upto).unwrap(), 1);
        assert_eq!(wal.stats().segments, 1);
        drop(wal);
        let (wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(payloads(&replay), vec![(3, b"3".to_vec())]);
        assert_eq!(wal.next_lsn(), 4);
    }

    #[test]
    fn lsns_keep_rising_after_everything_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"1", b"2", b"3"]).unwrap();
        let upto = wal.rotate().unwrap();
        wal.truncate(upto).unwrap();
        drop(wal);
        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert!(replay.records.is_empty());
        assert_eq!(wal.append(&[b"4"]).unwrap(), vec![4]);
    }
}
