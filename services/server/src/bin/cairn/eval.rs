//! `cairn eval DIR [--reuse] [--json]`: retrieval quality on an eval set.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use cairn_engine::engine::Engine;
use cairn_services::config::Config;
use cairn_services::eval;
use cairn_services::state::AppState;

pub async fn run(dir: &Path, reuse: bool, json: bool, mut config: Config, data_dir_given: bool) -> anyhow::Result<()> {
    let queries = eval::load_queries(dir)?;
    // Without --data-dir the index is built in a temporary directory, removed
    // after the store is closed.
    let tmp = if data_dir_given {
        None
    } else {
        anyhow::ensure!(!reuse, "--reuse needs --data-dir");
        let tmp = std::env::temp_dir().join(format!("cairn-eval-{}", std::process::id()));
        config.data_dir = tmp.clone();
        Some(tmp)
    };
    let outcome = eval_in(dir, &queries, reuse, json, &config).await;
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_dir_all(tmp);
    }
    outcome
}

async fn eval_in(dir: &Path, queries: &[eval::Query], reuse: bool, json: bool, config: &Config) -> anyhow::Result<()> {
    let mut engine = Engine::open(config, "cairn eval")?;
    engine.finish_migration(config).await?;
    let mut index_s = 0.0;
    let mut chunks = 0;
    if !reuse {
        let corpus = dir.join("corpus");
        let mut repos: Vec<PathBuf> = std::fs::read_dir(&corpus)
            .with_context(|| format!("failed to read {}", corpus.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        repos.sort();
        for repo in repos {
            let name = repo
                .file_name()
                .and_then(|n| n.to_str())
                .context("bad corpus dir name")?
                .to_string();
            let report = engine
                .index(&repo, &name, config, &cairn_indexer::pipeline::NoProgress)
                .await?;
            eprintln!(
                "indexed {name}: {} files, {} chunks in {:.1}s",
                report.files, report.chunks, report.seconds
            );
            index_s += report.seconds;
            chunks += report.chunks;
        }
    }
    let state = AppState::for_engine(&engine, config);
    let started = Instant::now();
    let ranks = eval::run_queries(state.searcher(), queries).await?;
    let query_s = started.elapsed().as_secs_f64();
    let m = eval::metrics(queries, &ranks);
    if json {
        println!(
            "{}",
            serde_json::json!({"system": "cairn", "chunks": chunks, "index_seconds": index_s, "query_seconds": query_s, "metrics": m})
        );
    } else {
        print!("{}", eval::table(&m));
        println!(
            "{} queries in {:.1}s; index {} chunks in {:.1}s",
            queries.len(),
            query_s,
            chunks,
            index_s
        );
    }
    Ok(())
}
