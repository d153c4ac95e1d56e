//! Crash safety of `cairn index`: the real binary, with the deterministic
//! test embedder (`[embed] kind = "hash"`), is killed with `SIGKILL` at
//! random moments while it indexes; after a final uninterrupted run the
//! index equals a clean build of the same commit (same point ids and
//! payloads, nothing missing, nothing extra).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cairn_engine::engine::HASH_EMBED_DIM;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::{ChunkPayload, VectorStore};

use crate::{cairn, git};

const REPO: &str = "crashy";

fn write_files(dir: &Path, version: usize, files: usize) {
    for i in 0..files {
        // version 2 changes every third file, deletes every seventh, adds some
        let path = dir.join(format!("src/mod{}/file{i}.rs", i % 10));
        if version == 2 && i % 7 == 0 {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tag = if version == 2 && i % 3 == 0 { "v2" } else { "v1" };
        let mut text = String::new();
        for f in 0..6 {
            text += &format!(
                "/// Handles request {f} of module {i} ({tag}).\npub fn handle_{i}_{f}(input: &str) -> usize {{\n    \
                 let trimmed = input.trim();\n    trimmed.len() * {f} + {i}\n}}\n\n"
            );
        }
        std::fs::write(path, text).unwrap();
    }
    if version == 2 {
        for i in 0..files / 10 {
            std::fs::write(
                dir.join(format!("src/new{i}.py")),
                format!("def added_{i}():\n    return {i}\n"),
            )
            .unwrap();
        }
    }
}

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("cairn.toml");
    std::fs::write(&path, "[embed]\nkind = \"hash\"\n").unwrap();
    path
}

fn index_args<'a>(config: &'a str, repo: &'a str, data: &'a str) -> [&'a str; 8] {
    ["--config", config, "index", repo, "--repo", REPO, "--data-dir", data]
}

/// Runs `cairn index` to completion; returns how long it took.
fn index(config: &str, repo: &str, data: &str) -> Duration {
    let started = Instant::now();
    let out = cairn().args(index_args(config, repo, data)).output().unwrap();
    assert!(
        out.status.success(),
        "cairn index failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// Starts `cairn index` and kills it (SIGKILL) after `after`.
fn index_killed(config: &str, repo: &str, data: &str, after: Duration) {
    let mut child = cairn()
        .args(index_args(config, repo, data))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL on unix
    let _ = child.wait();
}

fn points(data: &Path) -> Vec<(String, ChunkPayload)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = EdgeStore::open(&data.join("store/edge"), HASH_EMBED_DIM).unwrap();
        store.scroll_repo(REPO).await.unwrap()
    })
}

fn indexed_commit(data: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(data.join("repos.json")).unwrap()).unwrap();
    v[REPO]["indexed_commit"].as_str().unwrap().to_string()
}

fn head(dir: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn sigkill_during_indexing_converges_to_a_clean_build() {
    let work = tempfile::tempdir().unwrap();
    let cfg = config(work.path());
    let cfg = cfg.to_str().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    write_files(&repo, 1, 400);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    let r = repo.to_str().unwrap();

    // How long a clean full build takes: the window to kill in.
    let clean1 = work.path().join("clean1");
    let took = index(cfg, r, clean1.to_str().unwrap());
    let window = took.as_millis().max(50) as u64;

    // A seeded sequence of kill moments (splitmix64), spread over the run.
    let mut seed = 0x5EED_u64;
    let mut next_delay = || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Duration::from_millis((z ^ (z >> 31)) % window)
    };

    let data = work.path().join("data");
    let d = data.to_str().unwrap();
    // Killed during the first (full) build, then finished.
    for _ in 0..5 {
        index_killed(cfg, r, d, next_delay());
    }
    index(cfg, r, d);
    assert_eq!(points(&data), points(&clean1), "after the first build");

    // A commit changing, deleting and adding many files; killed during the
    // incremental run several times, then finished.
    write_files(&repo, 2, 400);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v2"]);
    for _ in 0..6 {
        index_killed(cfg, r, d, next_delay());
    }
    index(cfg, r, d);
    let clean2 = work.path().join("clean2");
    index(cfg, r, clean2.to_str().unwrap());
    let (got, want) = (points(&data), points(&clean2));
    assert_eq!(got.len(), want.len(), "same number of points");
    assert!(got == want, "the index after the kills differs from a clean build");
    assert_eq!(indexed_commit(&data), head(&repo));
    assert!(want.iter().all(|(_, p)| p.commit == head(&repo)));
}
