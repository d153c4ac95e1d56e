//! Secrets never indexed, through the real binary: `cairn index` on the
//! planted-secrets fixture with debug logging, then `cairn search` for every
//! planted value and for the names they were assigned to. No planted value
//! may appear in search output, in either stream's logs, or in any byte of
//! the data dir. A control run with `CAIRN_INDEX__REDACT_SECRETS=false`
//! shows the same checks would catch a leak.

use std::path::{Path, PathBuf};

use crate::{cairn, fixture_repo_named};

/// (rule id, value) of every planted value.
const PLANTED: &str = include_str!("../../fixtures/planted-secrets.tsv");

fn planted() -> Vec<(&'static str, &'static str)> {
    PLANTED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once('\t').expect("rule<TAB>value"))
        .collect()
}

/// Names the planted values are assigned to in the fixture.
const NAMES: &[&str] = &[
    "GITHUB_TOKEN",
    "SLACK_WEBHOOK_URL",
    "DATABASE_URL",
    "SESSION_SECRET",
    "SENDGRID_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "STRIPE_SECRET_KEY",
    "DB_PASSWORD",
    "registryToken",
    "botToken",
    "connectionString AccountKey",
    "analytics api_key",
    "private_key service_account",
    "RSA PRIVATE KEY",
    "GOOGLE_MAPS_KEY",
    "TWILIO_KEY_SID",
    "demoSession",
    "billingDb password",
    "githubAppToken",
    "clientSecret",
    "releasePAT",
    "_authToken",
    "NPM_TOKEN",
    "VAULT_TOKEN",
    "REDIS_URL",
    "SMTP_PASS",
    "MYSQL_ROOTPW",
    "PROXY_AUTH",
    "SIGNING_KEY",
    "LEDGER_API_KEY",
    "HF_TOKEN",
    "PYPI_TOKEN",
    "ledgerApiKey",
    "OPENAI_API_KEY",
    "WAREHOUSE_PASSWORD",
    "X-Shopify-Access-Token",
    "x-api-key",
    "webhook-secret",
    "db-password",
];

/// Runs `cairn` with debug logging everywhere; returns (success, stdout, stderr).
fn run_verbose(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = cairn();
    cmd.env("RUST_LOG", "debug").env("CAIRN_LOG__LEVEL", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().expect("cairn runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Planted values (whole, or their tail half) present in `text`.
fn leaked(text: &str) -> Vec<&'static str> {
    planted()
        .into_iter()
        .filter(|(_, v)| text.contains(v) || text.contains(&v[v.len() / 2..]))
        .map(|(_, v)| v)
        .collect()
}

/// Planted values present anywhere in the bytes of the files under `dir`.
fn leaked_bytes(dir: &Path) -> Vec<String> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                files.push((p, bytes));
            }
        }
    }
    assert!(!files.is_empty(), "no files under {}", dir.display());
    let mut out = Vec::new();
    for (_, v) in planted() {
        for needle in [v, &v[v.len() / 2..]] {
            if let Some((p, _)) = files
                .iter()
                .find(|(_, b)| memchr::memmem::find(b, needle.as_bytes()).is_some())
            {
                out.push(format!("{needle} in {}", p.display()));
                break;
            }
        }
    }
    out
}

#[test]
fn secrets_planted_in_a_repo_are_not_in_search_logs_or_data_dir() {
    let repo = fixture_repo_named("planted-secrets");
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (ok, out, err) = run_verbose(
        &[
            "index",
            repo.path().to_str().unwrap(),
            "--repo",
            "billing",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(ok, "index failed: {err}");
    assert!(
        err.contains("DEBUG") || err.contains("\"level\":\"DEBUG\""),
        "debug logs are on"
    );
    assert!(
        err.contains("redacted a secret"),
        "each redaction is logged (rule, path, line)"
    );
    assert!(
        out.contains(
            "secrets redacted: anthropic-api-key 2, aws-access-key-id 1, aws-secret-access-key 1, azure-storage-key 1, \
             bearer-token 1, cairn-token 1, databricks-token 1, digitalocean-token 1, gcp-api-key 1, gcp-service-account 1, \
             generic-secret 5, github-fine-grained-pat 1, github-token 2, gitlab-token 1, google-oauth-token 1, \
             huggingface-token 2, jwt 1, k8s-secret-data 3, npm-token 1, npmrc-auth-token 1, openai-api-key 2, private-key 1, \
             pypi-token 1, secret-assignment 11, sendgrid-api-key 1, shopify-token 1, slack-token 1, slack-webhook 1, \
             stripe-key 1, twilio-api-key 1, url-credentials 2, vault-token 1"
        ),
        "{out}"
    );
    assert_eq!(leaked(&out), Vec::<&str>::new(), "index stdout");
    assert_eq!(leaked(&err), Vec::<&str>::new(), "index logs");

    // Repo status: the registry record carries the counts.
    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("repos.json")).unwrap()).unwrap();
    let rec = &registry["billing"];
    assert_eq!(rec["redact_secrets"], true);
    assert_eq!(rec["secrets_redacted"]["generic-secret"], 5, "{rec}");
    assert_eq!(rec["secrets_redacted"]["private-key"], 1, "{rec}");

    let values: Vec<&str> = planted().into_iter().map(|(_, v)| v).collect();
    let mut saw_marker = false;
    for query in values.iter().chain(NAMES) {
        let (ok, out, err) = run_verbose(&["search", query, "-k", "20", "--json", "--data-dir", d], &[]);
        assert!(ok, "search {query:?} failed: {err}");
        assert_eq!(leaked(&out), Vec::<&str>::new(), "search output for {query:?}");
        // The query itself is echoed in debug logs when it is a planted
        // value; everything else in the logs must be clean.
        let logs = err.replace(query, "<query>");
        assert_eq!(leaked(&logs), Vec::<&str>::new(), "search logs for {query:?}");
        saw_marker |= out.contains("[REDACTED:");
    }
    assert!(saw_marker, "searching the names finds the redacted lines");

    let leaks = leaked_bytes(data.path());
    assert!(leaks.is_empty(), "planted values in the data dir: {leaks:#?}");
}

#[test]
fn secrets_control_run_without_redaction_is_caught_by_the_same_checks() {
    let repo = fixture_repo_named("planted-secrets");
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let off = [("CAIRN_INDEX__REDACT_SECRETS", "false")];
    let (ok, out, err) = run_verbose(
        &[
            "index",
            repo.path().to_str().unwrap(),
            "--repo",
            "billing",
            "--data-dir",
            d,
        ],
        &off,
    );
    assert!(ok, "index failed: {err}");
    assert!(
        out.contains("secrets redacted: off (index.redact_secrets = false)"),
        "{out}"
    );
    let (ok, out, _) = run_verbose(&["search", "GITHUB_TOKEN", "-k", "20", "--json", "--data-dir", d], &off);
    assert!(ok);
    assert!(!leaked(&out).is_empty(), "unredacted, the token is in search output");
    assert_eq!(leaked_bytes(data.path()).len(), planted().len());
}
