//! Property test of request decoding on every JSON route, through the real
//! server (gate, authentication, extractors, facade): arbitrary bodies built
//! from valid ones by a seeded generator (reproducible; no extra crates)
//! never get a 5xx other than an answer backend being down, and every
//! refusal names its problem in a JSON error. `CAIRN_PROPERTY_CASES` raises
//! the number of bodies per route (default 150).

use std::sync::Arc;

use cairn_engine::engine::Engine;
use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::HashEmbedder;
use cairn_services::config::Config;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use cairn_services::state::AppState;

/// xorshift64*: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A JSON value of any type, some of them hostile.
fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 7 } else { 10 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(-(rng.below(1000) as i64)),
        4 => json!(1e308),
        5 => json!("x".repeat(rng.below(3) * rng.below(40_000))),
        6 => json!(["é", "\u{0}", "🦀", "../../etc/passwd", "acme-auth"][rng.below(5)]),
        7 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => Value::Object(
            (0..rng.below(4))
                .map(|i| {
                    (
                        ["query", "k", "repos", "messages", "x", "group_by"][i % 6].to_string(),
                        value(rng, depth + 1),
                    )
                })
                .collect(),
        ),
    }
}

/// A body derived from a valid one: a field retyped, added or dropped, the
/// bytes cut or spliced, or something else entirely.
fn body(rng: &mut Rng, valid: &Value) -> Vec<u8> {
    let mut v = valid.clone();
    match rng.below(6) {
        0 | 1 => {
            if let Some(obj) = v.as_object_mut() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                let key = keys[rng.below(keys.len())].clone();
                obj.insert(key, value(rng, 0));
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        2 => {
            if let Some(obj) = v.as_object_mut() {
                let key = [
                    "unknown",
                    "k",
                    "repos",
                    "languages",
                    "path_prefix",
                    "stream",
                    "budget_tokens",
                ][rng.below(7)];
                obj.insert(key.into(), value(rng, 0));
            }
            serde_json::to_vec(&v).unwrap_or_default()
        }
        3 => {
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            b.truncate(rng.below(b.len() + 1));
            b
        }
        4 => {
            let mut b = serde_json::to_vec(&v).unwrap_or_default();
            let at = rng.below(b.len() + 1);
            let junk: Vec<u8> = (0..rng.below(8)).map(|_| rng.next() as u8).collect();
            b.splice(at..at, junk);
            b
        }
        _ => {
            let deep = rng.below(300);
            let mut s = "[".repeat(deep);
            s.push_str(&"]".repeat(rng.below(deep + 1)));
            if rng.below(2) == 0 {
                serde_json::to_vec(&value(rng, 0)).unwrap_or_default()
            } else {
                s.into_bytes()
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn arbitrary_bodies_on_every_json_route_get_a_named_4xx_never_a_5xx() {
    let cases: usize = std::env::var("CAIRN_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let data = tempfile::tempdir().unwrap();
    let config = Config::default();
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
    let state = AppState::for_engine(&engine, &config);
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(state, http, grpc, 1 << 20, async move {
        let _ = rx.await;
    }));

    let routes: [(&str, Value); 5] = [
        (
            "/v1/search",
            json!({"query": "verify a token", "k": 3, "repos": ["acme-auth"]}),
        ),
        ("/v1/context", json!({"query": "verify a token", "budget_tokens": 200})),
        ("/v1/answer", json!({"query": "how are tokens verified?"})),
        (
            "/v1/chat/completions",
            json!({"model": "cairn", "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/v1/continue/context",
            json!({"query": "verify", "fullInput": "verify a token"}),
        ),
    ];
    let client = reqwest::Client::new();
    let mut rng = Rng(0x0dec_0de5_eed5_1234);
    let mut seen = std::collections::BTreeMap::new();
    for (route, valid) in &routes {
        for case in 0..cases {
            let b = body(&mut rng, valid);
            let shown = String::from_utf8_lossy(&b).chars().take(80).collect::<String>();
            let resp = client
                .post(format!("http://{addr}{route}"))
                .header("content-type", "application/json")
                .body(b)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{route} case {case}: no answer ({e}) to {shown}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            *seen.entry((*route, status)).or_insert(0) += 1;
            // no backend is configured: answers may say so (503), nothing else is a 5xx
            let backend_down = status == 503 && matches!(*route, "/v1/answer" | "/v1/chat/completions");
            assert!(
                status < 500 || backend_down,
                "{route} case {case}: {status} {text} for {shown}"
            );
            if status >= 400 {
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{route} case {case}: {status} without a JSON error: {text}"));
                let message = v["error"].as_str().or_else(|| v["error"]["message"].as_str());
                assert!(
                    message.is_some_and(|m| !m.is_empty()),
                    "{route} case {case}: {status} {text}"
                );
            }
        }
    }
    eprintln!("(route, status) → bodies: {seen:?}");
    // the generator reached both sides: some bodies were accepted, most refused
    for (route, _) in &routes {
        assert!(
            seen.iter().any(|((r, s), _)| r == route && *s >= 400),
            "{route}: nothing refused: {seen:?}"
        );
    }
    assert!(seen.iter().any(|((_, s), _)| *s == 200), "nothing accepted: {seen:?}");
    let _ = tx.send(());
    server.await.unwrap().unwrap();
    drop(engine);
}
