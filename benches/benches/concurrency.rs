//! Search throughput and latency with many clients on one machine
//! (`cargo bench -p cairn-benches --bench concurrency`): the fixture repo
//! `acme-auth` with the default model, served through `cairn serve`'s whole
//! HTTP path (gate, auth mode `none`, no limits) twice from one store:
//!
//! - **shared**: query embeddings batched across concurrent requests and
//!   cached (`cairn_indexer::query_embed`, what `cairn serve` does);
//! - **direct**: one model call per query, as before.
//!
//! Every query text is distinct (a counter is appended), so the cache never
//! answers and the numbers are the batching's. At 1, 4, 16 and 64
//! concurrent clients, each server gets the same requests (which server goes
//! first alternates per level). Prints requests per second, p50 and p99, and
//! the ratios; nothing here asserts a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cairn_benches::{FIXTURE_QUERIES, Served, percentile};
use cairn_indexer::serving::Serving;
use cairn_services::state::AppState;
use serde_json::json;

const LEVELS: [usize; 4] = [1, 4, 16, 64];

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("concurrency: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

/// `requests` searches from `clients` concurrent clients: (requests per
/// second, latencies in ms).
async fn load(
    addr: std::net::SocketAddr,
    clients: usize,
    requests: usize,
    tag: &str,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let tag = tag.to_string();
        workers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut times = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= requests {
                    break;
                }
                let q = format!("{} {tag}{n}", FIXTURE_QUERIES[n % FIXTURE_QUERIES.len()]);
                let t = Instant::now();
                let resp = client
                    .post(format!("http://{addr}/v1/search"))
                    .json(&json!({"query": q, "k": 10}))
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "search failed: {}", resp.status());
                resp.bytes().await?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await??);
    }
    Ok((requests as f64 / started.elapsed().as_secs_f64(), all))
}

async fn bench() -> anyhow::Result<()> {
    let (_tmp, config, engine) = cairn_benches::indexed_fixture().await?;
    let shared = Served::start(AppState::for_engine(&engine, &config)).await?;
    let direct = Served::start(AppState::with_serving(
        Serving::unshared(engine.embedder.clone(), engine.store.clone()),
        engine.data.registry(),
        config.search,
        &config.answer,
        &config.backends,
    ))
    .await?;
    // warm both
    load(shared.addr, 4, 40, "warm-s").await?;
    load(direct.addr, 4, 40, "warm-d").await?;

    println!("## Search over HTTP by concurrent clients (acme-auth, k = 10, distinct queries)");
    println!("| clients | shared: req/s, p50, p99 | direct: req/s, p50, p99 | req/s shared/direct |");
    println!("|---|---|---|---|");
    let mut base = None;
    for (i, clients) in LEVELS.into_iter().enumerate() {
        let requests = (clients * 25).max(200);
        let order: [(&str, std::net::SocketAddr); 2] = if i % 2 == 0 {
            [("s", shared.addr), ("d", direct.addr)]
        } else {
            [("d", direct.addr), ("s", shared.addr)]
        };
        let mut rows = std::collections::HashMap::new();
        for (name, addr) in order {
            let (rps, mut times) = load(addr, clients, requests, &format!("{name}{clients}-")).await?;
            rows.insert(name, (rps, percentile(&mut times, 50.0), percentile(&mut times, 99.0)));
        }
        let (s, d) = (rows["s"], rows["d"]);
        let single = *base.get_or_insert(s.0);
        println!(
            "| {clients} | {:.0} req/s (x{:.2} of 1 client), {:.1} ms, {:.1} ms | {:.0} req/s, {:.1} ms, {:.1} ms | x{:.2} |",
            s.0,
            s.0 / single,
            s.1,
            s.2,
            d.0,
            d.1,
            d.2,
            s.0 / d.0
        );
    }
    shared.stop().await?;
    direct.stop().await?;
    Ok(())
}
