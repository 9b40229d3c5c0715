//! The Delta Lake encoding of the catalog: the table rooted at `bars/`, its actions (PROTOCOL.md
//! of delta-io/delta) and how a tickvault file record maps onto an `add`.
//!
//! Each file's `add` carries what tickvault keeps per file in `tags` (`tickvault.*`), so a record
//! read back from the log is exactly the one committed; Delta readers use `partitionValues`,
//! `size` and `stats` and ignore the tags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::snapshot::{Commit, FileMeta, Seq, Tombstone};
use crate::model::{Interval, Symbol};
use crate::storage::BARS_DIR as BARS_PREFIX;

/// tickvault's own writer feature: Delta writers that do not know it refuse to append (their
/// commits could break what tickvault keeps per file), while readers read on (it is a writer
/// feature only, at reader version 1).
pub const WRITER_FEATURE: &str = "tickvault-catalog";
pub const MIN_READER_VERSION: i32 = 1;
pub const MIN_WRITER_VERSION: i32 = 7;
/// Names the commits tickvault made (`commitInfo.engineInfo`).
const ENGINE: &str = concat!("tickvault/", env!("CARGO_PKG_VERSION"));

const TAG_YEAR: &str = "tickvault.year";
const TAG_MIN_TS: &str = "tickvault.minTs";
const TAG_MAX_TS: &str = "tickvault.maxTs";
const TAG_FOOTER: &str = "tickvault.footerBytes";
const TAG_CRC32: &str = "tickvault.crc32";
const TAG_REMOVED_AT: &str = "tickvault.removedAt";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Protocol {
    pub min_reader_version: i32,
    pub min_writer_version: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_features: Option<Vec<String>>,
}

