//! The HTTP API end to end: a real server on an ephemeral loopback port, a real HTTP client.
//! In-process servers cover endpoints, formats, errors, auth and limits; the `tickvault` binary
//! covers the demo, streaming memory and graceful shutdown.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use tickvault::config::{ByteSize, Config, Seconds, Token};
use tickvault::import::ImportOptions;
use tickvault::model::Interval;
use tickvault::server::{Server, router};
use tickvault::{LoadRequest, Store, StoreOptions};

use crate::common::{MINUTE, T2021, row, series};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A memory store holding the real daily bars of AAPL, MSFT and BRK.B (5,402 rows each).
async fn daily_store(options: &StoreOptions) -> Arc<Store> {
    let store = Store::open_with_options("memory://", options)
        .await
        .unwrap();
    let files: Vec<PathBuf> = ["AAPL", "MSFT", "BRK.B"]
        .iter()
        .map(|s| fixtures().join(format!("DA-{s}-T-2021-04-21.csv")))
        .collect();
    let opts = ImportOptions {
        symbol_pattern: Some(regex::Regex::new("DA-(.+)-T-").unwrap()),
        ..ImportOptions::default()
    };
    store
        .import_files(&files, Arc::new(opts), || {})
        .await
        .unwrap();
    Arc::new(store)
}

pub(crate) struct TestServer {
    base: String,
    pub(crate) client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tickvault::server::Error>>,
}

