//! The planted-secrets fixture through the real pipeline: after indexing,
//! no planted value is in any stored payload or anywhere in the bytes of the
//! store, and the per-rule counts are exact. A control run with redaction
//! off proves the byte scan would have seen the values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::embed::{Embed, HashEmbedder};
use cairn_indexer::pipeline::{IndexOptions, IndexReport, NoProgress, index_snapshot};
use cairn_indexer::source::{FileLimits, read};
use cairn_indexer::sparse;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::{SearchFilter, VectorStore};

/// (rule id, value) of every planted value.
const PLANTED: &str = include_str!("../../../fixtures/planted-secrets.tsv");

pub fn planted() -> Vec<(&'static str, &'static str)> {
    PLANTED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('\t').expect("rule<TAB>value"))
        .collect()
}

/// Redactions the fixture must produce, per rule.
fn expected_counts() -> BTreeMap<String, usize> {
    [
        ("anthropic-api-key", 2),
        ("aws-access-key-id", 1),
        ("aws-secret-access-key", 1),
        ("azure-storage-key", 1),
        ("bearer-token", 1),
        ("cairn-token", 1),
        ("databricks-token", 1),
        ("digitalocean-token", 1),
        ("gcp-api-key", 1),
        ("gcp-service-account", 1),
        ("generic-secret", 5),
        ("github-fine-grained-pat", 1),
        ("github-token", 2),
        ("gitlab-token", 1),
        ("google-oauth-token", 1),
        ("huggingface-token", 2),
        ("jwt", 1),
        ("k8s-secret-data", 3),
        ("npm-token", 1),
        ("npmrc-auth-token", 1),
        ("openai-api-key", 2),
        ("private-key", 1),
        ("pypi-token", 1),
        ("secret-assignment", 11),
        ("sendgrid-api-key", 1),
        ("shopify-token", 1),
        ("slack-token", 1),
        ("slack-webhook", 1),
        ("stripe-key", 1),
        ("twilio-api-key", 1),
        ("url-credentials", 2),
        ("vault-token", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The fixture as a committed git repository (so dotfiles like `.env` are read).
fn fixture_git_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/repos/planted-secrets");
    copy_dir(&src, dir.path());
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            "init",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
    dir
}

/// Every file's bytes under `dir`, recursively.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

/// Planted values found in the bytes of `dir` (whole values and their tail
/// halves, so a half-redacted value counts too).
fn leaks_in(dir: &Path) -> Vec<String> {
    let files = all_bytes(dir);
    let mut leaks = Vec::new();
    for (_, value) in planted() {
        let tail = &value[value.len() / 2..];
        for needle in [value, tail] {
            if needle.len() >= 8
                && let Some((p, _)) = files
                    .iter()
                    .find(|(_, b)| memchr::memmem::find(b, needle.as_bytes()).is_some())
            {
                leaks.push(format!("{needle} in {}", p.display()));
                break;
            }
        }
    }
    leaks
}

async fn index(repo: &Path, store_dir: &Path, redact: bool) -> (IndexReport, Arc<dyn VectorStore>, Arc<dyn Embed>) {
    let embedder: Arc<dyn Embed> = Arc::new(HashEmbedder::new(32));
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir, 32).unwrap());
    let snap = read(repo, &FileLimits::default()).unwrap();
    let mut options = IndexOptions::new("planted");
    options.redact_secrets = redact;
    let chunker = Arc::new(Chunker::new(ChunkerConfig::default()));
    let report = index_snapshot(snap, &options, chunker, embedder.clone(), store.clone(), &NoProgress)
        .await
        .unwrap();
    (report, store, embedder)
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_secrets_never_reach_the_store() {
    let repo = fixture_git_repo();
    let store_dir = tempfile::tempdir().unwrap();
    let (report, store, embedder) = index(repo.path(), store_dir.path(), true).await;
    assert_eq!(report.files, 18, "every fixture file, dotfiles included, is indexed");
    assert_eq!(report.secrets, expected_counts());

    // Every stored payload, fetched through the store (k above the count).
    let all = store
        .search_dense(embedder.embed_query("billing").unwrap(), &SearchFilter::default(), 1000)
        .await
        .unwrap();
    assert_eq!(all.len(), report.chunks);
    let payloads = serde_json::to_string(&all.iter().map(|h| &h.payload).collect::<Vec<_>>()).unwrap();
    for (rule, value) in planted() {
        assert!(!payloads.contains(value), "{rule} value stored");
        // Also not retrievable by searching for it, dense or sparse.
        for hits in [
            store
                .search_sparse(sparse::query_vector(value), &SearchFilter::default(), 50)
                .await
                .unwrap(),
            store
                .search_dense(embedder.embed_query(value).unwrap(), &SearchFilter::default(), 50)
                .await
                .unwrap(),
        ] {
            assert!(hits.iter().all(|h| !h.payload.content.contains(value)));
        }
    }
    // What stays: the marker, the names around it, true line numbers.
    assert!(payloads.contains("GITHUB_TOKEN=[REDACTED:github-token]"), "{payloads}");
    assert!(payloads.contains("DB_PASSWORD = \\\"[REDACTED:generic-secret]\\\""));
    for kept in [
        "DB_PASSWORD=[REDACTED:secret-assignment]",
        "pub const LEDGER_API_KEY: &str = \\\"[REDACTED:secret-assignment]\\\"",
        "Authorization: Bearer [REDACTED:openai-api-key]",
        "redis://:[REDACTED:url-credentials]@cache.internal",
        "db-password: [REDACTED:k8s-secret-data]",
        // The notebook's JSON-escaped literal, escaped once more in the payloads.
        "WAREHOUSE_PASSWORD = \\\\\\\"[REDACTED:secret-assignment]\\\\\\\"",
        // Look-alikes stay.
        "REDIS_PASSWORD=${REDIS_PASSWORD}",
        "MAX_KEY=5",
        "pub const KEY_LEN: usize = 32;",
        "LOG_LEVEL: info",
    ] {
        assert!(payloads.contains(kept), "{kept} not in {payloads}");
    }
    let pem = all.iter().find(|h| h.payload.path == "keys/deploy_key.pem").unwrap();
    assert_eq!(
        pem.payload
            .content
            .lines()
            .filter(|l| *l == "[REDACTED:private-key]")
            .count(),
        7,
        "one marker per body line: {}",
        pem.payload.content
    );
    let charge = all
        .iter()
        .find(|h| h.payload.content.contains("def charge_customer"))
        .unwrap();
    let original = std::fs::read_to_string(repo.path().join("config/settings.py")).unwrap();
    let line = original
        .lines()
        .position(|l| l.contains("def charge_customer"))
        .unwrap()
        + 1;
    assert!(charge.payload.start_line as usize <= line && line <= charge.payload.end_line as usize);

    drop(store);
    let leaks = leaks_in(store_dir.path());
    assert!(leaks.is_empty(), "planted values in the store's files: {leaks:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn control_without_redaction_the_byte_scan_sees_the_values() {
    let repo = fixture_git_repo();
    let store_dir = tempfile::tempdir().unwrap();
    let (report, store, _) = index(repo.path(), store_dir.path(), false).await;
    assert!(report.secrets.is_empty() && !report.redact_secrets);
    drop(store);
    let leaks = leaks_in(store_dir.path());
    assert_eq!(
        leaks.len(),
        planted().len(),
        "with redaction off every value is stored, and the scan finds it"
    );
}

/// A rules file named in the index options adds its rules to the built-in
/// ones, through the real pipeline.
#[tokio::test(flavor = "multi_thread")]
async fn a_rules_file_in_the_options_adds_rules() {
    let repo = tempfile::tempdir().unwrap();
    let token = "acme_live_k3j9x2m8q7w1z5n4b6v0c8l2";
    std::fs::write(
        repo.path().join("client.py"),
        format!("ACME = \"{token}\"\n\n\ndef call():\n    return ACME\n"),
    )
    .unwrap();
    let rules = tempfile::tempdir().unwrap();
    let rules_file = rules.path().join("gitleaks.toml");
    std::fs::write(
        &rules_file,
        "[[rules]]\nid = \"acme-token\"\nregex = '''acme_(?:live|test)_[a-z0-9]{24}'''\nkeywords = [\"acme_\"]\n",
    )
    .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let embedder: Arc<dyn Embed> = Arc::new(HashEmbedder::new(32));
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 32).unwrap());
    let snap = read(repo.path(), &FileLimits::default()).unwrap();
    let mut options = IndexOptions::new("acme");
    options.secret_rules_file = Some(rules_file.clone());
    let chunker = Arc::new(Chunker::new(ChunkerConfig::default()));
    let report = index_snapshot(
        snap,
        &options,
        chunker.clone(),
        embedder.clone(),
        store.clone(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.secrets.get("acme-token"), Some(&1), "{:?}", report.secrets);
    drop(store);
    for (p, bytes) in all_bytes(store_dir.path()) {
        assert!(
            memchr::memmem::find(&bytes, token.as_bytes()).is_none(),
            "{}",
            p.display()
        );
    }

    // A broken rules file fails the run, naming the file and the rule.
    std::fs::write(
        &rules_file,
        "[[rules]]\nid = \"acme-token\"\nregex = '''(?<=acme_)x'''\n",
    )
    .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 32).unwrap());
    let snap = read(repo.path(), &FileLimits::default()).unwrap();
    let err = index_snapshot(snap, &options, chunker, embedder, store, &NoProgress)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gitleaks.toml") && err.contains("acme-token") && err.contains("look-around"),
        "{err}"
    );
}
