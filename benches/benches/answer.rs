//! Answer latency against the local backend (`cargo bench -p cairn-benches
//! --bench answer`): llama.cpp's `llama-server` with SmolLM2-135M (installed
//! by `make setup`) on a free loopback port, cairn serving the fixture repo
//! `acme-auth` with the default model.
//!
//! 1. `/v1/answer` for 20 questions: p50 of retrieval, assembly, time to
//!    first token and total, from the `done` event's timings and the client's
//!    own clock;
//! 2. the OpenAI gateway's overhead: the same 20 questions, non-streamed,
//!    through `/v1/chat/completions` and straight to the backend with the
//!    same sampling settings (fixed `max_tokens`, temperature 0).
//!
//! It prints timings; nothing here asserts a time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_benches::{Served, percentile, root};
use cairn_engine::engine::Engine;
use cairn_indexer::pipeline::NoProgress;
use cairn_services::config::{BackendConfig, Config};
use cairn_services::state::AppState;
use serde_json::{Value, json};

const QUESTIONS: [&str; 20] = [
    "How does AuthService verify a session token?",
    "Where are passwords hashed?",
    "How is a password checked against its hash?",
    "How does the token bucket refill?",
    "What happens when a request exceeds the rate limit?",
    "How are sessions created after login?",
    "How long does a session last?",
    "How is a session revoked?",
    "Which hash function is used for passwords?",
    "How are login attempts limited?",
    "What does login return on a wrong password?",
    "Where is the signing key for tokens kept?",
    "How is a token's expiry checked?",
    "How does the rate limiter decide to allow a request?",
    "What errors can authentication raise?",
    "How is a user looked up by name?",
    "How are new users registered?",
    "What is stored in a session?",
    "How are tokens signed?",
    "How is the current time used in token checks?",
];

struct Llama(Child);

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("answer: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let server_bin = root().join(".local/llm/llama-server");
    let gguf = root().join(".local/llm/SmolLM2-135M-Instruct.Q4_1.gguf");
    anyhow::ensure!(
        server_bin.exists() && gguf.exists(),
        "no local LLM backend in .local/llm: run `make setup`"
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let _llama = Llama(
        Command::new(&server_bin)
            .args([
                "-m",
                gguf.to_str().unwrap(),
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "-c",
                "4096",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let healthy = match client.get(format!("{base}/health")).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if healthy {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "llama-server did not become healthy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let tmp = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    config.data_dir = tmp.path().join("data");
    config.backends = vec![BackendConfig {
        name: "smollm2".into(),
        base_url: format!("{base}/v1"),
        model: "smollm2".into(),
        max_sensitivity: cairn_services::config::Sensitivity::Restricted,
        context_tokens: 2048,
        answer_tokens: 128,
        ..Default::default()
    }];
    let engine = Engine::open(&config, "cairn bench")?;
    engine
        .index(
            &root().join("fixtures/repos/acme-auth"),
            "acme-auth",
            &config,
            &NoProgress,
        )
        .await?;
    let server = Served::start(AppState::for_engine(&engine, &config)).await?;
    let addr = server.addr;

    // 1. /v1/answer
    let (mut retrieval, mut assembly, mut ttft, mut total, mut client_total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut client_first = Vec::new();
    for q in QUESTIONS {
        let started = Instant::now();
        let mut resp = client
            .post(format!("http://{addr}/v1/answer"))
            .json(&json!({"query": q}))
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "answer failed: {}", resp.status());
        let mut body = String::new();
        let mut first = None;
        while let Some(chunk) = resp.chunk().await? {
            body.push_str(&String::from_utf8_lossy(&chunk));
            if first.is_none() && body.contains("event: token") {
                first = Some(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        client_total.push(started.elapsed().as_secs_f64() * 1000.0);
        client_first.push(first.unwrap_or(f64::NAN));
        let done = body
            .split("\n\n")
            .find(|b| b.starts_with("event: done"))
            .and_then(|b| b.lines().find_map(|l| l.strip_prefix("data:")))
            .ok_or_else(|| anyhow::anyhow!("no done event"))?;
        let done: Value = serde_json::from_str(done.trim())?;
        let t = &done["timings"];
        retrieval.push(t["retrieval_ms"].as_f64().unwrap_or(f64::NAN));
        assembly.push(t["assembly_ms"].as_f64().unwrap_or(f64::NAN));
        ttft.push(t["first_token_ms"].as_f64().unwrap_or(f64::NAN));
        total.push(t["total_ms"].as_f64().unwrap_or(f64::NAN));
    }
    println!(
        "## /v1/answer, {} questions, SmolLM2-135M Q4_1 on llama-server (p50)",
        QUESTIONS.len()
    );
    println!(
        "retrieval (embed query + hybrid search): {:.1} ms",
        percentile(&mut retrieval, 50.0)
    );
    println!(
        "assembly (merge, dedupe, budget):        {:.2} ms",
        percentile(&mut assembly, 50.0)
    );
    println!(
        "backend first token (prompt prefill):   {:.0} ms",
        percentile(&mut ttft, 50.0)
    );
    println!(
        "total as cairn measured it:             {:.0} ms",
        percentile(&mut total, 50.0)
    );
    println!(
        "client: first token event {:.0} ms, whole stream {:.0} ms",
        percentile(&mut client_first, 50.0),
        percentile(&mut client_total, 50.0)
    );

    // 2. Gateway overhead: cairn's /v1/chat/completions vs the backend itself.
    let mut via_cairn = Vec::new();
    let mut direct = Vec::new();
    for q in QUESTIONS {
        let body = json!({"model": "smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": 32, "temperature": 0.0});
        let started = Instant::now();
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success());
        r.bytes().await?;
        direct.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        let r = client
            .post(format!("http://{addr}/v1/chat/completions"))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "gateway: {}", r.status());
        r.bytes().await?;
        via_cairn.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let (d, c) = (percentile(&mut direct, 50.0), percentile(&mut via_cairn, 50.0));
    println!("## OpenAI gateway, 20 questions, max_tokens 32, temperature 0 (p50)");
    println!(
        "backend directly: {d:.0} ms; through cairn (retrieval + context in the prompt): {c:.0} ms; overhead {:.0} ms ({:.1}x)",
        c - d,
        c / d
    );

    server.stop().await?;
    Ok(())
}
