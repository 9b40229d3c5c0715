//! The write-ahead log: every ingest is framed, appended to a segment file and fsynced before it
//! is acknowledged, so the live tier can be rebuilt after any crash.
//!
//! A segment is a file `wal-<first lsn, 20 digits>.log` holding records back to back:
//!
//! ```text
//! magic "TVW1" (4 bytes) | payload length u32 LE | CRC32 of lsn+payload u32 LE | lsn u64 LE | payload
//! ```
//!
//! Each record carries its log sequence number (LSN); replay orders records by LSN. Segments
//! are deleted oldest-LSN first once their rows are in Parquet, so what remains is always a
//! suffix of history, and each segment is named for the LSN after its predecessor's last.
//!
//! Damage found at start-up is never cut silently: the segment's bytes are kept as
//! `<segment>.damaged` (the damage report, until `tickvault wal clear-damage`), and its good
//! records are rewritten to `wal-<first lsn>-recovered.log`, which keeps its place in history.
//! Only the newest segment may end in a torn write (a record running past the end of the file).

use std::collections::HashSet;
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
const RECOVERED: &str = "-recovered";
const TMP_SUFFIX: &str = ".tmp";

/// One replayed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: Lsn,
    pub payload: Vec<u8>,
}

/// A damaged segment: a byte-exact copy is kept beside the log until an operator clears it
/// (`tickvault wal clear-damage`), and its good records live on in a `-recovered` segment.
#[derive(Debug, Clone)]
pub struct Damage {
    /// The copy of the segment as it was found (`<segment>.damaged`).
    pub moved_to: PathBuf,
    /// Byte offsets of the damage in the copy; the copy's length when records are missing
    /// after its end (the next segment's name says they existed).
    pub offsets: Vec<u64>,
    /// Records read intact from it (written again to a `-recovered` segment).
    pub recovered: usize,
    /// Found at this start; `false` for a copy an earlier start kept and nobody cleared yet.
    pub new: bool,
}

