//! Commit-to-searchable (`cargo bench -p cairn-benches --bench incremental`):
//! a generated git repository of `BENCH_FILES` files (default 5,000)
//! is indexed once with the real model; then, `BENCH_COMMITS` times
//! (default 20), one file gets a new function in a new commit and the bench
//! starts `RepoIndexer::run` (through `Engine::index_run`, the call a
//! reindex request or webhook makes) while a client searches `/v1/search`
//! over HTTP every 20 ms, and times until the new function comes back
//! (commit to searchable) and until the run completes (checkpoint moved).
//! It prints p50/p95/max of both and the chunks embedded per change;
//! nothing here asserts a time.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use cairn_benches::{Served, percentile};
use cairn_engine::engine::Engine;
use cairn_indexer::pipeline::NoProgress;
use cairn_services::config::Config;
use cairn_services::state::AppState;

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("incremental: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

/// The top 5 of repo `gen` for `query`, as JSON hits.
async fn hits(client: &reqwest::Client, url: &str, query: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let v: serde_json::Value = client
        .post(url)
        .json(&serde_json::json!({"query": query, "k": 5, "repos": ["gen"]}))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["results"].as_array().cloned().unwrap_or_default())
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .status()?;
    anyhow::ensure!(status.success(), "git {args:?} failed");
    Ok(())
}

/// A made-up word unique to commit `n` (letters only, so the BM25
/// tokenizer keeps it whole), so each query has exactly one right answer.
fn word(n: usize) -> String {
    let mut w = String::from("zq");
    let mut n = n;
    loop {
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return w;
        }
    }
}

fn file_text(i: usize, extra: Option<usize>) -> String {
    let mut text = format!(
        "//! Module {i} of the generated service.\n\n/// Loads record {i} from the store.\n\
         pub fn load_record_{i}(id: u64) -> Option<u64> {{\n    id.checked_mul({i}).map(|v| v + 1)\n}}\n"
    );
    if let Some(n) = extra {
        text += &format!(
            "\n/// Computes the {w} quota for a warehouse shelf.\n\
             pub fn {w}_quota_for_shelf(shelf: u32) -> u32 {{\n    shelf.wrapping_mul({n}).rotate_left(3)\n}}\n",
            w = word(n)
        );
    }
    text
}

async fn bench() -> anyhow::Result<()> {
    let files = env_usize("BENCH_FILES", 5000);
    let commits = env_usize("BENCH_COMMITS", 20);
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    for i in 0..files {
        let path = repo.join(format!("src/m{}/f{i}.rs", i % 50));
        std::fs::create_dir_all(path.parent().unwrap_or(&repo))?;
        std::fs::write(path, file_text(i, None))?;
    }
    git(&repo, &["init", "-q", "-b", "main"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "init"])?;

    let mut config = Config::load(None)?;
    config.data_dir = tmp.path().join("data");
    let engine = Engine::open(&config, "cairn bench")?;
    let started = Instant::now();
    let first = engine.index_run(&repo, "gen", &config, &NoProgress).await?;
    println!(
        "## Initial build: {} files, {} chunks in {:.1}s",
        first.index.files,
        first.index.chunks,
        started.elapsed().as_secs_f64()
    );

    let server = Served::start(AppState::for_engine(&engine, &config)).await?;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/search", server.addr);
    let mut took = Vec::new();
    let mut runs = Vec::new();
    let mut embedded = Vec::new();
    for n in 0..commits {
        let i = (n * 7919) % files;
        let rel = format!("src/m{}/f{i}.rs", i % 50);
        std::fs::write(repo.join(&rel), file_text(i, Some(n)))?;
        git(&repo, &["commit", "-q", "-am", "one file"])?;
        let symbol = format!("{}_quota_for_shelf", word(n));
        let query = format!("{} quota for a warehouse shelf", word(n));
        let started = Instant::now();
        // the run goes on as a reindex request's would, while a client
        // searches every 20 ms: searchable is when the new code comes back
        let run = async {
            let r = engine.index_run(&repo, "gen", &config, &NoProgress).await;
            (r, started.elapsed())
        };
        let poll = async {
            loop {
                if hits(&client, &url, &query)
                    .await?
                    .iter()
                    .any(|h| h["content"].as_str().is_some_and(|c| c.contains(&symbol)))
                {
                    return Ok::<_, anyhow::Error>(Some(started.elapsed()));
                }
                if started.elapsed() > std::time::Duration::from_secs(60) {
                    return Ok(None);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let ((run, run_took), seen) = tokio::join!(run, poll);
        let run = run?;
        let seen = seen?;
        if seen.is_none() {
            for h in hits(&client, &url, &query).await? {
                eprintln!(
                    "hit {} {:?}",
                    h["path"],
                    h["content"].as_str().map(|c| c.chars().take(200).collect::<String>())
                );
            }
            eprintln!("run: {run:?}");
        }
        let Some(seen) = seen else {
            anyhow::bail!("search never returned {symbol} ({rel})");
        };
        took.push(seen.as_secs_f64() * 1000.0);
        runs.push(run_took.as_secs_f64() * 1000.0);
        embedded.push(run.chunks_embedded);
    }
    let (p50, p95) = (percentile(&mut took, 50.0), percentile(&mut took, 95.0));
    let max = took.last().copied().unwrap_or(0.0);
    println!("## Commit to searchable ({files} files, {commits} one-file commits)");
    println!("commit to searchable: p50 {p50:.0} ms  p95 {p95:.0} ms  max {max:.0} ms");
    let (r50, r95) = (percentile(&mut runs, 50.0), percentile(&mut runs, 95.0));
    println!(
        "whole run (checkpoint moved): p50 {r50:.0} ms  p95 {r95:.0} ms  max {:.0} ms",
        runs.last().copied().unwrap_or(0.0)
    );
    println!(
        "chunks embedded per one-file change: min {} max {} (the changed file has 2-3 chunks)",
        embedded.iter().min().unwrap_or(&0),
        embedded.iter().max().unwrap_or(&0)
    );
    server.stop().await?;
    Ok(())
}
