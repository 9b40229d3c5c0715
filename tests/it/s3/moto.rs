//! A real S3-compatible server for the tests: `moto_server` (PyPI `moto[server]`, which `.ci/run`
//! installs), started on a free loopback port and stopped with its owner. If the test process
//! dies without dropping it, a watchdog shell stops it, so no server outlives a test run.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tickvault::storage::{OpenedStore, S3Config, StoreSettings, StoreUrl, open_object_store};

pub(crate) struct Moto {
    child: Option<Child>,
    pub endpoint: String,
}

/// Installs moto from PyPI once if this Python lacks it, so `cargo test` works on a fresh
/// machine (`.ci/run` installs it up front as well).
fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let has = |_: ()| {
            Command::new("python3")
                .args(["-c", "import moto.server"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if has(()) {
            return;
        }
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "moto[server]>=5.1,<6"])
                .args(extra)
                .status()
                .expect("python3 is needed for the S3 tests")
                .success()
        };
        // A distribution's own Python refuses plain installs (PEP 668): then into the user's site.
        let installed = pip(&[]) || pip(&["--user", "--break-system-packages"]);
        assert!(
            installed && has(()),
            "could not install moto[server] from PyPI for the S3 tests"
        );
    });
}

impl Moto {
    /// Starts a server; `auth` makes it check credentials (every key is then unknown to it).
    pub(crate) fn start_with(auth: bool) -> Moto {
        ensure_installed();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `exec` keeps the pid; the loop kills the server when the test process is gone.
        let script = format!(
            "python3 -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; \
             trap 'kill $pid' TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; \
             kill $pid 2>/dev/null",
            parent = std::process::id()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = cmd
            .spawn()
            .expect("starting moto_server (pip install 'moto[server]')");
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto {
            child: Some(child),
            endpoint,
        };
        moto.wait_ready();
        moto
    }

    pub(crate) fn start() -> Moto {
        Self::start_with(false)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {addr}: is moto[server] installed (pip install \
                 'moto[server]')?"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a bucket (moto takes an unsigned request) and returns its name.
    pub(crate) async fn bucket(&self, name: &str) -> String {
        let name = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "creating bucket {name}: {r:?}");
        name
    }

    /// S3 settings for this server.
    pub(crate) fn config(&self) -> S3Config {
        s3_config(&self.endpoint)
    }

    /// The environment a `tickvault` process needs to reach this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        s3_env(&self.endpoint)
    }

    /// Stops the server (as a crash would).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn s3_config(endpoint: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        path_style: true,
        allow_http: true,
        request_timeout: 10.0,
        max_retries: 3,
        retry_timeout: 20.0,
        ..Default::default()
    }
}

pub(crate) fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TICKVAULT_S3_ENDPOINT", endpoint.to_string()),
        ("TICKVAULT_S3_REGION", "us-east-1".into()),
        ("TICKVAULT_S3_ACCESS_KEY_ID", "testing".into()),
        ("TICKVAULT_S3_SECRET_ACCESS_KEY", "testing".into()),
        ("TICKVAULT_S3_PATH_STYLE", "true".into()),
        ("TICKVAULT_S3_ALLOW_HTTP", "true".into()),
    ]
}

/// One server shared by the tests that do not stop it.
pub(crate) fn shared() -> &'static Moto {
    static SHARED: OnceLock<Moto> = OnceLock::new();
    SHARED.get_or_init(Moto::start)
}

/// The object store of `s3://bucket` on `endpoint`, with its request counters.
pub(crate) fn open(endpoint: &str, bucket: &str) -> OpenedStore {
    let url = StoreUrl::parse(&format!("s3://{bucket}")).unwrap();
    let settings = StoreSettings {
        s3: s3_config(endpoint),
        ..Default::default()
    };
    open_object_store(&url, &settings).unwrap()
}
