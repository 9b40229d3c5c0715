//! The object store in the Prometheus text format: requests by kind, bytes moved, and the
//! disk cache's hits, misses, evictions and size.

use std::fmt::Write;

use super::metrics::header;
use crate::Store;
use crate::storage::RequestKind;

pub(super) fn render(store: &Store) -> String {
    let mut out = String::new();
    let c = store.requests();
    header(
        &mut out,
        "tickvault_store_requests_total",
        "counter",
        "Object store requests by kind (a LIST is one listing, a DELETE one object).",
    );
    for kind in RequestKind::ALL {
        let (k, n) = (kind.as_str(), c.get(kind));
        let _ = writeln!(out, "tickvault_store_requests_total{{kind=\"{k}\"}} {n}");
    }
    header(
        &mut out,
        "tickvault_store_bytes_total",
        "counter",
        "Bytes read from and written to the object store.",
    );
    for (direction, n) in [("read", c.bytes_read), ("written", c.bytes_written)] {
        let _ = writeln!(
            out,
            "tickvault_store_bytes_total{{direction=\"{direction}\"}} {n}"
        );
    }
    let Some(cache) = store.disk_cache() else {
        return out;
    };
    let k = cache.counts();
    header(
        &mut out,
        "tickvault_disk_cache_requests_total",
        "counter",
        "Parquet file reads by the disk cache's answer.",
    );
    for (result, n) in [("hit", k.hits), ("miss", k.misses)] {
        let _ = writeln!(
            out,
            "tickvault_disk_cache_requests_total{{result=\"{result}\"}} {n}"
        );
    }
    for (name, kind, help, n) in [
        (
            "tickvault_disk_cache_evictions_total",
            "counter",
            "Files evicted (least recently used).",
            k.evictions,
        ),
        (
            "tickvault_disk_cache_bytes",
            "gauge",
            "Bytes the disk cache holds.",
            k.bytes,
        ),
        (
            "tickvault_disk_cache_files",
            "gauge",
            "Files the disk cache holds.",
            k.files,
        ),
    ] {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::storage::StoreSettings;
    use crate::{Store, StoreOptions};

    #[tokio::test]
    async fn renders_requests_and_the_disk_cache() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            storage: StoreSettings {
                cache_dir: Some(dir.path().join("cache")),
                cache_max_bytes: 1 << 30,
                ..Default::default()
            },
            ..Default::default()
        };
        let url = dir.path().join("store").display().to_string();
        let store = Store::open_with_options(&url, &options).await.unwrap();
        let csv = "symbol,interval,ts,open,high,low,close,volume\nA,1d,2021-01-04,1,2,1,2,10\n";
        let path = dir.path().join("a.csv");
        std::fs::write(&path, csv).unwrap();
        let import = std::sync::Arc::new(crate::import::ImportOptions {
            interval: "1d".parse().unwrap(),
            symbol: None,
            symbol_pattern: None,
            tz: chrono_tz::UTC,
            ambiguous: Default::default(),
            epoch_unit: None,
            format: None,
            skip_events: false,
            bad_events: Default::default(),
        });
        store.import_files(&[path], import, || {}).await.unwrap();
        for _ in 0..2 {
            store.query("SELECT sum(close) FROM bars").await.unwrap();
        }
        let text = super::render(&store);
        // Version 0 of the table's log (created as the writer opened), one data file, one commit.
        assert!(
            text.contains("tickvault_store_requests_total{kind=\"put\"} 3\n"),
            "{text}"
        );
        // The first read fills the cache; the second query's reads are hits.
        assert!(
            text.contains("tickvault_disk_cache_requests_total{result=\"miss\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("result=\"hit\"} 0\n"), "{text}");
        assert!(text.contains("tickvault_disk_cache_files 1\n"), "{text}");
        assert!(
            text.contains("# TYPE tickvault_disk_cache_bytes gauge"),
            "{text}"
        );
    }
}