/// What start-up found in the WAL directory.
#[derive(Debug, Default)]
pub struct Replay {
    /// Every good record, in LSN order.
    pub records: Vec<Record>,
    /// Bytes cut off the end of the newest segment (a write torn by a crash, never
    /// acknowledged).
    pub torn_tail_bytes: u64,
    /// Every damaged copy in the directory, those found at this start flagged `new`.
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
    /// Only a record that runs past the end of the newest segment (or a zero-filled tail) is a
    /// write torn by a crash, never acknowledged: it is cut off. Any other bad record, and
    /// records missing from the end of a closed segment, is damage: the segment is copied
    /// aside as `<segment>.damaged`, reported, and its good records are rewritten to a
    /// `-recovered` segment so they stay durable. LSNs are never reused: the next one is above
    /// every LSN any file (damaged copies included) holds or may have held.
    pub fn open(dir: &Path) -> io::Result<(Wal, Replay)> {
        fs::create_dir_all(dir)?;
        let listing = list_dir(dir)?;
        for tmp in &listing.temporaries {
            fs::remove_file(tmp)?; // a write a crash interrupted; redone below if needed
        }
        let mut names = listing.segments;
        // Both `wal-N.log` and `wal-N-recovered.log`: a recovery was interrupted before it
        // removed the damaged original. The original is still there, so it is redone.
        let originals: HashSet<Lsn> = names
            .iter()
            .filter(|n| !n.recovered)
            .map(|n| n.first_lsn)
            .collect();
        names.retain(|n| !(n.recovered && originals.contains(&n.first_lsn)));
        names.sort_by_key(|n| n.first_lsn);

        let mut replay = Replay::default();
        let mut segments = Vec::new();
        let mut new_damage = Vec::new();
        let mut next_lsn: Lsn = 1;
        let newest = names.len().saturating_sub(1);
        for (i, name) in names.iter().enumerate() {
            let bytes = fs::read(&name.path)?;
            let mut scan = scan_segment(&bytes, name.first_lsn, i == newest);
            let max_lsn = scan.records.iter().map(|r| r.lsn).max();
            // Records cut off a closed segment at a record boundary leave no trace in it, but
            // the next segment is named for the LSN that followed its last record.
            let expected_next = max_lsn.map_or(name.first_lsn, |m| m + 1);
            if let Some(next) = names.get(i + 1)
                && !name.recovered
                && next.first_lsn > expected_next
                && scan.damage.is_empty()
                && scan.torn_at.is_none()
            {
                scan.damage.push(bytes.len() as u64);
            }
            // LSNs this file's records have or may have had. A damaged one's name may be the LSN
            // of a record now unreadable. The next segment's name caps them all.
            let mut bound = scan.lsn_bound;
            if !scan.damage.is_empty() {
                bound = bound.max(name.first_lsn.saturating_add(1));
            }
            if let Some(next) = names.get(i + 1) {
                bound = bound.min(next.first_lsn);
            }
            next_lsn = next_lsn.max(bound);
            if scan.damage.is_empty() {
                if let Some(at) = scan.torn_at {
                    let file = OpenOptions::new().write(true).open(&name.path)?;
                    file.set_len(at)?;
                    file.sync_all()?;
                    replay.torn_tail_bytes += bytes.len() as u64 - at;
                    tracing::warn!(
                        "WAL {}: cut a torn record of {} bytes at offset {at} (never acknowledged)",
                        name.path.display(),
                        bytes.len() as u64 - at
                    );
                }
                segments.push(Segment {
                    path: name.path.clone(),
                    first_lsn: name.first_lsn,
                    max_lsn,
                    bytes: scan.torn_at.unwrap_or(bytes.len() as u64),
                });
                replay.records.extend(scan.records);
                continue;
            }
            let mut offsets = scan.damage.clone();
            offsets.extend(scan.torn_at);
            let (segment, damage) = recover(dir, name, &bytes, scan.records.clone(), offsets)?;
            segments.push(Segment { max_lsn, ..segment });
            replay.records.extend(scan.records);
            new_damage.push(damage);
        }

        // The report is every damaged copy on disk, so it survives restarts until cleared.
        for copy in list_dir(dir)?.damaged {
            if let Some(d) = new_damage.iter().find(|d| d.moved_to == copy.path) {
                replay.damaged.push(d.clone());
                continue;
            }
            let (damage, after_good) = read_damaged_copy(&copy)?;
            tracing::warn!(
                "WAL {}: a damaged segment kept from an earlier start (damage at byte offset(s) \
                 {:?}); clear it with `tickvault wal clear-damage` once it has been looked at",
                copy.path.display(),
                damage.offsets
            );
            // What damaged bytes may have held was accounted for by the start that found them
            // (in the name of the segment it opened); the good records count here too.
            next_lsn = next_lsn.max(after_good);
            replay.damaged.push(damage);
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
    /// Parquet), lowest LSNs first, so a crash part-way leaves a suffix of history (and no
    /// gap between two segments that start-up would take for lost records).
    pub fn truncate(&mut self, upto: Lsn) -> io::Result<usize> {
        let open = self.segments.len() - 1;
        let mut doomed: Vec<usize> = (0..open)
            .filter(|&i| {
                let s = &self.segments[i];
                // An empty segment goes only with everything before it.
                s.max_lsn.unwrap_or(s.first_lsn.saturating_sub(1)) <= upto
            })
            .collect();
        doomed.sort_by_key(|&i| self.segments[i].first_lsn);
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

/// Keeps a damaged segment's bytes aside and its good records in a `-recovered` segment, in an
/// order that a crash at any point leaves redoable: the copy is durable before the recovered
/// segment replaces anything, and that before the original goes.
fn recover(
    dir: &Path,
    name: &SegmentName,
    bytes: &[u8],
    records: Vec<Record>,
    offsets: Vec<u64>,
) -> io::Result<(Segment, Damage)> {
    let copy = keep_damaged_copy(dir, &name.path, bytes)?;
    sync_dir(dir)?;
    let target = dir.join(format!(
        "{SEGMENT_PREFIX}{:020}{RECOVERED}{SEGMENT_SUFFIX}",
        name.first_lsn
    ));
    let mut buf = Vec::new();
    for r in &records {
        encode_frame(r.lsn, &r.payload, &mut buf);
    }
    write_durably(&target, &buf)?;
    sync_dir(dir)?;
    if target != name.path {
        fs::remove_file(&name.path)?;
        sync_dir(dir)?;
    }
    tracing::error!(
        "WAL {}: damaged at byte offset(s) {offsets:?}; kept a copy as {} and {} good record(s) \
         in {}",
        name.path.display(),
        copy.display(),
        records.len(),
        target.display()
    );
    let segment = Segment {
        path: target,
        first_lsn: name.first_lsn,
        max_lsn: None,
        bytes: buf.len() as u64,
    };
    let damage = Damage {
        moved_to: copy,
        offsets,
        recovered: records.len(),
        new: true,
    };
    Ok((segment, damage))
}

/// Writes `bytes` to `<segment>.damaged` (or `.<n>.damaged` when that name holds other bytes),
/// durably. A copy holding the same bytes, left by a start that crashed part-way through
/// recovery, is reused.
fn keep_damaged_copy(dir: &Path, segment: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1u32.. {
        let copy = if n == 1 {
            dir.join(format!("{name}{DAMAGED_SUFFIX}"))
        } else {
            dir.join(format!("{name}.{n}{DAMAGED_SUFFIX}"))
        };
        match fs::read(&copy) {
            Ok(existing) if existing == bytes => return Ok(copy),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_durably(&copy, bytes)?;
                return Ok(copy);
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("some copy name is free")
}

/// Writes a file under a temporary name, fsyncs it and renames it into place, so the name never
/// holds a partial file. The caller syncs the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Reads a damaged copy again for the report; also returns the LSN after its good records'.
fn read_damaged_copy(copy: &DamagedCopy) -> io::Result<(Damage, Lsn)> {
    let bytes = fs::read(&copy.path)?;
    let scan = scan_segment(&bytes, copy.first_lsn, false);
    let mut offsets = scan.damage;
    if offsets.is_empty() {
        // Set aside because records were missing after its end.
        offsets.push(bytes.len() as u64);
    }
    let damage = Damage {
        moved_to: copy.path.clone(),
        offsets,
        recovered: scan.records.len(),
        new: false,
    };
    let after_good = scan
        .records
        .iter()
        .map(|r| r.lsn.saturating_add(1))
        .max()
        .unwrap_or(0);
    Ok((damage, after_good))
}

/// The damaged copies kept in `dir`, read again: the report an operator has not cleared yet.
pub fn damage_report(dir: &Path) -> io::Result<Vec<Damage>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    list_dir(dir)?
        .damaged
        .iter()
        .map(|c| read_damaged_copy(c).map(|(d, _)| d))
        .collect()
}

/// Clears the damage report once an operator has looked at it: the damaged copies are moved
/// into `archive` (created if needed) or, without one, deleted. Returns where each went (its
/// new path, or the deleted path). Their good records are in `-recovered` segments already.
pub fn clear_damage(dir: &Path, archive: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut cleared = Vec::new();
    for copy in list_dir(dir)?.damaged {
        match archive {
            Some(to) => {
                fs::create_dir_all(to)?;
                let dest = to.join(copy.path.file_name().expect("a file name"));
                if dest.exists() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists already", dest.display()),
                    ));
                }
                if fs::rename(&copy.path, &dest).is_err() {
                    // Another file system: copy durably, then delete.
                    write_durably(&dest, &fs::read(&copy.path)?)?;
                    sync_dir(to)?;
                    fs::remove_file(&copy.path)?;
                }
                cleared.push(dest);
            }
            None => {
                fs::remove_file(&copy.path)?;
                cleared.push(copy.path);
            }
        }
    }
    sync_dir(dir)?;
    Ok(cleared)
}

fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{first_lsn:020}{SEGMENT_SUFFIX}"))
}

/// A segment file: `wal-<first lsn>.log`, or `wal-<first lsn>-recovered.log` for one rewritten
/// from a damaged segment (its LSNs have gaps where the damage was).
#[derive(Debug, Clone)]
struct SegmentName {
    path: PathBuf,
    first_lsn: Lsn,
    recovered: bool,
}

/// A damaged segment's copy, with the first LSN its name gives.
#[derive(Debug, Clone)]
struct DamagedCopy {
    path: PathBuf,
    first_lsn: Lsn,
}

#[derive(Debug, Default)]
struct Listing {
    segments: Vec<SegmentName>,
    damaged: Vec<DamagedCopy>,
    /// Partial writes a crash left.
    temporaries: Vec<PathBuf>,
}

/// The WAL's files in `dir`, sorted by name within each kind.
fn list_dir(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(rest) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .map(str::to_owned)
        else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(first_lsn) = digits.parse::<Lsn>() else {
            continue;
        };
        if rest.ends_with(TMP_SUFFIX) {
            listing.temporaries.push(path);
        } else if rest.ends_with(DAMAGED_SUFFIX) {
            listing.damaged.push(DamagedCopy { path, first_lsn });
        } else if let Some(stem) = rest.strip_suffix(SEGMENT_SUFFIX) {
            let recovered = match &stem[digits.len()..] {
                "" => false,
                RECOVERED => true,
                _ => continue,
            };
            listing.segments.push(SegmentName {
                path,
                first_lsn,
                recovered,
            });
        }
    }
    listing.segments.sort_by(|a, b| a.path.cmp(&b.path));
    listing.damaged.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(listing)
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
    /// Offsets where a stretch of bad bytes starts (not a torn tail).
    damage: Vec<u64>,
    /// Offset where the newest segment ends in a torn write.
    torn_at: Option<u64>,
    /// No record the file held can have an LSN at or above this: a good record's LSN + 1, and
    /// for damaged bytes ending the file, n bytes, n / HEADER LSNs past the good record before
    /// them (LSNs within a segment run on by one, and a record takes at least HEADER bytes).
    lsn_bound: Lsn,
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

/// Whether the bad bytes ending the newest segment are a write a crash cut short: a record
/// whose header or stated length runs past the end of the file, or zeros (space the file
/// system added to the file but the crash kept from being written). A complete record that
/// fails its CRC, or bytes that are no record at all, are damage.
fn is_torn(rest: &[u8]) -> bool {
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    let magic = &rest[..rest.len().min(MAGIC.len())];
    if magic != &MAGIC[..magic.len()] {
        return false;
    }
    if rest.len() < HEADER {
        return true;
    }
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    if HEADER + len <= rest.len() {
        return false;
    }
    // It runs past the end, unless the bytes there are a whole record whose length is wrong.
    let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&rest[12..HEADER]);
    hasher.update(&rest[HEADER..]);
    hasher.finalize() != crc
}

