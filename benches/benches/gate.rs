//! What the gate and the operation facade cost a search
//! (`cargo bench -p cairn-benches --bench gate`): the fixture repo
//! `acme-auth` with the default model, served from one store twice:
//!
//! - **bare**: one axum route that decodes the body and calls the search
//!   service directly (no Host/Origin/content-type checks, no audit slot, no
//!   authentication layer, no facade, no audit record): the least any
//!   transport could do;
//! - **gate**: `cairn serve`'s whole HTTP path (`server::run`): the gate's
//!   checks and audit slot, authentication and limits (mode `none`), the
//!   facade, and the audit log on.
//!
//! The same queries go to both, alternating which goes first, so machine
//! load falls on both alike. Prints p50/p99 of each and their ratio; nothing
//! here asserts a time.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::post;
use cairn_benches::{FIXTURE_QUERIES as QUERIES, Served, percentile};
use cairn_services::audit::{AuditConfig, AuditLog};
use cairn_services::auth::Access;
use cairn_services::search::SearchRequest;
use cairn_services::state::AppState;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("gate: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bare_search(
    State(state): State<AppState>,
    axum::Json(req): axum::Json<SearchRequest>,
) -> Result<axum::Json<serde_json::Value>, String> {
    let resp = state
        .searcher()
        .search(&Access::open(), req)
        .await
        .map_err(|e| e.message)?;
    Ok(axum::Json(serde_json::to_value(resp).map_err(|e| e.to_string())?))
}

async fn bench() -> anyhow::Result<()> {
    let (_tmp, config, engine) = cairn_benches::indexed_fixture().await?;
    let audit = Arc::new(AuditLog::open(&AuditConfig::default(), &config.data_dir)?);
    let gated = Served::start(AppState::for_engine(&engine, &config).with_audit(audit.clone())).await?;
    let bare_router = axum::Router::new()
        .route("/v1/search", post(bare_search))
        .with_state(AppState::for_engine(&engine, &config));
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let bare = tokio::spawn(async move {
        axum::serve(bare_listener, bare_router)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
    });

    let client = reqwest::Client::new();
    let (mut plain, mut full) = (Vec::new(), Vec::new());
    let rounds = 40;
    for round in 0..rounds {
        for q in QUERIES {
            let body = json!({"query": q, "k": 10});
            for bare_first in [round % 2 == 0, round % 2 == 1] {
                let addr = if bare_first { bare_addr } else { gated.addr };
                let started = Instant::now();
                let resp = client
                    .post(format!("http://{addr}/v1/search"))
                    .json(&body)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "search failed: {}", resp.status());
                resp.bytes().await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if bare_first { plain.push(ms) } else { full.push(ms) }
            }
        }
    }
    let (p50a, p99a) = (percentile(&mut plain, 50.0), percentile(&mut plain, 99.0));
    let (p50b, p99b) = (percentile(&mut full, 50.0), percentile(&mut full, 99.0));
    println!("## Search over HTTP, {} requests each, alternating", plain.len());
    println!("bare route, search service only: p50 {p50a:.2} ms  p99 {p99a:.2} ms");
    println!("gate + auth + facade + audit:    p50 {p50b:.2} ms  p99 {p99b:.2} ms");
    println!("ratio gate/bare: p50 {:.3}  p99 {:.3}", p50b / p50a, p99b / p99a);
    let _ = stop.send(());
    bare.await??;
    gated.stop().await?;
    audit.close();
    Ok(())
}
