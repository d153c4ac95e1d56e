//! What each `[audit] fsync` mode costs a search
//! (`cargo bench -p cairn-benches --bench audit_fsync`): the fixture repo
//! `acme-auth` with the default model, served three times from one store
//! through `cairn serve`'s whole HTTP path (gate, auth mode `none`, facade):
//!
//! - **off**: `audit.enabled = false`;
//! - **checkpoint**: records written as they come, synced at each
//!   checkpoint (every 1,000 records, the default);
//! - **every_record**: the response waits until its record is synced.
//!
//! Each log sits in its own directory of the data dir's file system. The same
//! queries go to all three in turn, rotating which goes first, so machine
//! load falls on each alike. Prints p50/p99 of each and the ratios to `off`;
//! nothing here asserts a time.

use std::sync::Arc;
use std::time::Instant;

use cairn_benches::{FIXTURE_QUERIES as QUERIES, Served, percentile};
use cairn_services::audit::{AuditConfig, AuditLog, FsyncMode};
use cairn_services::state::AppState;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("audit_fsync: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let (tmp, config, engine) = cairn_benches::indexed_fixture().await?;
    let modes: [(&str, Option<FsyncMode>); 3] = [
        ("off", None),
        ("checkpoint", Some(FsyncMode::Checkpoint)),
        ("every_record", Some(FsyncMode::EveryRecord)),
    ];
    let mut servers = Vec::new();
    let mut logs = Vec::new();
    for (name, mode) in modes {
        let audit = Arc::new(match mode {
            None => AuditLog::disabled(),
            Some(fsync) => AuditLog::open(
                &AuditConfig {
                    fsync,
                    ..AuditConfig::default()
                },
                &tmp.path().join(name),
            )?,
        });
        servers.push(Served::start(AppState::for_engine(&engine, &config).with_audit(audit.clone())).await?);
        logs.push(audit);
    }

    let client = reqwest::Client::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let rounds = 40;
    for round in 0..rounds {
        for q in QUERIES {
            let body = json!({"query": q, "k": 10});
            for i in 0..modes.len() {
                let which = (i + round) % modes.len();
                let started = Instant::now();
                let resp = client
                    .post(format!("http://{}/v1/search", servers[which].addr))
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "search failed: {}", resp.status());
                resp.bytes().await?;
                times[which].push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    println!(
        "## Search over HTTP by [audit] fsync mode, {} requests each, rotating",
        times[0].len()
    );
    let (base50, base99) = (percentile(&mut times[0], 50.0), percentile(&mut times[0], 99.0));
    for (i, (name, _)) in modes.iter().enumerate() {
        let (p50, p99) = (percentile(&mut times[i], 50.0), percentile(&mut times[i], 99.0));
        println!(
            "{name:>13}: p50 {p50:.2} ms  p99 {p99:.2} ms  (x{:.3} / x{:.3} of off)",
            p50 / base50,
            p99 / base99
        );
    }
    for server in servers {
        server.stop().await?;
    }
    for log in logs {
        log.close();
    }
    Ok(())
}
