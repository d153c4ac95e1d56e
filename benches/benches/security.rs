//! What authentication, the limits and the audit log add to a search
//! (`cargo bench -p cairn-benches --bench security`): the fixture repo
//! `acme-auth` with the default model, served twice from one store —
//! `auth.mode = "none"` without an audit log, and API tokens with `[limits]`
//! (set high enough never to refuse) and the audit log on — and the same queries sent to both, alternating, so that machine
//! load falls on both alike. Prints p50/p99 of each and the difference.
//!
//! It prints timings; nothing here asserts a time.

use std::sync::Arc;
use std::time::Instant;

use cairn_benches::{FIXTURE_QUERIES as QUERIES, Served, percentile};
use cairn_services::audit::{AuditConfig, AuditLog};
use cairn_services::auth::{AuthMode, TokenStore};
use cairn_services::limits::LimitsConfig;
use cairn_services::state::AppState;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("security: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let (_tmp, config, engine) = cairn_benches::indexed_fixture().await?;
    engine.set_groups("acme-auth", vec!["dev".into()])?;

    let open = AppState::for_engine(&engine, &config);
    let tokens = Arc::new(TokenStore::new(&config.data_dir));
    let (_, token) = tokens.create("bench", vec!["dev".into()]).await?;
    let audit = Arc::new(AuditLog::open(&AuditConfig::default(), &config.data_dir)?);
    let secured = AppState::for_engine(&engine, &config)
        .with_auth(AuthMode::Tokens, tokens)
        // limits on (bucket and in-flight count per request) but never reached
        .with_limits(LimitsConfig {
            requests_per_second: 1e6,
            burst: 1_000_000,
            max_concurrent: 1000,
        })
        .with_audit(audit.clone());
    let open = Served::start(open).await?;
    let secured = Served::start(secured).await?;
    let (open_addr, secured_addr) = (open.addr, secured.addr);

    let client = reqwest::Client::new();
    let (mut plain, mut guarded) = (Vec::new(), Vec::new());
    let rounds = 30;
    for round in 0..rounds {
        for q in QUERIES {
            let body = json!({"query": q, "k": 10});
            // alternate which goes first, so neither always meets a warm cache
            for first in [round % 2 == 0, round % 2 == 1] {
                let started = Instant::now();
                let resp = if first {
                    client
                        .post(format!("http://{open_addr}/v1/search"))
                        .json(&body)
                        .send()
                        .await?
                } else {
                    client
                        .post(format!("http://{secured_addr}/v1/search"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?
                };
                anyhow::ensure!(resp.status().is_success(), "search failed: {}", resp.status());
                resp.bytes().await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if first { plain.push(ms) } else { guarded.push(ms) }
            }
        }
    }
    let (p50a, p99a) = (percentile(&mut plain, 50.0), percentile(&mut plain, 99.0));
    let (p50b, p99b) = (percentile(&mut guarded, 50.0), percentile(&mut guarded, 99.0));
    println!("## Search over HTTP, {} requests each, alternating", plain.len());
    println!("auth none, no audit:      p50 {p50a:.2} ms  p99 {p99a:.2} ms");
    println!("tokens + read rule + audit: p50 {p50b:.2} ms  p99 {p99b:.2} ms");
    println!("added at p50: {:.2} ms", p50b - p50a);
    open.stop().await?;
    secured.stop().await?;
    audit.close();
    Ok(())
}
