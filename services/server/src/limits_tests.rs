//! In-process tests of `[limits]` through the real server: a burst over the
//! rate gets 429 (HTTP, with `Retry-After`) or `RESOURCE_EXHAUSTED` (gRPC) for
//! that principal only, the refusal is audited, and an answer stream holds a
//! concurrency slot until it ends.

use std::sync::Arc;
use std::time::Duration;

use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::HashEmbedder;
use cairn_proto::v1::SearchRequest as PbSearch;
use cairn_proto::v1::retrieval_client::RetrievalClient;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::answer_tests::{Behaviour, backend, fake_backend};
use cairn_engine::engine::Engine;
use cairn_services::auth::{AuthMode, TokenStore};
use cairn_services::config::Config;
use cairn_services::limits::LimitsConfig;
use cairn_services::state::AppState;

struct Served {
    http: String,
    grpc: String,
    alice: String,
    bob: String,
    /// The data dir; the server task owns it and removes it after the
    /// engine's stores have closed (removing it first makes their final
    /// flush fail loudly).
    data: std::path::PathBuf,
    audit: Arc<cairn_services::audit::AuditLog>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The fixtures served with tokens for alice and bob (both admins) and `limits`.
async fn serve(limits: LimitsConfig, behaviour: Behaviour) -> Served {
    let (url, _fake) = fake_backend(behaviour).await;
    let mut b = backend("fake", &url);
    b.total_timeout_ms = 60_000;
    let config = Config {
        backends: vec![b],
        limits,
        ..Default::default()
    };
    let data = tempfile::tempdir().unwrap();
    let dir = DataDir::open(data.path(), "test").unwrap();
    let engine = Engine::with_embedder(&config, dir, Arc::new(HashEmbedder::new(64))).unwrap();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/repos");
    engine
        .index(
            &fixtures.join("acme-auth"),
            "acme-auth",
            &config,
            &cairn_indexer::pipeline::NoProgress,
        )
        .await
        .unwrap();
    let tokens = Arc::new(TokenStore::new(data.path()));
    let (_, alice) = tokens.create("alice", vec!["admin".into()]).await.unwrap();
    let (_, bob) = tokens.create("bob", vec!["admin".into()]).await.unwrap();
    let audit = Arc::new(cairn_services::audit::AuditLog::open(&config.audit, data.path()).unwrap());
    let state = AppState::for_engine(&engine, &config)
        .with_auth(AuthMode::Tokens, tokens)
        .with_limits(config.limits.clone())
        .with_audit(audit.clone());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let data_dir = data.path().to_path_buf();
    tokio::spawn(async move {
        // dropped in this order: the stores close, then the dir goes
        let _owned = (engine, data);
        crate::server::run(state, http, grpc, 1 << 20, async move {
            let _ = rx.await;
        })
        .await
    });
    Served {
        http: format!("http://{http_addr}"),
        grpc: format!("http://{grpc_addr}"),
        alice,
        bob,
        data: data_dir,
        audit,
        _shutdown: tx,
    }
}

async fn search(s: &Served, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/search", s.http))
        .bearer_auth(token)
        .json(&json!({"query": "verify a token", "k": 3}))
        .send()
        .await
        .unwrap()
}

async fn grpc_search(s: &Served, token: &str) -> Result<(), tonic::Status> {
    let mut client = RetrievalClient::connect(s.grpc.clone()).await.unwrap();
    let mut req = tonic::Request::new(PbSearch {
        query: "verify a token".into(),
        k: 3,
        ..Default::default()
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    client.search(req).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_over_the_rate_is_refused_for_that_principal_only() {
    // a refill so slow that no token comes back during the test
    let s = serve(
        LimitsConfig {
            requests_per_second: 0.001,
            burst: 4,
            max_concurrent: 0,
        },
        Behaviour::Reply,
    )
    .await;
    for _ in 0..3 {
        assert_eq!(search(&s, &s.alice).await.status().as_u16(), 200);
    }
    assert!(grpc_search(&s, &s.alice).await.is_ok());
    // alice's bucket is empty: every surface refuses her
    let over = search(&s, &s.alice).await;
    assert_eq!(over.status().as_u16(), 429);
    let retry: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let body: Value = over.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("rate limit"), "{body}");
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/v1/context", json!({"query": "x"})),
        ("/v1/answer", json!({"query": "x"})),
        ("/v1/chat/completions", json!({"model": "fake", "messages": []})),
        ("/v1/continue/context", json!({"query": "x"})),
        ("/mcp", json!({})),
    ] {
        let resp = client
            .post(format!("{}{path}", s.http))
            .bearer_auth(&s.alice)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429, "{path}");
    }
    let err = grpc_search(&s, &s.alice).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    // health needs no credentials and has no limit
    for _ in 0..10 {
        let h = client.get(format!("{}/healthz", s.http)).send().await.unwrap();
        assert_eq!(h.status().as_u16(), 200);
    }
    // bob is unaffected; his invalid and oversized requests keep their statuses
    assert_eq!(search(&s, &s.bob).await.status().as_u16(), 200);
    assert!(grpc_search(&s, &s.bob).await.is_ok());
    let invalid = client
        .post(format!("{}/v1/search", s.http))
        .bearer_auth(&s.bob)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status().as_u16(), 400);
    let big = client
        .post(format!("{}/v1/search", s.http))
        .bearer_auth(&s.bob)
        .header("content-type", "application/json")
        .body(vec![b'x'; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status().as_u16(), 413);
    // the rest of the 2 MiB is unread: the connection is not reused for the
    // next request (it would be reset under the client)
    assert_eq!(big.headers()["connection"], "close");
    // no credentials: still 401, not 429
    let anon = client
        .post(format!("{}/v1/search", s.http))
        .json(&json!({"query": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);

    // the refusals are audited as denials
    s.audit.close();
    let log = std::fs::read_to_string(s.data.join("audit/audit.jsonl")).unwrap();
    let refused: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["outcome"] == "too_many_requests")
        .collect();
    assert_eq!(refused.len(), 7, "{log}");
    assert!(
        refused
            .iter()
            .all(|r| r["principal"] == "alice" && r["decision"] == "deny")
    );
    let surfaces: Vec<&str> = refused.iter().map(|r| r["surface"].as_str().unwrap()).collect();
    for s in ["http.search", "http.answer", "http.mcp", "grpc.search"] {
        assert!(surfaces.contains(&s), "{surfaces:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_stream_holds_a_concurrency_slot_until_it_ends() {
    let s = serve(
        LimitsConfig {
            requests_per_second: 0.0,
            burst: 0,
            max_concurrent: 1,
        },
        Behaviour::StallAfterFirst,
    )
    .await;
    assert_eq!(search(&s, &s.alice).await.status().as_u16(), 200);
    let mut stream = reqwest::Client::new()
        .post(format!("{}/v1/answer", s.http))
        .bearer_auth(&s.alice)
        .json(&json!({"query": "verify a token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Thinking"));
    // alice's one slot is taken by the stream
    let refused = search(&s, &s.alice).await;
    assert_eq!(refused.status().as_u16(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        grpc_search(&s, &s.alice).await.unwrap_err().code(),
        tonic::Code::ResourceExhausted
    );
    assert_eq!(search(&s, &s.bob).await.status().as_u16(), 200);
    assert!(grpc_search(&s, &s.bob).await.is_ok());
    // the client goes away: the slot comes back, eventually
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if search(&s, &s.alice).await.status().as_u16() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that sends a large body without waiting for `100 Continue` is
/// still writing when the server has answered (413 at the size limit, 401
/// before auth lets the body be read). The server drains the rest before it
/// closes (`crate::linger`), so the client can finish writing and reads the
/// answer; before, its writes failed with a broken pipe and reqwest reported
/// that instead of the answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_still_writing_its_body_gets_the_answer_not_a_reset() {
    let s = serve(LimitsConfig::default(), Behaviour::Reply).await;
    // far more than the socket buffers hold
    const TOTAL: usize = 16 << 20;
    let addr = s.http.trim_start_matches("http://").to_string();
    for (token, want) in [(Some(s.bob.clone()), "413"), (None, "401")] {
        let addr = addr.clone();
        let (written, answer) = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            let auth = token
                .map(|t| format!("authorization: Bearer {t}\r\n"))
                .unwrap_or_default();
            write!(
                c,
                "POST /v1/search HTTP/1.1\r\nhost: cairn\r\ncontent-type: application/json\r\n{auth}content-length: {TOTAL}\r\n\r\n"
            )
            .unwrap();
            let block = vec![b'x'; 64 << 10];
            let mut written = 0;
            while written < TOTAL {
                if written == 1 << 20 {
                    // the server has answered and closed its side by now
                    std::thread::sleep(Duration::from_millis(300));
                }
                if let Err(e) = c.write_all(&block) {
                    return (Err(format!("after {written} bytes: {e}")), String::new());
                }
                written += block.len();
            }
            let mut answer = String::new();
            let read = c
                .read_to_string(&mut answer)
                .map(|_| written)
                .map_err(|e| e.to_string());
            (read, answer)
        })
        .await
        .unwrap();
        assert_eq!(written, Ok(TOTAL), "{want}");
        assert!(answer.starts_with(&format!("HTTP/1.1 {want} ")), "{answer}");
        assert!(
            answer.contains("\r\nconnection: close\r\n") || want == "401",
            "{answer}"
        );
    }
    // the same through reqwest, which reports a failed body write as the
    // request's error
    for (token, want) in [(Some(&s.bob), 413), (None, 401)] {
        let mut req = reqwest::Client::new()
            .post(format!("{}/v1/search", s.http))
            .header("content-type", "application/json")
            .body(vec![b'x'; TOTAL]);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("expected {want}: {e:?}"));
        assert_eq!(resp.status().as_u16(), want);
    }
    // the server goes on serving
    assert_eq!(search(&s, &s.bob).await.status().as_u16(), 200);
}
