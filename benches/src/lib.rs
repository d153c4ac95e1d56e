//! Helpers shared by cairn's benches: locating the eval corpus and the
//! default model, and percentile maths.

use std::path::PathBuf;

/// The workspace root.
/// Ten questions about the `acme-auth` fixture, for the latency benches.
pub const FIXTURE_QUERIES: [&str; 10] = [
    "verify a password hash",
    "refill the token bucket",
    "create a session after login",
    "revoke a session",
    "check token expiry",
    "rate limit a request",
    "hash a new password",
    "look up a user by name",
    "sign a token",
    "errors raised by authentication",
];

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The dev eval set (`../shared/eval/dev` beside the checkout), or
/// `CAIRN_BENCH_EVAL` when set.
pub fn eval_dir() -> PathBuf {
    std::env::var_os("CAIRN_BENCH_EVAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/eval/dev"))
}

/// Every file of the eval corpus as (repo-relative path, text).
pub fn corpus_files() -> Vec<(String, String)> {
    let corpus = eval_dir().join("corpus");
    let mut out = Vec::new();
    let mut stack = vec![corpus.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(text) = std::fs::read_to_string(&p) {
                let rel = p
                    .strip_prefix(&corpus)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

/// The `q`-th percentile (0..=100) of `samples` (sorted in place).
pub fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let idx = ((q / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

/// A server running [`cairn_server::server::run`] on loopback ports.
pub struct Served {
    /// The HTTP address.
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Served {
    /// Serves `state` on free loopback ports.
    pub async fn start(state: cairn_services::state::AppState) -> anyhow::Result<Self> {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = http.local_addr()?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(cairn_server::server::run(state, http, grpc, 1 << 20, async move {
            let _ = rx.await;
        }));
        Ok(Self { addr, stop, task })
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// A data dir in a temporary directory (kept while the returned handle
/// lives) with the default config and model and the fixture repo
/// `acme-auth` indexed: the setup of the latency benches.
pub async fn indexed_fixture() -> anyhow::Result<(
    tempfile::TempDir,
    cairn_services::config::Config,
    cairn_engine::engine::Engine,
)> {
    let tmp = tempfile::tempdir()?;
    let mut config = cairn_services::config::Config::load(None)?;
    config.data_dir = tmp.path().join("data");
    let engine = cairn_engine::engine::Engine::open(&config, "cairn bench")?;
    engine
        .index(
            &root().join("fixtures/repos/acme-auth"),
            "acme-auth",
            &config,
            &cairn_indexer::pipeline::NoProgress,
        )
        .await?;
    Ok((tmp, config, engine))
}