impl Protocol {
    pub fn tickvault() -> Self {
        Protocol {
            min_reader_version: MIN_READER_VERSION,
            min_writer_version: MIN_WRITER_VERSION,
            reader_features: None,
            writer_features: Some(vec![WRITER_FEATURE.to_string()]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    pub provider: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub format: Format,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_time: Option<i64>,
}

/// The Delta type of each column of `bars`, in order; partition columns first. The data files
/// hold the others (`FILE_SCHEMA`); Delta readers take the partition columns from the log.
const COLUMNS: [(&str, &str, bool); 10] = [
    ("symbol", "string", false),
    ("timeframe", "string", false),
    ("ts", "timestamp", false),
    ("open", "double", false),
    ("high", "double", false),
    ("low", "double", false),
    ("close", "double", false),
    ("volume", "double", false),
    ("vwap", "double", true),
    ("trades", "long", true),
];
pub const PARTITION_COLUMNS: [&str; 2] = ["timeframe", "symbol"];

/// The table's `schemaString`.
pub fn schema_string() -> String {
    let fields: Vec<Value> = COLUMNS
        .iter()
        .map(|(name, ty, nullable)| {
            serde_json::json!({"name": name, "type": ty, "nullable": nullable, "metadata": {}})
        })
        .collect();
    serde_json::json!({"type": "struct", "fields": fields}).to_string()
}

/// A Delta interval string for a retention property (`interval 3600 seconds`).
fn interval(d: std::time::Duration) -> String {
    format!("interval {} seconds", d.as_secs().max(1))
}

impl Metadata {
    /// The `bars` table's metadata; removed files and log entries are kept `retention` (gc_grace).
    pub fn bars(created_ms: i64, retention: std::time::Duration) -> Self {
        let configuration = [
            ("delta.deletedFileRetentionDuration", interval(retention)),
            ("delta.logRetentionDuration", interval(retention)),
            // tickvault writes its own checkpoints; others must not expect to.
            ("delta.checkpointInterval", "100".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Metadata {
            id: uuid::Uuid::new_v4().to_string(),
            name: Some("bars".into()),
            description: Some("tickvault bars".into()),
            format: Format {
                provider: "parquet".into(),
                options: BTreeMap::new(),
            },
            schema_string: schema_string(),
            partition_columns: PARTITION_COLUMNS.iter().map(|c| c.to_string()).collect(),
            configuration,
            created_time: Some(created_ms),
        }
    }

    /// Why tickvault cannot write under this metadata, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.format.provider != "parquet" {
            return Some(format!("format provider {:?}", self.format.provider));
        }
        if self.partition_columns != PARTITION_COLUMNS {
            return Some(format!(
                "partition columns {:?}, not {PARTITION_COLUMNS:?}",
                self.partition_columns
            ));
        }
        if self.schema_string != schema_string() {
            return Some("a schema that is not the bars schema".into());
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Add {
    pub path: String,
    pub partition_values: BTreeMap<String, Option<String>>,
    pub size: i64,
    pub modification_time: i64,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Option<String>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<i64>,
    pub data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_file_metadata: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_values: Option<BTreeMap<String, Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Option<String>>>,
}

/// One line of a commit (or one row of a checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Protocol(Protocol),
    MetaData(Metadata),
    Add(Add),
    Remove(Remove),
    CommitInfo(Value),
    /// Application transaction ids: tickvault writes none, but carries them (`txn`).
    Txn(Value),
}

/// Percent-encodes `%` (and anything outside the characters tickvault's paths use), as Spark
/// writes a path that is itself percent-encoded on disk: `symbol=%5EGSPC` becomes `%255EGSPC`.
fn uri_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b'=') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`uri_encode`] for any percent-encoded relative URI; `None` if it is not one.
fn uri_decode(uri: &str) -> Option<String> {
    let bytes = uri.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A store path (`bars/...`) as a Delta path, relative to the table root `bars/`.
pub fn delta_path(store_path: &str) -> String {
    let rel = store_path
        .strip_prefix(BARS_PREFIX)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(store_path);
    uri_encode(rel)
}

/// A Delta path as a store path; `None` for an absolute URI or a path outside the table.
pub fn store_path(delta: &str) -> Option<String> {
    if delta.contains("://") || delta.starts_with('/') {
        return None;
    }
    let rel = uri_decode(delta)?;
    if rel.split('/').any(|s| s == ".." || s.is_empty()) {
        return None;
    }
    Some(format!("{BARS_PREFIX}/{rel}"))
}

/// µs since the epoch as the ISO timestamp Delta stats use, to the µs.
fn iso_micros(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

fn tag(tags: &BTreeMap<String, Option<String>>, key: &str) -> Option<String> {
    tags.get(key).cloned().flatten()
}

impl Add {
    pub fn from_file(f: &FileMeta, modification_ms: i64, data_change: bool) -> Self {
        let non_null = |v: i64| serde_json::json!({"ts": v, "open": v, "high": v, "low": v, "close": v, "volume": v});
        let stats = serde_json::json!({
            "numRecords": f.rows,
            "minValues": {"ts": iso_micros(f.min_ts)},
            "maxValues": {"ts": iso_micros(f.max_ts)},
            "nullCount": non_null(0),
        });
        let mut tags = BTreeMap::new();
        tags.insert(TAG_YEAR.to_string(), Some(f.year.to_string()));
        tags.insert(TAG_MIN_TS.to_string(), Some(f.min_ts.to_string()));
        tags.insert(TAG_MAX_TS.to_string(), Some(f.max_ts.to_string()));
        tags.insert(TAG_FOOTER.to_string(), Some(f.footer_bytes.to_string()));
        if !f.crc32.is_empty() {
            let list: Vec<String> = f.crc32.iter().map(u32::to_string).collect();
            tags.insert(TAG_CRC32.to_string(), Some(list.join(",")));
        }
        Add {
            path: delta_path(&f.path),
            partition_values: partition_values(f.interval, &f.symbol),
            size: f.bytes as i64,
            modification_time: modification_ms,
            data_change,
            stats: Some(stats.to_string()),
            tags: Some(tags),
        }
    }

    /// The tickvault record of this file; `Err` says what makes it not one of tickvault's.
    pub fn to_file(&self) -> Result<FileMeta, String> {
        let what = |m: &str| format!("add of {} {m}", self.path);
        let path = store_path(&self.path).ok_or_else(|| what("is not a path inside the table"))?;
        let value = |k: &str| self.partition_values.get(k).cloned().flatten();
        let symbol = value("symbol").ok_or_else(|| what("has no symbol partition value"))?;
        let symbol = Symbol::stored(&symbol).map_err(|e| what(&format!("has symbol: {e}")))?;
        let interval: Interval = value("timeframe")
            .ok_or_else(|| what("has no timeframe partition value"))?
            .parse()
            .map_err(|e| what(&format!("has timeframe: {e}")))?;
        let tags = self
            .tags
            .as_ref()
            .ok_or_else(|| what("lacks tickvault's tags (another writer's file)"))?;
        let num = |k: &str| -> Result<i64, String> {
            tag(tags, k)
                .ok_or_else(|| what(&format!("lacks tag {k}")))?
                .parse()
                .map_err(|_| what(&format!("has a tag {k} that is not a number")))
        };
        let crc32 = match tag(tags, TAG_CRC32) {
            None => vec![],
            Some(list) => list
                .split(',')
                .map(|c| c.parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| what("has a crc32 tag that is not a list of numbers"))?,
        };
        let stats: Value = serde_json::from_str(self.stats.as_deref().unwrap_or(""))
            .map_err(|e| what(&format!("has unreadable stats: {e}")))?;
        let rows = stats["numRecords"]
            .as_u64()
            .ok_or_else(|| what("has no numRecords in its stats"))?;
        let footer = num(TAG_FOOTER)?;
        Ok(FileMeta {
            path,
            symbol,
            interval,
            year: i32::try_from(num(TAG_YEAR)?).map_err(|_| what("has a year out of range"))?,
            rows,
            bytes: u64::try_from(self.size).map_err(|_| what("has a negative size"))?,
            min_ts: num(TAG_MIN_TS)?,
            max_ts: num(TAG_MAX_TS)?,
            footer_bytes: u64::try_from(footer).map_err(|_| what("has a negative footer"))?,
            crc32,
        })
    }
}

fn partition_values(interval: Interval, symbol: &Symbol) -> BTreeMap<String, Option<String>> {
    [
        ("timeframe".to_string(), Some(interval.to_string())),
        ("symbol".to_string(), Some(symbol.as_str().to_string())),
    ]
    .into()
}

impl Remove {
    /// The removal of `f` (whose record is known, so readers get its partition and size).
    pub fn of(path: &str, file: Option<&FileMeta>, removed_at_us: i64, data_change: bool) -> Self {
        Remove {
            path: delta_path(path),
            deletion_timestamp: Some(removed_at_us.div_euclid(1000)),
            data_change,
            extended_file_metadata: file.map(|_| true),
            partition_values: file.map(|f| partition_values(f.interval, &f.symbol)),
            size: file.map(|f| f.bytes as i64),
            tags: Some([(TAG_REMOVED_AT.to_string(), Some(removed_at_us.to_string()))].into()),
        }
    }

    pub fn to_tombstone(&self) -> Result<Tombstone, String> {
        let path = store_path(&self.path)
            .ok_or_else(|| format!("remove of {} is not a path inside the table", self.path))?;
        let exact = self
            .tags
            .as_ref()
            .and_then(|t| tag(t, TAG_REMOVED_AT))
            .and_then(|v| v.parse().ok());
        let removed_at = exact
            .or(self.deletion_timestamp.map(|ms| ms * 1000))
            .unwrap_or(0);
        Ok(Tombstone { path, removed_at })
    }
}

/// What Delta readers are told a commit did (`commitInfo.operation`).
fn delta_operation(operation: &str) -> &'static str {
    match operation {
        "compact" | "compaction" => "OPTIMIZE",
        "delete" => "DELETE",
        "convert" => "CONVERT",
        "create" => "CREATE TABLE",
        _ => "WRITE",
    }
}

/// A decoded log entry: the commit it makes, plus what only version 0 (or a foreign writer) has.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub commit: Commit,
    pub protocol: Option<Protocol>,
    pub metadata: Option<Metadata>,
    /// Removes of files the table no longer holds (a converted store's tombstones, version 0).
    pub tombstones: Vec<Tombstone>,
}

/// The JSON lines of commit `commit` (files it removes looked up in `removed`).
pub fn encode_commit(
    commit: &Commit,
    protocol: Option<&Protocol>,
    metadata: Option<&Metadata>,
    removed: &BTreeMap<String, FileMeta>,
    tombstones: &[Tombstone],
) -> Vec<u8> {
    let ms = commit.committed_at.div_euclid(1000);
    // A compaction rewrites rows without changing them: streaming readers skip it.
    let data_change = !matches!(commit.operation.as_str(), "compact" | "compaction");
    let mut actions = Vec::new();
    actions.push(Action::CommitInfo(serde_json::json!({
        "timestamp": ms,
        "operation": delta_operation(&commit.operation),
        "operationParameters": {"tickvault": commit.operation},
        "engineInfo": ENGINE,
        "tickvaultOperation": commit.operation,
        "tickvaultCommittedAt": commit.committed_at,
        "isBlindAppend": commit.remove.is_empty(),
    })));
    if let Some(p) = protocol {
        actions.push(Action::Protocol(p.clone()));
    }
    if let Some(m) = metadata {
        actions.push(Action::MetaData(m.clone()));
    }
    for path in &commit.remove {
        let file = removed.get(path);
        actions.push(Action::Remove(Remove::of(
            path,
            file,
            commit.committed_at,
            data_change,
        )));
    }
    for t in tombstones {
        actions.push(Action::Remove(Remove::of(
            &t.path,
            None,
            t.removed_at,
            false,
        )));
    }
    for f in &commit.add {
        actions.push(Action::Add(Add::from_file(f, ms, data_change)));
    }
    let mut out = Vec::new();
    for a in actions {
        serde_json::to_writer(&mut out, &a).expect("actions serialize");
        out.push(b'\n');
    }
    out
}

/// Decodes log entry `version`. `Err` is the reason it is not a commit tickvault can apply: a
/// torn or garbage entry, or one written by another Delta writer (an unknown action, a file
/// without tickvault's record, a change of protocol or metadata after version 0).
pub fn decode_commit(version: u64, bytes: &[u8]) -> Result<Entry, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    let mut entry = Entry {
        commit: Commit {
            seq: Seq(version),
            committed_at: 0,
            operation: String::new(),
            add: vec![],
            remove: vec![],
        },
        protocol: None,
        metadata: None,
        tombstones: vec![],
    };
    let mut lines = 0;
    let mut latest_removal_ms = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("line {} is not JSON: {e}", i + 1))?;
        let key = match value.as_object() {
            Some(o) if o.len() == 1 => o.keys().next().cloned().unwrap_or_default(),
            _ => return Err(format!("line {} is not one Delta action", i + 1)),
        };
        let action: Action = match serde_json::from_value(value) {
            Ok(a) => a,
            Err(e) if is_known(&key) => {
                return Err(format!("line {}: action {key} is malformed: {e}", i + 1));
            }
            Err(_) => {
                return Err(format!(
                    "line {}: action {key:?}, which tickvault does not understand \
                     (another Delta writer's commit?)",
                    i + 1
                ));
            }
        };
        match action {
            Action::CommitInfo(info) => {
                entry.commit.operation = info["tickvaultOperation"]
                    .as_str()
                    .or(info["operation"].as_str())
                    .unwrap_or("")
                    .to_string();
                entry.commit.committed_at = info["tickvaultCommittedAt"]
                    .as_i64()
                    .or(info["timestamp"].as_i64().map(|ms| ms * 1000))
                    .unwrap_or(0);
            }
            Action::Protocol(p) => {
                if version != 0 {
                    return Err(format!(
                        "it changes the protocol to {}/{} (another Delta writer's commit)",
                        p.min_reader_version, p.min_writer_version
                    ));
                }
                entry.protocol = Some(p);
            }
            Action::MetaData(m) => {
                if version != 0 {
                    return Err(
                        "it changes the table's metadata (another Delta writer's commit)".into(),
                    );
                }
                entry.metadata = Some(m);
            }
            Action::Add(a) => entry.commit.add.push(a.to_file()?),
            Action::Remove(r) => {
                let t = r.to_tombstone()?;
                latest_removal_ms = latest_removal_ms.max(r.deletion_timestamp);
                if version == 0 {
                    entry.tombstones.push(t);
                } else {
                    entry.commit.remove.push(t.path);
                }
            }
            Action::Txn(_) => {
                return Err("it has a txn action (another Delta writer's commit)".into());
            }
        }
    }
    if lines == 0 {
        return Err("it is empty (a torn write?)".into());
    }
    if entry.commit.committed_at == 0 {
        entry.commit.committed_at = latest_removal_ms.unwrap_or(0) * 1000;
    }
    if version == 0 {
        let protocol = entry.protocol.as_ref().ok_or("version 0 has no protocol")?;
        let metadata = entry.metadata.as_ref().ok_or("version 0 has no metaData")?;
        if let Some(p) = protocol_problem(protocol) {
            return Err(p);
        }
        if let Some(p) = metadata.problem() {
            return Err(format!("its metaData has {p}"));
        }
    }
    Ok(entry)
}

