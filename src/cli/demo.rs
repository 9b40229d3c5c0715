//! `tickvault demo`: a real sample of daily bars, imported into an empty store, then served.

use std::path::PathBuf;
use std::sync::Arc;

use crate::Store;
use crate::import::ImportOptions;

/// Alpha Vantage daily bars of 15 S&P 500 stocks, 1999-2021 (see tests/fixtures/NOTICE.md),
/// embedded so the demo works from any directory.
const SAMPLE: &[(&str, &[u8])] = &[
    (
        "DA-AAPL-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-AAPL-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-AMZN-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-AMZN-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-BA-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-BA-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-DIS-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-DIS-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-GOOGL-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-GOOGL-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-GS-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-GS-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-INTC-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-INTC-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-JNJ-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-JNJ-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-JPM-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-JPM-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-KO-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-KO-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-MSFT-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-MSFT-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-NVDA-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-NVDA-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-TSLA-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-TSLA-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-WMT-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-WMT-T-2021-04-21.csv.gz"),
    ),
    (
        "DA-XOM-T-2021-04-21.csv.gz",
        include_bytes!("../../tests/fixtures/sample/DA-XOM-T-2021-04-21.csv.gz"),
    ),
];

/// Imports the sample if the store holds nothing yet; returns the rows imported (0 if the store
/// already had data, which the demo then serves as it is).
pub async fn import_sample_if_empty(store: &Store) -> crate::Result<usize> {
    if !store.catalog().snapshot().partitions.is_empty() {
        return Ok(0);
    }
    let dir = std::env::temp_dir().join(format!("tickvault-demo-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(io_error)?;
    let mut files: Vec<PathBuf> = Vec::new();
    for (name, bytes) in SAMPLE {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(io_error)?;
        files.push(path);
    }
    let options = ImportOptions {
        symbol_pattern: Some(regex::Regex::new("DA-(.+)-T-").expect("valid regex")),
        ..ImportOptions::default()
    };
    let result = store.import_files(&files, Arc::new(options), || {}).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result?.rows)
}

fn io_error(e: std::io::Error) -> crate::Error {
    crate::Error::InvalidInput(format!(
        "writing the demo sample to a temporary directory: {e}"
    ))
}

/// Example requests against a server at `base` (e.g. `http://127.0.0.1:8080`).
pub fn examples(base: &str) -> String {
    format!(
        r#"Try:
  curl '{base}/v1/symbols'
  curl '{base}/v1/bars/AAPL?start=2021-04-01&end=2021-04-22'
  curl '{base}/v1/bars?symbols=AAPL,MSFT,NVDA&start=2021-01-01&format=csv'
  curl -i '{base}/v1/bars/AAPL?start=2020-08-26&end=2020-09-03&adjust=all'     # split- and dividend-adjusted
  curl '{base}/v1/corporate-actions?symbols=AAPL,TSLA'
  curl '{base}/v1/sql' --data-binary "SELECT symbol, max(close) AS high FROM bars WHERE timeframe = '1d' AND ts >= '2020-01-01' GROUP BY symbol ORDER BY high DESC"
  curl '{base}/v1/sql?q=SELECT+*+FROM+daily_returns+WHERE+symbol=%27TSLA%27+ORDER+BY+day+DESC+LIMIT+5'
  python3 -c "import pyarrow as pa, urllib.request as u; t = pa.ipc.open_stream(u.urlopen('{base}/v1/bars?symbols=AAPL,MSFT&format=arrow')).read_all(); print(t.num_rows, 'rows'); print(t.slice(t.num_rows - 2))"
  curl '{base}/v1/write' -H 'Content-Type: application/x-ndjson' --data-binary '{{"symbol":"AAPL","timeframe":"1d","ts":"2021-04-22","open":134.0,"high":135.5,"low":131.9,"close":132.0,"volume":84000000}}'
  curl '{base}/v1/sql' --data-binary "SELECT * FROM latest"
  curl '{base}/metrics'
"#
    )
}