/// Reads a segment named for `first_lsn`; only the newest may end in a torn write.
fn scan_segment(bytes: &[u8], first_lsn: Lsn, newest: bool) -> Scan {
    let mut scan = Scan {
        lsn_bound: first_lsn,
        ..Scan::default()
    };
    let mut at = 0;
    while at < bytes.len() {
        if let Some((lsn, payload, end)) = frame_at(bytes, at) {
            scan.records.push(Record {
                lsn,
                payload: payload.to_vec(),
            });
            scan.lsn_bound = scan.lsn_bound.max(lsn.saturating_add(1));
            at = end;
            continue;
        }
        // Not a good record here: look for the next one. A segment's LSNs rise, so a frame
        // whose LSN does not is bytes inside the damaged record's payload, not a record.
        let floor = scan
            .records
            .last()
            .map_or(first_lsn, |r| r.lsn.saturating_add(1));
        let resume = (at + 1..bytes.len())
            .filter(|&i| bytes[i..].starts_with(&MAGIC))
            .find(|&i| frame_at(bytes, i).is_some_and(|(lsn, _, _)| lsn >= floor));
        scan.damage.push(at as u64);
        match resume {
            // The good record after the damage has a higher LSN than any in it.
            Some(next) => at = next,
            None if newest && is_torn(&bytes[at..]) => {
                scan.damage.pop();
                scan.torn_at = Some(at as u64);
                break;
            }
            None => {
                let after = scan
                    .records
                    .last()
                    .map_or(first_lsn, |r| r.lsn.saturating_add(1));
                let most = ((bytes.len() - at) / HEADER) as u64;
                scan.lsn_bound = scan.lsn_bound.max(after.saturating_add(most));
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
        assert_eq!(again.damaged.len(), 1, "still reported until cleared");
        assert!(!again.damaged[0].new);
        assert_eq!(again.damaged[0].offsets, damage.offsets);
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

    /// Offsets of the records in a segment's bytes.
    fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((_, _, end)) = frame_at(bytes, at) {
            out.push(at);
            at = end;
        }
        out
    }

    /// A closed log of three records whose second one fails its CRC: the segment and its bytes.
    fn three_records_with_the_second_flipped(dir: &Path) -> (PathBuf, Vec<u8>) {
        let (mut wal, _) = Wal::open(dir).unwrap();
        wal.append(&[b"one", b"two", b"three"]).unwrap();
        drop(wal);
        let seg = only_segment(dir);
        let mut bytes = fs::read(&seg).unwrap();
        let second = frame_offsets(&bytes)[1];
        bytes[second + HEADER] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        (seg, bytes)
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let listing = list_dir(dir).unwrap();
        assert_eq!(listing.segments.len(), 1);
        listing.segments[0].path.clone()
    }

    fn lsns(r: &Replay) -> Vec<Lsn> {
        r.records.iter().map(|r| r.lsn).collect()
    }

    /// Issue 16, case 2: a damaged record in the middle of the newest segment used to leave
    /// next_lsn at 1, so later writes reused LSNs 1, 2, 3 and replay dropped them as duplicates.
    #[test]
    fn writes_after_a_damaged_restart_get_fresh_lsns_and_survive_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        for i in 1..=5u8 {
            wal.append(&[&[b'r', i]]).unwrap();
        }
        drop(wal);
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let third = frame_offsets(&bytes)[2];
        bytes[third + HEADER + 1] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();

        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&replay), vec![1, 2, 4, 5]);
        assert_eq!(replay.damaged.len(), 1);
        assert_eq!(replay.damaged[0].recovered, 4);
        assert_eq!(replay.damaged[0].offsets, vec![third as u64]);
        assert_eq!(fs::read(&replay.damaged[0].moved_to).unwrap(), bytes);
        assert_eq!(wal.next_lsn(), 6);
        assert_eq!(
            wal.append(&[b"six", b"seven"]).unwrap(),
            vec![6, 7],
            "no LSN is used twice"
        );
        assert_eq!(wal.append(&[b"eight"]).unwrap(), vec![8]);
        drop(wal);

        let (wal, again) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&again), vec![1, 2, 4, 5, 6, 7, 8]);
        assert_eq!(again.records[4].payload, b"six");
        assert_eq!(again.records[6].payload, b"eight");
        assert_eq!(again.damaged.len(), 1, "the report survives the restart");
        assert!(!again.damaged[0].new);
        assert_eq!(again.damaged[0].recovered, 4);
        assert_eq!(wal.next_lsn(), 9);
    }

    /// A damaged last record may have been the highest LSN: it is never given out again.
    #[test]
    fn the_lsn_of_a_damaged_last_record_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"one", b"two", b"three"]).unwrap();
        drop(wal);
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let last = frame_offsets(&bytes)[2];
        bytes[last + 12] ^= 0x01; // its LSN field
        fs::write(&seg, &bytes).unwrap();
        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&replay), vec![1, 2]);
        assert!(wal.next_lsn() > 3, "next LSN {}", wal.next_lsn());
        let fresh = wal.append(&[b"four"]).unwrap()[0];
        drop(wal);
        let (_, again) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&again), vec![1, 2, fresh]);
        assert!(again.damaged.iter().all(|d| !d.new));
    }

    /// Issue 16, case 3: only a record that runs past the end of the file is torn.
    #[test]
    fn a_complete_last_record_that_fails_its_crc_is_damage_not_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"one", b"two", b"three"]).unwrap();
        drop(wal);
        let seg = only_segment(dir.path());
        let mut bytes = fs::read(&seg).unwrap();
        let last = frame_offsets(&bytes)[2];
        bytes[last + HEADER + 2] ^= 0x08;
        fs::write(&seg, &bytes).unwrap();

        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&replay), vec![1, 2]);
        assert_eq!(replay.torn_tail_bytes, 0, "not called torn");
        assert_eq!(replay.damaged.len(), 1);
        assert_eq!(replay.damaged[0].offsets, vec![last as u64]);
        assert_eq!(replay.damaged[0].recovered, 2);
        assert_eq!(fs::read(&replay.damaged[0].moved_to).unwrap(), bytes);
    }

    #[test]
    fn a_last_record_with_a_garbage_header_or_a_length_past_the_end_is_damage() {
        // A header that is no header at all, though the file holds a record's worth of bytes.
        let garbage = |bytes: &mut Vec<u8>, at: usize| bytes[at..at + 4].copy_from_slice(b"ABCD");
        // A length flipped past the end of the file: the CRC of what is there still matches.
        let long = |bytes: &mut Vec<u8>, at: usize| bytes[at + 6] ^= 0x01;
        for corrupt in [garbage, long] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            wal.append(&[b"one", b"two"]).unwrap();
            drop(wal);
            let seg = only_segment(dir.path());
            let mut bytes = fs::read(&seg).unwrap();
            let last = frame_offsets(&bytes)[1];
            corrupt(&mut bytes, last);
            fs::write(&seg, &bytes).unwrap();
            let (_, replay) = Wal::open(dir.path()).unwrap();
            assert_eq!(lsns(&replay), vec![1]);
            assert_eq!(replay.torn_tail_bytes, 0);
            assert_eq!(replay.damaged.len(), 1);
            assert_eq!(replay.damaged[0].offsets, vec![last as u64]);
        }
    }

    #[test]
    fn a_zero_filled_tail_is_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"one"]).unwrap();
        drop(wal);
        let seg = only_segment(dir.path());
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0; 4096]).unwrap();
        drop(f);
        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&replay), vec![1]);
        assert_eq!(replay.torn_tail_bytes, 4096);
        assert!(replay.damaged.is_empty());
    }

    /// Records cut off a closed segment at a record boundary leave the segment well-formed, but
    /// the next segment's name says they existed.
    #[test]
    fn records_missing_from_the_end_of_a_closed_segment_are_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(&[b"one", b"two", b"three"]).unwrap();
        wal.rotate().unwrap();
        wal.append(&[b"four"]).unwrap();
        drop(wal);
        let first = list_dir(dir.path()).unwrap().segments[0].path.clone();
        let bytes = fs::read(&first).unwrap();
        let cut = frame_offsets(&bytes)[1];
        fs::write(&first, &bytes[..cut]).unwrap();
        let (mut wal, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&replay), vec![1, 4]);
        assert_eq!(replay.damaged.len(), 1);
        assert_eq!(replay.damaged[0].offsets, vec![cut as u64]);
        assert_eq!(wal.append(&[b"five"]).unwrap(), vec![5]);
        drop(wal);
        let (_, again) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&again), vec![1, 4, 5]);
        assert_eq!(again.damaged.len(), 1);
        assert_eq!(again.damaged[0].offsets, vec![cut as u64]);
        assert!(
            !again.damaged[0].new,
            "the recovered segment's gap is known"
        );
    }

    #[test]
    fn the_damage_report_lasts_until_it_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes) = three_records_with_the_second_flipped(dir.path());
        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(replay.damaged.len(), 1);
        for _ in 0..2 {
            let (_, again) = Wal::open(dir.path()).unwrap();
            assert_eq!(again.damaged.len(), 1);
            assert_eq!(lsns(&again), vec![1, 3]);
        }
        let report = damage_report(dir.path()).unwrap();
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].offsets, replay.damaged[0].offsets);

        let archive = tempfile::tempdir().unwrap();
        let moved = clear_damage(dir.path(), Some(archive.path())).unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!(fs::read(&moved[0]).unwrap(), bytes, "kept byte for byte");
        let (mut wal, cleared) = Wal::open(dir.path()).unwrap();
        assert!(cleared.damaged.is_empty());
        assert_eq!(lsns(&cleared), vec![1, 3], "the good records stay");
        assert_eq!(wal.append(&[b"four"]).unwrap(), vec![4]);
        assert!(clear_damage(dir.path(), None).unwrap().is_empty());
    }

    /// A damaged record's payload may hold bytes that frame as a good record (a writer controls
    /// its prices' bytes); one whose LSN does not rise past the last good one is not a record.
    #[test]
    fn a_frame_inside_a_damaged_payload_is_not_replayed() {
        let mut bytes = Vec::new();
        encode_frame(1, b"one", &mut bytes);
        let mut forged = Vec::new();
        encode_frame(1, b"forged", &mut forged);
        let second = bytes.len();
        encode_frame(2, &forged, &mut bytes);
        bytes[second + 8] ^= 0xff; // the second record's CRC
        encode_frame(3, b"three", &mut bytes);
        let scan = scan_segment(&bytes, 1, false);
        let payloads: Vec<(Lsn, &[u8])> = scan
            .records
            .iter()
            .map(|r| (r.lsn, r.payload.as_slice()))
            .collect();
        assert_eq!(payloads, vec![(1, &b"one"[..]), (3, &b"three"[..])]);
        assert_eq!(scan.damage, vec![second as u64]);
    }

    /// A crash part-way through recovery leaves the original, the copy and the recovered
    /// segment side by side; the next start redoes it and reports the damage once.
    #[test]
    fn a_recovery_cut_short_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let (seg, bytes) = three_records_with_the_second_flipped(dir.path());
        let (_, replay) = Wal::open(dir.path()).unwrap();
        assert_eq!(replay.damaged.len(), 1);
        // Put the original back beside what recovery wrote, plus a partial temporary file.
        fs::write(&seg, &bytes).unwrap();
        fs::write(
            dir.path()
                .join("wal-00000000000000000001-recovered.log.tmp"),
            b"TV",
        )
        .unwrap();
        let (mut wal, again) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&again), vec![1, 3]);
        assert_eq!(again.damaged.len(), 1, "one copy, not two");
        assert!(again.damaged[0].new);
        assert!(!seg.exists());
        assert_eq!(wal.append(&[b"four"]).unwrap(), vec![4]);
        drop(wal);
        let (_, third) = Wal::open(dir.path()).unwrap();
        assert_eq!(lsns(&third), vec![1, 3, 4]);
        let names: Vec<_> = segment_files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    /// xorshift64*: deterministic from the seed, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Flips random bytes in random segments and cuts closed segments short: every
    /// acknowledged record comes back intact or is in a reported damaged segment whose copy
    /// holds the bytes as they were found; nothing is altered or invented; later appends get
    /// fresh LSNs and survive the next start. (A cut of the newest segment is a torn write by
    /// definition, so it is left out.)
    #[test]
    fn random_damage_never_alters_or_silently_loses_an_acknowledged_record() {
        use std::collections::BTreeMap;
        let seeds = match std::env::var("TICKVAULT_WAL_SEED") {
            Ok(s) => vec![s.parse::<u64>().expect("a seed")],
            Err(_) => (1..=120u64).collect(),
        };
        let (mut cuts, mut lost, mut reports) = (0, 0, 0);
        for seed in seeds {
            let ctx = format!("seed {seed}");
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = Wal::open(dir.path()).unwrap();
            let mut acked: BTreeMap<Lsn, Vec<u8>> = BTreeMap::new();
            for _ in 0..2 + rng.below(8) {
                let batch: Vec<Vec<u8>> = (0..1 + rng.below(5))
                    .map(|_| (0..rng.below(48)).map(|_| rng.next() as u8).collect())
                    .collect();
                let refs: Vec<&[u8]> = batch.iter().map(|p| p.as_slice()).collect();
                for (lsn, p) in wal.append(&refs).unwrap().into_iter().zip(batch) {
                    acked.insert(lsn, p);
                }
                if rng.below(3) == 0 {
                    wal.rotate().unwrap();
                }
            }
            drop(wal);
            let names = list_dir(dir.path()).unwrap().segments;
            let mut home: BTreeMap<Lsn, PathBuf> = BTreeMap::new();
            for n in &names {
                let scan = scan_segment(&fs::read(&n.path).unwrap(), n.first_lsn, false);
                for r in scan.records {
                    home.insert(r.lsn, n.path.clone());
                }
            }
            let newest = names.len() - 1;
            let mut found_as: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(names.len() as u64) as usize;
                if i == newest && found_as.contains_key(&names[i].path) {
                    // Two hits on its last record could make a torn write of it, by definition.
                    continue;
                }
                let path = &names[i].path;
                let mut bytes = fs::read(path).unwrap();
                if bytes.is_empty() {
                    continue;
                }
                if i != newest && rng.below(3) == 0 {
                    bytes.truncate(rng.below(bytes.len() as u64) as usize);
                    cuts += 1;
                } else {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= 1 + rng.below(255) as u8;
                }
                fs::write(path, &bytes).unwrap();
                found_as.insert(path.clone(), bytes);
            }

            let (mut wal, replay) = Wal::open(dir.path()).unwrap();
            assert_eq!(
                replay.torn_tail_bytes, 0,
                "{ctx}: a flip is never a torn write"
            );
            for r in &replay.records {
                assert_eq!(
                    acked.get(&r.lsn),
                    Some(&r.payload),
                    "{ctx}: LSN {} altered",
                    r.lsn
                );
            }
            let back: HashSet<Lsn> = replay.records.iter().map(|r| r.lsn).collect();
            for lsn in acked.keys().filter(|l| !back.contains(l)) {
                let seg = &home[lsn];
                let seg_name = seg.file_name().unwrap().to_string_lossy().into_owned();
                let report = replay.damaged.iter().find(|d| {
                    d.moved_to
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(&seg_name)
                });
                lost += 1;
                let report = report.unwrap_or_else(|| {
                    panic!("{ctx}: LSN {lsn} of {seg_name} is missing and not reported")
                });
                assert!(report.new && !report.offsets.is_empty(), "{ctx}");
                assert_eq!(
                    fs::read(&report.moved_to).unwrap(),
                    found_as[seg],
                    "{ctx}: the copy is the segment as found"
                );
            }
            let highest = *acked.keys().last().unwrap();
            let after = wal.append(&[b"after"]).unwrap()[0];
            assert!(
                after > highest,
                "{ctx}: LSN {after} reused (highest {highest})"
            );
            drop(wal);
            let (mut wal, again) = Wal::open(dir.path()).unwrap();
            let mut want = lsns(&replay);
            want.push(after);
            assert_eq!(lsns(&again), want, "{ctx}: the second start reads the same");
            assert_eq!(
                again.damaged.len(),
                replay.damaged.len(),
                "{ctx}: {:?} then {:?}",
                replay.damaged,
                again.damaged
            );
            assert!(again.damaged.iter().all(|d| !d.new), "{ctx}: no new damage");
            assert!(wal.append(&[b"more"]).unwrap()[0] > after, "{ctx}");
            reports += replay.damaged.len();
        }
        // The damage must be of every kind often enough for the test to mean something.
        println!("{cuts} segments cut short, {lost} records lost, {reports} damage reports");
        assert!(
            cuts >= 20 && lost >= 50 && reports >= 80,
            "{cuts} {lost} {reports}"
        );
    }
}
