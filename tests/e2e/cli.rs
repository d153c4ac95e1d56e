//! `cairn index` and `cairn search` as a user types them.

use std::path::Path;

use crate::{cairn, fixture_repo, git, run};

#[test]
fn index_then_search_finds_the_login_function() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (ok, out, err) = run(&[
        "index",
        repo.path().to_str().unwrap(),
        "--repo",
        "acme-auth",
        "--data-dir",
        d,
    ]);
    assert!(ok, "index failed: {err}");
    assert!(out.contains("indexed acme-auth @ "), "{out}");
    assert!(
        out.contains("skipped: binary 1"),
        "the random logo.bin is skipped as binary: {out}"
    );

    let (ok, out, err) = run(&[
        "search",
        "check the password and issue a session token",
        "--repo",
        "acme-auth",
        "--language",
        "rust",
        "-k",
        "3",
        "--json",
        "--data-dir",
        d,
    ]);
    assert!(ok, "search failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = v["results"].as_array().unwrap();
    assert!(results.iter().all(|h| h["language"] == "rust"), "{v:#}");
    // The impl is small enough to stay one chunk (see ChunkerConfig::container_chars).
    let login = results
        .iter()
        .find(|h| h["content"].as_str().unwrap().contains("pub fn login("))
        .unwrap_or_else(|| panic!("login not in the top 3: {v:#}"));
    assert_eq!(login["path"], "src/lib.rs");
    assert_eq!(login["symbol"], "AuthService", "{v:#}");
    assert_eq!(login["kind"], "impl", "{v:#}");
    let content = login["content"].as_str().unwrap();
    assert!(
        content.contains("/// Checks the password and issues a session token"),
        "{content}"
    );
    assert!(v["took_ms"].as_f64().unwrap() >= 0.0);
}

#[test]
fn reindexing_replaces_old_points() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let r = repo.path().to_str().unwrap();
    assert!(run(&["index", r, "--repo", "acme", "--data-dir", d]).0);
    std::fs::remove_file(repo.path().join("src/rate_limit.py")).unwrap();
    std::fs::write(
        repo.path().join("src/quota.py"),
        "def monthly_quota_remaining(account):\n    return account.limit - account.used\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "quota"]);
    let (ok, _, err) = run(&["index", r, "--repo", "acme", "--data-dir", d]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(&[
        "search",
        "token bucket rate limiting",
        "-k",
        "20",
        "--json",
        "--data-dir",
        d,
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let paths: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["path"].as_str().unwrap())
        .collect();
    assert!(
        !paths.contains(&"src/rate_limit.py"),
        "deleted file still searchable: {paths:?}"
    );
    assert!(paths.contains(&"src/quota.py"), "{paths:?}");
}

#[test]
fn untracked_files_are_not_indexed() {
    let repo = fixture_repo();
    std::fs::write(
        repo.path().join("src/scratch.py"),
        "def untracked_scratch_helper():\n    pass\n",
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    assert!(
        run(&[
            "index",
            repo.path().to_str().unwrap(),
            "--repo",
            "acme",
            "--data-dir",
            d
        ])
        .0
    );
    let (_, out, _) = run(&[
        "search",
        "untracked_scratch_helper",
        "-k",
        "50",
        "--json",
        "--data-dir",
        d,
    ]);
    assert!(!out.contains("scratch.py"), "{out}");
}

#[test]
fn plain_directory_and_bad_input() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (ok, _, err) = run(&["index", "/nonexistent/path", "--repo", "x", "--data-dir", d]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = run(&["index", ".", "--repo", "bad name", "--data-dir", d]);
    assert!(!ok && err.contains("invalid repo name"), "{err}");
    let (ok, _, err) = run(&["search", "x", "--repo", "nope", "--data-dir", d]);
    assert!(!ok && err.contains("unknown repo"), "{err}");
    let (ok, _, err) = run(&["search", "x", "-k", "0", "--data-dir", d]);
    assert!(!ok && err.contains("k must be between 1 and 100"), "{err}");
    let cfg = data.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nhttp = 1\nbogus = true\n").unwrap();
    let (ok, _, err) = run(&["--config", cfg.to_str().unwrap(), "search", "x"]);
    assert!(!ok && err.contains("invalid configuration"), "{err}");
}

#[test]
fn config_check_accepts_the_shipped_configs_and_reports_every_problem() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/cairn.example.toml",
        "deploy/docker/cairn.toml",
        "deploy/systemd/cairn.toml",
        "deploy/helm/cairn/files/cairn.toml",
    ] {
        let path = root.join(file);
        let (ok, stdout, stderr) = run(&["config", "check", "--config", path.to_str().unwrap()]);
        assert!(ok, "{file}: {stderr}");
        assert!(stdout.starts_with("config ok: "), "{stdout}");
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[search]\ncandidates = 0\nrrf_k = -1.0\n").unwrap();
    let out = cairn()
        .args(["config", "check", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("search.candidates"), "{stderr}");
    assert!(stderr.contains("rrf_k"), "{stderr}");
}