fn is_known(key: &str) -> bool {
    matches!(
        key,
        "protocol" | "metaData" | "add" | "remove" | "commitInfo" | "txn"
    )
}

/// Why tickvault cannot write under this protocol, if it cannot.
pub fn protocol_problem(p: &Protocol) -> Option<String> {
    let ours = Protocol::tickvault();
    (p != &ours).then(|| {
        format!(
            "the protocol is reader {} / writer {} with features {:?}, not tickvault's \
             ({MIN_READER_VERSION}/{MIN_WRITER_VERSION} with {WRITER_FEATURE})",
            p.min_reader_version,
            p.min_writer_version,
            p.writer_features.clone().unwrap_or_default()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(symbol: &str) -> FileMeta {
        let key = crate::storage::PartitionKey {
            interval: Interval::D1,
            symbol: Symbol::new(symbol).unwrap(),
            year: 2024,
        };
        FileMeta {
            path: crate::storage::ParquetFilePath::new_unique(key).to_string(),
            symbol: Symbol::new(symbol).unwrap(),
            interval: Interval::D1,
            year: 2024,
            rows: 3,
            bytes: 1234,
            min_ts: 1_704_153_600_000_001,
            max_ts: 1_704_326_400_000_000,
            footer_bytes: 321,
            crc32: vec![1, 4_000_000_000],
        }
    }

    #[test]
    fn paths_are_encoded_once_more_and_relative_to_the_table() {
        let f = file("^GSPC");
        let add = Add::from_file(&f, 0, true);
        assert!(
            add.path
                .starts_with("timeframe=1d/symbol=%255EGSPC/year=2024/"),
            "{}",
            add.path
        );
        assert_eq!(store_path(&add.path).unwrap(), f.path);
        assert_eq!(add.partition_values["symbol"].as_deref(), Some("^GSPC"));
        let ab = Add::from_file(&file("A/B"), 0, true);
        assert!(
            ab.path.starts_with("timeframe=1d/symbol=A%252FB/"),
            "{}",
            ab.path
        );
        assert_eq!(store_path("../x"), None);
        assert_eq!(store_path("s3://b/x"), None);
    }

    #[test]
    fn a_file_record_round_trips_through_an_add() {
        let f = file("BRK.B");
        let add = Add::from_file(&f, 5, true);
        assert_eq!(add.to_file().unwrap(), f);
        let stats: Value = serde_json::from_str(add.stats.as_deref().unwrap()).unwrap();
        assert_eq!(stats["numRecords"], 3);
        assert_eq!(stats["minValues"]["ts"], "2024-01-02T00:00:00.000001Z");
        let mut bare = f.clone();
        bare.crc32.clear();
        assert_eq!(Add::from_file(&bare, 5, true).to_file().unwrap(), bare);
    }

    #[test]
    fn a_commit_round_trips_and_foreign_actions_are_named() {
        let f = file("A");
        let commit = Commit {
            seq: Seq(3),
            committed_at: 1_700_000_000_123_456,
            operation: "import".into(),
            add: vec![f.clone()],
            remove: vec!["bars/timeframe=1d/symbol=A/year=2024/x.parquet".into()],
        };
        let lines = encode_commit(&commit, None, None, &BTreeMap::new(), &[]);
        let entry = decode_commit(3, &lines).unwrap();
        assert_eq!(entry.commit, commit);
        let mut foreign = lines.clone();
        foreign.extend_from_slice(b"{\"cdc\":{\"path\":\"x\"}}\n");
        let err = decode_commit(3, &foreign).unwrap_err();
        assert!(err.contains("action \"cdc\""), "{err}");
        let mut proto = lines.clone();
        proto
            .extend_from_slice(b"{\"protocol\":{\"minReaderVersion\":1,\"minWriterVersion\":2}}\n");
        assert!(decode_commit(3, &proto).unwrap_err().contains("protocol"));
        assert!(decode_commit(3, b"").unwrap_err().contains("empty"));
        assert!(
            decode_commit(3, b"{\"add\":")
                .unwrap_err()
                .contains("line 1")
        );
        let other = b"{\"add\":{\"path\":\"part-0.parquet\",\"partitionValues\":{},\"size\":1,\"modificationTime\":0,\"dataChange\":true}}\n";
        assert!(decode_commit(3, other).unwrap_err().contains("symbol"));
    }
}
