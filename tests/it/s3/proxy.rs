//! A loopback HTTP proxy in front of the S3 server that misbehaves on demand, the way real
//! stores and networks do: it can drop conditional-write headers (a store without
//! `If-None-Match` support), answer `503 SlowDown` (throttling) or stop answering (a server
//! that hangs mid-query). It counts what it forwarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;

#[derive(Default)]
pub(super) struct Faults {
    /// Forward without `If-None-Match` / `If-Match`.
    pub strip_conditions: AtomicBool,
    /// Answer `503 SlowDown` to every request whose number is a multiple of this (0: never).
    pub slow_down_every: AtomicU64,
    /// Never answer (until the test ends).
    pub hang: AtomicBool,
    pub forwarded: AtomicU64,
    pub slowed_down: AtomicU64,
    seen: AtomicU64,
}

pub(super) struct Proxy {
    pub endpoint: String,
    pub faults: Arc<Faults>,
}

struct Ctx {
    upstream: String,
    client: reqwest::Client,
    faults: Arc<Faults>,
}

impl Proxy {
    pub(super) async fn start(upstream: &str) -> Proxy {
        let faults = Arc::new(Faults::default());
        let ctx = Arc::new(Ctx {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            faults: Arc::clone(&faults),
        });
        let app = axum::Router::new().fallback(forward).with_state(ctx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { endpoint, faults }
    }
}

async fn forward(State(ctx): State<Arc<Ctx>>, request: Request) -> Response {
    let f = &ctx.faults;
    let n = f.seen.fetch_add(1, Ordering::SeqCst) + 1;
    if f.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let every = f.slow_down_every.load(Ordering::SeqCst);
    if every > 0 && n.is_multiple_of(every) {
        f.slowed_down.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .header("content-type", "application/xml")
            .body(Body::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                 <Message>Please reduce your request rate.</Message></Error>",
            ))
            .unwrap();
    }
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = ctx
        .client
        .request(parts.method.clone(), format!("{}{path}", ctx.upstream))
        .body(body);
    let strip = f.strip_conditions.load(Ordering::SeqCst);
    for (name, value) in &parts.headers {
        let conditional = name == "if-none-match" || name == "if-match";
        if name == "host" || name == "content-length" || (strip && conditional) {
            continue;
        }
        out = out.header(name, value);
    }
    let answer = out.send().await.unwrap();
    f.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(HeaderName::from(name), value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}