impl TestServer {
    pub(crate) async fn start(mut config: Config, store: Arc<Store>) -> Self {
        config.listen = "127.0.0.1:0".into();
        let server = Server::bind(config).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move { Ok(store) }, async move {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        // Ready once the store is set (it is at once: the future above is immediate).
        for _ in 0..100 {
            if let Ok(r) = client.get(format!("{base}/ready")).send().await
                && r.status() == StatusCode::OK
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Self {
            base,
            client,
            stop: Some(stop),
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `GET /v1/status` as JSON.
    pub(crate) async fn status(&self) -> Value {
        self.get("/v1/status").await.json().await.unwrap()
    }

    /// `POST path` with this content type and body.
    pub(crate) async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post_sql(&self, sql: &str) -> reqwest::Response {
        self.client
            .post(self.url("/v1/sql"))
            .body(sql.to_string())
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Asserts the status and that the body is a JSON error with this code; returns the message.
pub(crate) async fn expect_error(
    response: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> String {
    assert_eq!(
        response.status(),
        status,
        "{:?}",
        response.url().to_string()
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    body["error"].as_str().unwrap().to_string()
}

fn arrow_batches(bytes: &Bytes) -> Vec<RecordBatch> {
    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_in_every_format_equals_the_library() {
    let store = daily_store(&StoreOptions::default()).await;
    let server = TestServer::start(Config::default(), Arc::clone(&store)).await;
    let sql =
        "SELECT symbol, ts, close, volume FROM bars WHERE ts >= '2021-04-01' ORDER BY ts, symbol";
    let expected = store.query(sql).await.unwrap();
    let n = rows(&expected);
    assert_eq!(
        n,
        3 * 14,
        "14 trading days of April 2021 before the 21st, 3 symbols"
    );

    // JSON by default, by GET and by POST (text and JSON bodies).
    let q = url::form_urlencoded::byte_serialize(sql.as_bytes()).collect::<String>();
    let by_get: Value = server
        .get(&format!("/v1/sql?q={q}"))
        .await
        .json()
        .await
        .unwrap();
    let by_post: Value = server.post_sql(sql).await.json().await.unwrap();
    let by_json: Value = server
        .client
        .post(server.url("/v1/sql"))
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_get, by_post);
    assert_eq!(by_get, by_json);
    let objects = by_get.as_array().unwrap();
    assert_eq!(objects.len(), n);
    let closes = expected[0]
        .column(2)
        .as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(
        objects[0]["symbol"],
        expected[0].column(0).as_string::<i32>().value(0)
    );
    assert_eq!(objects[0]["close"].as_f64().unwrap(), closes.value(0));

    // The same rows in every other format, chosen by ?format= and by Accept.
    let fetch = |format: &'static str, accept: Option<&'static str>| {
        let request = match accept {
            Some(a) => server
                .client
                .post(server.url("/v1/sql"))
                .header("accept", a),
            None => server
                .client
                .post(server.url(&format!("/v1/sql?format={format}"))),
        };
        async move {
            let r = request.body(sql).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{format}");
            let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
            (content_type, r.bytes().await.unwrap())
        }
    };
    for accept in [None, Some("application/x-ndjson")] {
        let (ct, body) = fetch("ndjson", accept).await;
        assert_eq!(ct, "application/x-ndjson");
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines, *objects);
    }
    for accept in [None, Some("text/csv")] {
        let (ct, body) = fetch("csv", accept).await;
        assert!(ct.starts_with("text/csv"), "{ct}");
        let text = String::from_utf8(body.to_vec()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), "symbol,ts,close,volume");
        assert_eq!(lines.count(), n);
    }
    for accept in [None, Some("application/vnd.apache.arrow.stream")] {
        let (ct, body) = fetch("arrow", accept).await;
        assert_eq!(ct, "application/vnd.apache.arrow.stream");
        let got = arrow_batches(&body);
        assert_eq!(
            arrow::compute::concat_batches(&got[0].schema(), &got).unwrap(),
            arrow::compute::concat_batches(&expected[0].schema(), &expected).unwrap()
        );
    }
    for accept in [None, Some("application/vnd.apache.parquet")] {
        let (ct, body) = fetch("parquet", accept).await;
        assert_eq!(ct, "application/vnd.apache.parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
            .unwrap()
            .build()
            .unwrap();
        let got: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(rows(&got), n);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bars_over_arrow_equal_the_library_loader() {
    let store = daily_store(&StoreOptions::default()).await;
    let server = TestServer::start(Config::default(), Arc::clone(&store)).await;

    // Many symbols, ordered by (ts, symbol): the Arrow endpoint against the library API.
    let response = server
        .get("/v1/bars?symbols=AAPL,MSFT,BRK.B&start=2020-01-01&end=2021-01-01&format=arrow")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let got = arrow_batches(&response.bytes().await.unwrap());
    let expected = store
        .load_bars_collect(&LoadRequest {
            symbols: vec!["AAPL".into(), "MSFT".into(), "BRK.B".into()],
            interval: Interval::D1,
            start: Some(tickvault::model::time::parse_time("2020-01-01").unwrap()),
            end: Some(tickvault::model::time::parse_time("2021-01-01").unwrap()),
            columns: None,
            adjustment: tickvault::adjust::Adjustment::NONE,
        })
        .await
        .unwrap();
    assert_eq!(rows(&got), 3 * 253, "253 trading days in 2020");
    assert_eq!(
        arrow::compute::concat_batches(&got[0].schema(), &got).unwrap(),
        arrow::compute::concat_batches(&expected[0].schema(), &expected).unwrap()
    );

    // One symbol with chosen columns, JSON; start inclusive, end exclusive; RFC 3339 times.
    let one: Value = server
        .get("/v1/bars/AAPL?start=2021-04-19T00:00:00Z&end=2021-04-21&columns=ts,close")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        one,
        serde_json::json!([
            {"ts": "2021-04-19T00:00:00Z", "close": 134.84},
            {"ts": "2021-04-20T00:00:00Z", "close": 133.11}
        ])
    );
    // A symbol that needs escaping in a path.
    let brk: Value = server
        .get("/v1/bars/BRK.B?start=2021-04-20&columns=symbol,close")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(brk.as_array().unwrap().len(), 2);
    assert_eq!(brk[0]["symbol"], "BRK.B");
    // An unknown symbol is an empty result, not an error.
    let none = server.get("/v1/bars/NOPE").await;
    assert_eq!(none.status(), StatusCode::OK);
    assert_eq!(none.json::<Value>().await.unwrap(), serde_json::json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_status_health_and_metrics() {
    let store = daily_store(&StoreOptions::default()).await;
    let server = TestServer::start(Config::default(), Arc::clone(&store)).await;
    assert_eq!(server.get("/health").await.status(), StatusCode::OK);
    assert_eq!(
        server.get("/ready").await.json::<Value>().await.unwrap()["ready"],
        true
    );
    let symbols: Value = server.get("/v1/symbols").await.json().await.unwrap();
    let symbols = symbols.as_array().unwrap();
    assert_eq!(
        symbols
            .iter()
            .map(|s| s["symbol"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["AAPL", "BRK.B", "MSFT"]
    );
    for s in symbols {
        assert_eq!(s["rows"], 5402);
        assert_eq!(s["timeframe"], "1d");
        assert_eq!(s["first_ts"], "1999-11-01T00:00:00Z");
        assert_eq!(s["last_ts"], "2021-04-21T00:00:00Z");
    }
    let status = server.status().await;
    assert_eq!(status["symbols"], 3);
    assert_eq!(status["rows"], 3 * 5402);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let files = status["files"].as_u64().unwrap();
    assert!(
        files >= 3 * 23,
        "one file per symbol and year at least: {files}"
    );

    // Metrics count what was asked above, by route and status, and errors by code.
    let _ = server.post_sql("SELEC 1").await;
    let sent = server
        .get("/v1/bars/AAPL?format=csv")
        .await
        .bytes()
        .await
        .unwrap();
    let text = server.get("/metrics").await.text().await.unwrap();
    for line in [
        "tickvault_http_requests_total{route=\"/v1/symbols\",method=\"GET\",status=\"200\"} 1"
            .to_string(),
        "tickvault_http_requests_total{route=\"/v1/sql\",method=\"POST\",status=\"400\"} 1"
            .to_string(),
        "tickvault_errors_total{code=\"sql_error\"} 1".to_string(),
        "tickvault_http_request_duration_seconds_count{route=\"/v1/bars/{symbol}\"} 1".to_string(),
        format!("tickvault_catalog_files {files}"),
        "tickvault_catalog_rows 16206".to_string(),
        "tickvault_query_rows_total 5402".to_string(),
        format!("tickvault_query_bytes_total {}", sent.len()),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_exactly_the_routes_served() {
    let store = daily_store(&StoreOptions::default()).await;
    let server = TestServer::start(Config::default(), store).await;
    let doc: Value = server.get("/v1/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let (_, routes) = router(tickvault::server::App::new(Config::default()));
    let served: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, served);
    // Every documented route is really there: no 405, and no 404 but for a missing resource
    // (an untracked symbol), never for the route.
    for (method, path) in &documented {
        let path = path.replace("{symbol}", "AAPL").replace("{job}", "compact");
        let r = server
            .client
            .request(method.parse().unwrap(), server.url(&path))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        if status == StatusCode::NOT_FOUND {
            let body: Value = r.json().await.unwrap();
            assert_ne!(body["code"], "not_found", "{method} {path}: {body}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let store = daily_store(&StoreOptions::default()).await;
    let config = Config {
        max_body: ByteSize(4096),
        ..Config::default()
    };
    let server = TestServer::start(config, Arc::clone(&store)).await;
    let before = tickvault::catalog::Catalog::snapshot(store.catalog()).seq;

    let m = expect_error(
        server.post_sql("SELEC close FROM bars").await,
        StatusCode::BAD_REQUEST,
        "sql_error",
    )
    .await;
    assert!(m.contains("SELEC"), "DataFusion's message: {m}");
    let m = expect_error(
        server.post_sql("SELECT nope FROM bars").await,
        StatusCode::BAD_REQUEST,
        "sql_error",
    )
    .await;
    assert!(m.contains("nope"), "{m}");
    for sql in [
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/'",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO bars SELECT * FROM bars",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "DROP VIEW daily_returns",
        "SET datafusion.execution.batch_size = 1",
        "ALTER TABLE bars ADD COLUMN x INT",
        "SELECT * INTO t FROM bars",
    ] {
        let m = expect_error(
            server.post_sql(sql).await,
            StatusCode::FORBIDDEN,
            "read_only",
        )
        .await;
        assert!(m.starts_with("read-only"), "{sql}: {m}");
    }
    // A query whose error quotes the guard's words is still a query that failed.
    expect_error(
        server
            .post_sql("SELECT 'DML not supported', 'DML not supported'")
            .await,
        StatusCode::BAD_REQUEST,
        "sql_error",
    )
    .await;
    // No local files either way: URL tables are off.
    let r = server.post_sql("SELECT * FROM '/etc/passwd'").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let m = expect_error(
        server.get("/v1/bars/AAPL?start=2021-13-01").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("start:"), "{m}");
    let m = expect_error(
        server.get("/v1/bars/AAPL?end=tomorrow").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("end:"), "{m}");
    let m = expect_error(
        server.get("/v1/bars/AAPL?timeframe=2d").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("timeframe: unknown timeframe \"2d\""), "{m}");
    let m = expect_error(
        server.get("/v1/bars/AAPL?interval=2d").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("interval: unknown timeframe \"2d\""), "{m}");
    let m = expect_error(
        server.get("/v1/bars/AAPL?timeframe=1d&interval=1m").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(
        m.starts_with("timeframe: timeframe \"1d\" and interval \"1m\" disagree"),
        "{m}"
    );
    let m = expect_error(
        server.get("/v1/bars/AAPL?columns=ts,bogus").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("columns:") && m.contains("bogus"), "{m}");
    let m = expect_error(
        server
            .get("/v1/bars/AAPL?start=2021-02-01&end=2021-01-01")
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("end:"), "{m}");
    let m = expect_error(
        server.get("/v1/bars?timeframe=1d").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("symbols:"), "{m}");
    let m = expect_error(
        server.get("/v1/sql?q=SELECT+1&format=xml").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(m.starts_with("format:"), "{m}");
    expect_error(
        server.get("/v1/sql").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    expect_error(
        server.get("/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        server
            .client
            .delete(server.url("/v1/sql"))
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let huge = format!("SELECT 1 -- {}", "x".repeat(8192));
    expect_error(
        server.post_sql(&huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    // Nothing above changed the store.
    assert_eq!(
        tickvault::catalog::Catalog::snapshot(store.catalog()).seq,
        before
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes() {
    let store = daily_store(&StoreOptions::default()).await;
    let config = Config {
        tokens: vec![
            "read:r3ad-token".parse::<Token>().unwrap(),
            "write:wr1te-token".parse::<Token>().unwrap(),
        ],
        ..Config::default()
    };
    let server = TestServer::start(config, store).await;
    let call = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut request = server.client.request(method, server.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move { request.body("SELECT 1 AS one").send().await.unwrap() }
    };
    use reqwest::Method;
    // Probes are open.
    assert_eq!(
        call(Method::GET, "/health", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(Method::GET, "/ready", None).await.status(),
        StatusCode::OK
    );
    // Everything else needs a known token.
    for path in ["/v1/sql", "/v1/symbols", "/metrics", "/v1/bars/AAPL"] {
        let method = if path == "/v1/sql" {
            Method::POST
        } else {
            Method::GET
        };
        let r = call(method.clone(), path, None).await;
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"tickvault\""
        );
        expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
        expect_error(
            call(method.clone(), path, Some("guess")).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
        assert_eq!(
            call(method.clone(), path, Some("r3ad-token"))
                .await
                .status(),
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            call(method, path, Some("wr1te-token")).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    // Write routes need the write scope.
    let m = expect_error(
        call(Method::POST, "/v1/compact", Some("r3ad-token")).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert!(m.contains("write"), "{m}");
    assert_eq!(
        call(Method::POST, "/v1/compact", Some("wr1te-token"))
            .await
            .status(),
        StatusCode::OK
    );
    server.stop().await;

    // Without tokens only loopback may be bound.
    let open = Config {
        listen: "0.0.0.0:0".into(),
        ..Config::default()
    };
    let e = Server::bind(open).await.err().expect("refused").to_string();
    assert!(e.contains("without tokens") && e.contains("0.0.0.0"), "{e}");
}

/// Polls `/v1/status` until `done` holds; fails naming `what` after 10 s.
async fn wait_for_status(server: &TestServer, done: impl Fn(&Value) -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = server.status().await;
        if done(&status) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited 10 s for: {what}; status {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A query that runs for seconds on the daily fixture: a cross join of 16,206 rows with itself.
const SLOW_SQL: &str = "SELECT count(*) FROM bars a, bars b WHERE a.close + b.close > 0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_memory_and_concurrency_limits() {
    // Time limit: 504, and the query is cancelled.
    let store = daily_store(&StoreOptions::default()).await;
    let config = Config {
        query_timeout: Seconds(0.3),
        ..Config::default()
    };
    let server = TestServer::start(config, store).await;
    let started = std::time::Instant::now();
    let m = expect_error(
        server.post_sql(SLOW_SQL).await,
        StatusCode::GATEWAY_TIMEOUT,
        "query_timeout",
    )
    .await;
    assert!(m.contains("time limit"), "{m}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The query is cancelled, not left running on the query runtime.
    wait_for_status(
        &server,
        |s| s["query_tasks"] == 0,
        "the timed-out query stops",
    )
    .await;
    server.stop().await;

    // Memory limit: a sort that needs more than the pool holds fails with a clear message.
    let store = daily_store(&StoreOptions {
        query_memory_limit: Some(64 << 10),
        ..Default::default()
    })
    .await;
    let server = TestServer::start(Config::default(), store).await;
    let m = expect_error(
        server.post_sql("SELECT * FROM bars ORDER BY close").await,
        StatusCode::INSUFFICIENT_STORAGE,
        "memory_limit",
    )
    .await;
    assert!(m.contains("memory"), "{m}");
    // Small queries still run under the same limit.
    assert_eq!(
        server.post_sql("SELECT count(*) FROM bars").await.status(),
        StatusCode::OK
    );
    server.stop().await;

    // Concurrency: one slot; a second query while the first runs gets 429 with Retry-After.
    let store = daily_store(&StoreOptions::default()).await;
    let config = Config {
        max_concurrent_queries: 1,
        query_timeout: Seconds(5.0),
        ..Config::default()
    };
    let server = TestServer::start(config, store).await;
    let slow = {
        let request = server.client.post(server.url("/v1/sql")).body(SLOW_SQL);
        tokio::spawn(async move { request.send().await.unwrap().status() })
    };
    // Wait until the slow query holds the slot (under a loaded machine its request may start
    // late), then ask for a second one. Status answers while the query runs: queries have a
    // runtime of their own.
    wait_for_status(
        &server,
        |s| s["queries_running"] == 1,
        "the slow query starts",
    )
    .await;
    let r = server.post_sql("SELECT 1").await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a second query ran while the first held the only slot"
    );
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_queries").await;
    let _ = slow.await.unwrap();
    // The slot is free again once the slow response's body is done (the client has its
    // status before the server has dropped the body).
    wait_for_status(
        &server,
        |s| s["queries_running"] == 0,
        "the slot is released",
    )
    .await;
    assert_eq!(server.post_sql("SELECT 1").await.status(), StatusCode::OK);
    server.stop().await;
}

// ---- the binary ----

/// `tickvault serve` (or `demo`) on an ephemeral port; returns the child and the base URL it
/// printed.
pub(crate) fn spawn_server(store: &Path, command: &str, extra: &[&str]) -> (ServerProcess, String) {
    spawn_server_env(store.as_os_str(), command, extra, &[])
}

/// `spawn_server` with extra environment (S3 settings).
pub(crate) fn spawn_server_env(
    store: &std::ffi::OsStr,
    command: &str,
    extra: &[&str],
    env: &[(&str, String)],
) -> (ServerProcess, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickvault"))
        .arg("--store")
        .arg(store)
        .arg(command)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("TICKVAULT_STORE")
        .env_remove("TICKVAULT_TOKENS")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let base = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("server exited before serving:\n{seen}");
        }
        seen.push_str(&line);
        if let Some(i) = line.find("on http://") {
            break line[i + 3..].trim().to_string();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    (ServerProcess(child), base)
}

/// A spawned server that is killed when dropped, so a failing test leaves no server behind.
pub(crate) struct ServerProcess(Child);

impl std::ops::Deref for ServerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already gone after a test's own kill and wait; otherwise stop it now.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Peak resident memory of a process, in bytes (VmHWM).
pub(crate) fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

async fn get_text(url: &str) -> String {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn demo_serves_the_real_sample_from_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let (mut child, base) = spawn_server(&store, "demo", &[]);
    let symbols: Value =
        serde_json::from_str(&get_text(&format!("{base}/v1/symbols")).await).unwrap();
    let names: Vec<&str> = symbols
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "AAPL", "AMZN", "BA", "DIS", "GOOGL", "GS", "INTC", "JNJ", "JPM", "KO", "MSFT", "NVDA",
            "TSLA", "WMT", "XOM"
        ]
    );
    let csv = get_text(&format!(
        "{base}/v1/bars/TSLA?start=2021-04-20&columns=ts,close&format=csv"
    ))
    .await;
    // TSLA closed at 718.99 on 2021-04-20 and 744.12 on 2021-04-21 (the source file).
    assert_eq!(
        csv,
        "ts,close\n2021-04-20T00:00:00Z,718.99\n2021-04-21T00:00:00Z,744.12\n"
    );
    // The sample's split and dividend columns became corporate actions: AAPL's close of
    // 2020-08-28 adjusted as Alpha Vantage's adjusted_close (124.405824223).
    let adjusted = reqwest::get(format!(
        "{base}/v1/bars/AAPL?start=2020-08-28&end=2020-08-29&columns=close&adjust=all&format=csv"
    ))
    .await
    .unwrap();
    let applied = adjusted.headers()["x-tickvault-adjustments"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        applied.contains("AAPL 2020-08-31 split ratio=4"),
        "{applied}"
    );
    let close: f64 = adjusted.text().await.unwrap()["close\n".len()..]
        .trim()
        .parse()
        .unwrap();
    assert!((close / 124.405824223 - 1.0).abs() < 1e-3, "{close}");
    terminate(&child);
    assert!(child.wait().unwrap().success());

    // A second demo over the same store serves it as it is.
    let (mut child, base) = spawn_server(&store, "demo", &[]);
    let status: Value =
        serde_json::from_str(&get_text(&format!("{base}/v1/status")).await).unwrap();
    assert_eq!(status["symbols"], 15);
    terminate(&child);
    assert!(child.wait().unwrap().success());
}

/// 6 symbols × 500,000 one-minute bars = 3M rows, about 200 MB as CSV. Few series on purpose:
/// the server holds about one row group per series in flight, so its memory grows with the
/// number of series a query reads, not with the size of the result.
async fn large_store(dir: &Path) -> usize {
    let store = Store::open(dir.to_str().unwrap()).await.unwrap();
    let mut writer = store.writer("test");
    for s in 0..6 {
        let symbol = format!("SYM{s:02}");
        let rows: Vec<_> = (0..500_000)
            .map(|i| {
                row(
                    &symbol,
                    "1m",
                    T2021 + i * MINUTE,
                    100.0 + (i % 1000) as f64 / 8.0,
                )
            })
            .collect();
        writer.push(vec![series(&rows)]).await.unwrap();
    }
    writer.finish().await.unwrap();
    3_000_000
}

/// Reads a streamed body, calling `progress` with the bytes so far after each read.
async fn read_body(url: &str, mut progress: impl FnMut(u64)) -> (u64, u64) {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        progress(bytes);
    }
    (bytes, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream_in_bounded_memory_and_shutdown_lets_them_finish() {
    let dir = tempfile::tempdir().unwrap();
    let expected_rows = large_store(dir.path()).await;
    // A debug build streaming 200 MB beside the other tests can take longer than the default
    // 30 s query limit; this test is about memory and shutdown, not the limit.
    let (mut child, base) = spawn_server(dir.path(), "serve", &["--query-timeout", "600s"]);
    let url = format!("{base}/v1/sql?format=csv&q=SELECT+*+FROM+bars");
    let before = peak_rss(child.id());
    let (bytes, lines) = read_body(&url, |_| {}).await;
    assert_eq!(lines, expected_rows as u64 + 1, "header + every row");
    let peak = peak_rss(child.id());
    eprintln!(
        "streamed {bytes} bytes of CSV; server peak RSS {} MB before, {} MB after",
        before >> 20,
        peak >> 20
    );
    // What the query added to the server's footprint (the store, runtimes and allocator
    // arenas were there before it): well below the size of the result.
    let growth = peak.saturating_sub(before);
    assert!(
        growth < bytes / 3,
        "the server's memory grew by {growth} bytes while streaming a {bytes}-byte result"
    );

    // SIGTERM mid-stream: the response still completes, then the process exits cleanly.
    let mut signalled = false;
    let (_, lines) = read_body(&url, |so_far| {
        if !signalled && so_far > bytes / 4 {
            terminate(&child);
            signalled = true;
        }
    })
    .await;
    assert!(signalled);
    assert_eq!(
        lines,
        expected_rows as u64 + 1,
        "the in-flight response finished"
    );
    assert!(child.wait().unwrap().success());
}

/// Item 8 of issue 16: a writing server picks up a CLI `import` made beside it, without a
/// commit of its own (before, the import stayed invisible until the server's next commit).
#[tokio::test]
async fn a_writing_server_follows_a_cli_import_made_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let (_child, base) = spawn_server(&store, "serve", &["--follow-interval", "100ms"]);
    let count_url = format!("{base}/v1/sql?format=csv&q=SELECT+count(*)+AS+n+FROM+bars");
    assert_eq!(get_text(&count_url).await, "n\n0\n");
    let f = fixtures();
    let out = Command::new(env!("CARGO_BIN_EXE_tickvault"))
        .arg("--store")
        .arg(&store)
        .args(["import", "--symbol-pattern", "DA-(.+)-T-"])
        .arg(f.join("DA-AAPL-T-2021-04-21.csv"))
        .env_remove("TICKVAULT_STORE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let imported = Store::open(store.to_str().unwrap())
        .await
        .unwrap()
        .query("SELECT count(*) FROM bars")
        .await
        .unwrap()[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    assert!(imported > 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = get_text(&count_url).await;
        if text == format!("n\n{imported}\n") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server still answers {text:?} after the import of {imported} rows"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
