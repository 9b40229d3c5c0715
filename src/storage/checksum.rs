//! Checksums of bar files: damage is detected when bytes are read, never decoded into rows.
//!
//! The parquet crate writes no page CRCs (59.x leaves the page header's `crc` unset), so the
//! writer records a CRC32 per *read unit* in the catalog beside the file: the units are the
//! pieces readers fetch. A file is cut at the start of every column chunk, of every page the
//! offset index lists, and of its tail (page indexes, footer and trailer, whose length the
//! catalog records as `footer_bytes`): unit `i` runs from cut `i` to cut `i + 1`, and the units
//! cover every byte of the file. A reader fetches the tail first and checks it against the last
//! CRC; the cuts then come from that verified footer, so every later range (a whole column
//! chunk for a scan, single pages for a range read) is a run of whole units, checked before it
//! is decoded. A range that is not (no reader of ours asks for one) is widened to whole units.
//!
//! Files written before checksums have none recorded: they are read unverified, and
//! `check --deep` lists them.

use std::collections::BTreeSet;
use std::ops::Range;

use bytes::Bytes;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// A file whose bytes do not match what was written. `path` is relative to the store root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data file {path} is damaged: {detail}")]
pub struct DamagedFile {
    pub path: String,
    pub detail: String,
}

/// What the catalog recorded of a file's bytes, for checking what is read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Relative to the store root.
    pub path: String,
    pub size: u64,
    /// Length of the tail: page indexes, footer and trailer.
    pub footer_bytes: u64,
    /// One CRC32 per read unit in file order, the tail's last; empty for an unverified file.
    pub crc32: Vec<u32>,
}

impl Recorded {
    /// Whether this file's reads are checked (it was written with checksums).
    pub fn is_verified(&self) -> bool {
        !self.crc32.is_empty()
    }

    fn damaged(&self, detail: impl Into<String>) -> DamagedFile {
        DamagedFile {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    /// Where the tail starts; `None` if the recorded lengths cannot be those of this file.
    pub fn tail_start(&self) -> Option<u64> {
        (self.footer_bytes >= 8 && self.footer_bytes <= self.size)
            .then(|| self.size - self.footer_bytes)
    }

    /// Checks the tail's bytes (fetched from [`Recorded::tail_start`]) and parses the footer
    /// and page indexes from them.
    pub fn parse_tail(&self, tail: &Bytes) -> Result<ParquetMetaData, DamagedFile> {
        let last = *self.crc32.last().expect("verified files only");
        if tail.len() as u64 != self.footer_bytes || crc32fast::hash(tail) != last {
            return Err(self.damaged(format!(
                "its footer (the last {} bytes) fails its checksum",
                self.footer_bytes
            )));
        }
        let mut reader =
            ParquetMetaDataReader::new().with_page_index_policy(PageIndexPolicy::Optional);
        reader
            .try_parse_sized(tail, self.size)
            .and_then(|()| reader.finish())
            .map_err(|e| self.damaged(format!("its checksummed footer does not parse: {e}")))
    }

    /// The read units of the file whose verified footer is `metadata`.
    pub fn units(&self, metadata: &ParquetMetaData) -> Result<Units, DamagedFile> {
        let cuts = unit_cuts(metadata, self.size, self.footer_bytes);
        if cuts.len() != self.crc32.len() + 1 {
            return Err(self.damaged(format!(
                "its footer describes {} read units but {} checksums are recorded",
                cuts.len() - 1,
                self.crc32.len()
            )));
        }
        Ok(Units { cuts })
    }

    /// Checks `bytes`, read from offset `start`, which must span whole units.
    pub fn verify(&self, units: &Units, start: u64, bytes: &[u8]) -> Result<(), DamagedFile> {
        let end = start + bytes.len() as u64;
        let first = units.cuts.partition_point(|&c| c < start);
        // Never pass bytes that were not checked: a part of a unit cannot be.
        if units.cuts.get(first) != Some(&start) || units.cuts.binary_search(&end).is_err() {
            return Err(self.damaged(format!(
                "bytes {start}..{end} are not whole read units, so they cannot be checked"
            )));
        }
        let mut i = first;
        while units.cuts.get(i).is_some_and(|&c| c < end) {
            let (lo, hi) = (units.cuts[i], units.cuts[i + 1]);
            let unit = &bytes[(lo - start) as usize..(hi - start) as usize];
            if crc32fast::hash(unit) != self.crc32[i] {
                return Err(self.damaged(format!("bytes {lo}..{hi} fail their checksum")));
            }
            i += 1;
        }
        Ok(())
    }

    /// Checks a whole file's bytes: size, tail, then every unit. Returns its footer.
    pub fn verify_file(&self, bytes: &Bytes) -> Result<ParquetMetaData, DamagedFile> {
        let tail_start = self
            .tail_start()
            .filter(|_| bytes.len() as u64 == self.size)
            .ok_or_else(|| {
                self.damaged(format!(
                    "it holds {} bytes but {} were written",
                    bytes.len(),
                    self.size
                ))
            })?;
        let metadata = self.parse_tail(&bytes.slice(tail_start as usize..))?;
        let units = self.units(&metadata)?;
        self.verify(&units, 0, bytes)?;
        Ok(metadata)
    }
}

/// Where a verified file's read units start, and its size: unit `i` is `cuts[i]..cuts[i + 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Units {
    cuts: Vec<u64>,
}

impl Units {
    /// The smallest run of whole units that holds `range`, clamped to the file.
    pub fn covering(&self, range: &Range<u64>) -> Range<u64> {
        let size = *self.cuts.last().expect("at least the file's end");
        let (start, end) = (range.start.min(size), range.end.min(size));
        let lo = self.cuts.partition_point(|&c| c <= start).saturating_sub(1);
        let hi = self
            .cuts
            .partition_point(|&c| c < end)
            .min(self.cuts.len() - 1);
        self.cuts[lo]..self.cuts[hi.max(lo)]
    }
}

/// Where the read units of a file start (see the module comment), then its size.
fn unit_cuts(metadata: &ParquetMetaData, size: u64, footer_bytes: u64) -> Vec<u64> {
    let mut cuts = BTreeSet::from([0, size.saturating_sub(footer_bytes)]);
    let offset = |o: i64| u64::try_from(o).ok();
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for (c, chunk) in group.columns().iter().enumerate() {
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            cuts.extend(offset(start));
            let pages = metadata
                .offset_index()
                .and_then(|index| index.get(g)?.get(c))
                .map(|index| index.page_locations().as_slice())
                .unwrap_or_default();
            cuts.extend(pages.iter().filter_map(|p| offset(p.offset)));
        }
    }
    let mut cuts: Vec<u64> = cuts.into_iter().filter(|&c| c < size).collect();
    cuts.push(size);
    cuts
}

/// The CRC32 of every read unit of a file just written: `metadata` is what the writer
/// returned, `footer_bytes` the tail's length.
pub(super) fn record(bytes: &[u8], metadata: &ParquetMetaData, footer_bytes: u64) -> Vec<u32> {
    unit_cuts(metadata, bytes.len() as u64, footer_bytes)
        .windows(2)
        .map(|w| crc32fast::hash(&bytes[w[0] as usize..w[1] as usize]))
        .collect()
}

/// Whether `error` or anything it was caused by is a [`DamagedFile`]; returns it.
pub fn find_damage<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a DamagedFile> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(d) = e.downcast_ref::<DamagedFile>() {
            return Some(d);
        }
        next = e.source();
    }
    None
}
