//! The Qdrant server backend end to end: the dev eval on both store
//! backends with the real model (the Qdrant server must give the embedded
//! store's recall@10 and MRR@10 within 0.01), and a server that stops
//! answering in the middle of a run. Runs when `QDRANT_URL` names a Qdrant
//! 1.17+ gRPC endpoint (and the eval set is beside the checkout); otherwise
//! each test says why it skipped and passes. Collections are dropped at the
//! end, pass or fail.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Server, fixture_repo, run};

fn eval_metrics(args: &[&str]) -> Value {
    let (ok, out, err) = run(args);
    assert!(ok, "cairn {args:?} failed: {err}");
    let line = out.lines().last().expect("eval prints a JSON line");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["metrics"].clone()
}

/// A Qdrant server to test against (`QDRANT_URL`, and `QDRANT_API_KEY`
/// when set) with a collection name of its own.
pub struct TestQdrant {
    pub url: String,
    pub collection: String,
}

impl TestQdrant {
    /// `None` (after printing why `test` skips) when `QDRANT_URL` is unset.
    pub fn from_env(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("QDRANT_URL") else {
            eprintln!(
                "skipping {test}: set QDRANT_URL (a Qdrant 1.17+ gRPC endpoint, e.g. http://127.0.0.1:6334) to run it"
            );
            return None;
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Some(Self {
            url,
            collection: format!("cairn_e2e_{}_{stamp}", std::process::id()),
        })
    }

    /// The `[store]` section that points cairn at it.
    pub fn store_toml(&self) -> String {
        self.store_toml_at(&self.url)
    }

    /// The `[store]` section for its collection, reached at `url` (a proxy).
    pub fn store_toml_at(&self, url: &str) -> String {
        let api_key_env = if std::env::var_os("QDRANT_API_KEY").is_some() {
            "api_key_env = \"QDRANT_API_KEY\"\n"
        } else {
            ""
        };
        format!(
            "[store]\nkind = \"qdrant\"\nurl = \"{url}\"\ncollection = \"{}\"\n{api_key_env}",
            self.collection
        )
    }

    /// Settings for its chunks collection (`collection`: another name).
    pub fn settings(&self, collection: &str) -> cairn_indexer::store::qdrant::QdrantSettings {
        cairn_indexer::store::qdrant::QdrantSettings {
            url: self.url.clone(),
            api_key: std::env::var("QDRANT_API_KEY").ok(),
            collection: collection.to_string(),
            ..Default::default()
        }
    }

    /// The test's collections on the server: the chunks collection of each
    /// generation and the metadata collection.
    pub async fn collections(&self) -> Vec<String> {
        let mut names = cairn_indexer::store::qdrant::collections(&self.settings(&self.collection))
            .await
            .unwrap();
        names.retain(|n| n == &self.collection || n.starts_with(&format!("{}-", self.collection)));
        names.sort();
        names
    }

    /// Drops every collection of the test (a failure is printed, not
    /// raised: the test's own outcome matters more).
    pub async fn drop_collections(&self) {
        let names = match cairn_indexer::store::qdrant::collections(&self.settings(&self.collection)).await {
            Ok(names) => names,
            Err(e) => return eprintln!("could not list the collections of {}: {e}", self.collection),
        };
        for name in names
            .iter()
            .filter(|n| *n == &self.collection || n.starts_with(&format!("{}-", self.collection)))
        {
            let outcome = match cairn_indexer::store::qdrant::QdrantStore::new(self.settings(name), 384) {
                Ok(store) => store.drop_collection().await,
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                eprintln!("could not drop the collection {name}: {e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_on_qdrant_matches_the_embedded_store() {
    let Some(qdrant) = TestQdrant::from_env("eval_on_qdrant_matches_the_embedded_store") else {
        return;
    };
    let eval = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/dev");
    if !eval.join("queries.jsonl").is_file() {
        eprintln!(
            "skipping eval_on_qdrant_matches_the_embedded_store: no eval set at {}",
            eval.display()
        );
        return;
    }
    let eval = eval.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("qdrant.toml");
    std::fs::write(&config, qdrant.store_toml()).unwrap();

    let edge_dir = tmp.path().join("edge");
    let edge = eval_metrics(&["--data-dir", edge_dir.to_str().unwrap(), "eval", eval, "--json"]);
    let qdrant_dir = tmp.path().join("qdrant");
    let outcome = std::panic::catch_unwind(|| {
        eval_metrics(&[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            qdrant_dir.to_str().unwrap(),
            "eval",
            eval,
            "--json",
        ])
    });
    qdrant.drop_collections().await;
    let on_qdrant = outcome.unwrap();
    eprintln!("eval, embedded: {edge}\neval, qdrant:   {on_qdrant}");
    for metric in ["recall@10", "mrr@10"] {
        let (a, b) = (edge[metric].as_f64().unwrap(), on_qdrant[metric].as_f64().unwrap());
        assert!((a - b).abs() <= 0.01, "{metric}: embedded {a}, qdrant {b}");
    }
}

/// Writes `<dir>/cairn.toml`: the `[store]` section `store`, then `extra`,
/// then `repo` as the configured repo `acme-auth` (indexed at start).
pub fn config_with_repo(dir: &std::path::Path, store: &str, extra: &str, repo: &std::path::Path) -> PathBuf {
    let config = dir.join("cairn.toml");
    let repos = format!(
        "[[repos]]\nname = \"acme-auth\"\nurl = \"{}\"\nevery = \"1h\"\n",
        repo.display()
    );
    std::fs::write(&config, format!("{store}{extra}\n{repos}")).unwrap();
    config
}

/// A TCP proxy in front of the Qdrant server that can stop answering (open
/// connections cut, new ones accepted and then left without a byte) and
/// answer again, on the same port.
struct Proxy {
    port: u16,
    answering: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Self {
        let target = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (answering, _) = tokio::sync::watch::channel(true);
        let state = answering.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut up = state.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    if !*up.borrow_and_update() {
                        // hold it unanswered until the server is back, then drop it
                        let _ = up.wait_for(|on| *on).await;
                        return;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = up.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        Self {
            port,
            answering,
            accept,
        }
    }

    fn answer(&self, on: bool) {
        self.answering.send_replace(on);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn repo_status(c: &reqwest::Client, server: &Server) -> Value {
    c.get(server.url("/v1/repos/acme-auth"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// Polls `check` every half second until it holds; fails with `what` and
/// the last value after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (bool, Value)>,
{
    let started = Instant::now();
    loop {
        let (ok, last) = check().await;
        if ok {
            return;
        }
        assert!(started.elapsed() < limit, "{what} (after {limit:?}): {last}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `cairn serve` with a configured repo, on a Qdrant server that stops
/// answering after the repo was indexed: searches answer 503 (never hang or
/// crash), a full reindex fails and is recorded as the repo's error, and
/// once the server answers again searches and indexing resume in the same
/// process.
#[tokio::test(flavor = "multi_thread")]
async fn a_qdrant_that_stops_answering_mid_run_fails_requests_and_indexing_resumes() {
    let Some(qdrant) =
        TestQdrant::from_env("a_qdrant_that_stops_answering_mid_run_fails_requests_and_indexing_resumes")
    else {
        return;
    };
    if !qdrant.url.starts_with("http://") {
        eprintln!("skipping the outage test: its TCP proxy needs a plain-http QDRANT_URL");
        return;
    }
    let proxy = Proxy::start(&qdrant.url).await;
    let repo = fixture_repo();
    let tmp = tempfile::tempdir().unwrap();
    let store = qdrant.store_toml_at(&format!("http://127.0.0.1:{}", proxy.port));
    let config = config_with_repo(tmp.path(), &store, "timeout_ms = 2000\nretries = 2\n", repo.path());
    let data = tmp.path().join("data");
    let outcome = tokio::spawn(async move {
        let cfg = ["--config", config.to_str().unwrap()];
        let server = Server::wait_ready(Server::spawn(&data, &cfg, &[], &["serve"]));
        let c = reqwest::Client::new();
        let search = || async {
            let resp = c
                .post(server.url("/v1/search"))
                .json(&json!({"query": "refill the token bucket", "k": 3}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        };
        let found = |(status, v): (u16, Value)| {
            let ok = status == 200 && v["results"].as_array().is_some_and(|r| !r.is_empty());
            (ok, json!({"status": status, "body": v}))
        };
        eventually(Duration::from_secs(180), "the repo was never searchable", || async {
            found(search().await)
        })
        .await;

        proxy.answer(false);
        let started = Instant::now();
        let (status, v) = search().await;
        assert_eq!(status, 503, "{v}");
        assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
        let reindex = || async {
            let resp = c
                .post(server.url("/v1/repos/acme-auth/reindex?full=true"))
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 202);
        };
        reindex().await;
        eventually(Duration::from_secs(120), "the failed run was not recorded", || async {
            let v = repo_status(&c, &server).await;
            (v["last_error"].is_string(), v)
        })
        .await;

        proxy.answer(true);
        eventually(Duration::from_secs(60), "searches did not come back", || async {
            found(search().await)
        })
        .await;
        reindex().await;
        eventually(Duration::from_secs(180), "indexing did not resume", || async {
            let v = repo_status(&c, &server).await;
            (v["state"] == "idle" && v["last_error"].is_null(), v)
        })
        .await;
        drop(proxy);
    });
    let result = tokio::time::timeout(Duration::from_secs(600), outcome).await;
    qdrant.drop_collections().await;
    result.expect("the outage scenario finished in time").unwrap();
}

/// The outage test's proxy, on an echo server (runs everywhere): it
/// forwards, then cuts open connections and leaves new ones unanswered,
/// then forwards again on the same port.
#[tokio::test(flavor = "multi_thread")]
async fn the_outage_proxy_forwards_goes_silent_and_comes_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", echo.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let proxy = Proxy::start(&upstream).await;
    let addr = format!("127.0.0.1:{}", proxy.port);
    async fn round_trip(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
        s.write_all(b"ping").await.ok()?;
        let mut buf = [0u8; 4];
        match tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf.to_vec()),
            _ => None,
        }
    }
    let mut open = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(round_trip(&mut open).await.as_deref(), Some(&b"ping"[..]));

    proxy.answer(false);
    let mut buf = [0u8; 4];
    let cut = tokio::time::timeout(Duration::from_secs(5), open.read(&mut buf)).await;
    assert!(
        matches!(cut, Ok(Ok(0)) | Ok(Err(_))),
        "the open connection is cut: {cut:?}"
    );
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(round_trip(&mut silent).await, None, "a new one gets no answer");

    proxy.answer(true);
    let mut again = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(round_trip(&mut again).await.as_deref(), Some(&b"ping"[..]));
}
