//! The indexer daemon inside `cairn serve --config`: repos from the config
//! indexed at start, reindex calls and webhooks making a new commit
//! searchable, the status shape, the read and writer rules on the repo API,
//! a watched local directory, `/metrics`, and the CLI around it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Server, fixture_repo, git, run, token};

/// Generous: the first run loads the model and indexes the fixture.
const WAIT: Duration = Duration::from_secs(180);

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let f = dir.join("cairn.toml");
    std::fs::write(&f, text).unwrap();
    f
}

async fn get(c: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = c.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn send(c: &reqwest::Client, method: reqwest::Method, url: &str, token: Option<&str>) -> (u16, Value) {
    let post = method == reqwest::Method::POST;
    let mut req = c.request(method, url);
    if post {
        // POST routes take JSON only (415 otherwise), even without a body
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls `GET /v1/repos/{name}` until `done` holds for its status.
async fn wait_status(c: &reqwest::Client, server: &Server, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, v) = get(c, &server.url(&format!("/v1/repos/{name}")), None).await;
        if status == 200 && done(&v) {
            return v;
        }
        assert!(
            started.elapsed() < WAIT,
            "repo {name} never reached the state: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a search in `repo` returns a chunk containing `needle`.
async fn searchable(c: &reqwest::Client, server: &Server, repo: &str, query: &str, needle: &str) -> bool {
    let resp = c
        .post(server.url("/v1/search"))
        .json(&json!({"query": query, "repos": [repo], "k": 10}))
        .send()
        .await
        .unwrap();
    if resp.status().as_u16() != 200 {
        return false;
    }
    let v: Value = resp.json().await.unwrap();
    v["results"].as_array().is_some_and(|r| {
        r.iter()
            .any(|h| h["content"].as_str().is_some_and(|t| t.contains(needle)))
    })
}

async fn wait_searchable(c: &reqwest::Client, server: &Server, repo: &str, query: &str, needle: &str) -> Duration {
    let started = Instant::now();
    while !searchable(c, server, repo, query, needle).await {
        assert!(started.elapsed() < WAIT, "{needle} never became searchable in {repo}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn head(repo: &Path) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn github_signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(ring::hmac::sign(&key, body).as_ref()))
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_repo_is_indexed_at_start_then_follows_reindex_and_webhooks() {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let config = write_config(
        data.path(),
        &format!(
            "[webhooks]\ngithub_secret_env = \"E2E_GITHUB_SECRET\"\n\n[[repos]]\nname = \"acme/auth\"\nurl = \"{}\"\nevery = \"1h\"\nsensitivity = \"confidential\"\n",
            repo.path().display()
        ),
    );
    let server = Server::start_with_env(
        data.path(),
        &["--config", config.to_str().unwrap()],
        &[("E2E_GITHUB_SECRET", "hush")],
    );
    let c = reqwest::Client::new();

    // indexed at start: it had no checkpoint
    let first = head(repo.path());
    let v = wait_status(&c, &server, "acme/auth", |v| v["indexed_commit"] == first.as_str()).await;
    for field in [
        "name",
        "state",
        "head_commit",
        "indexed_commit",
        "files",
        "chunks",
        "skipped",
        "last_indexed_at",
        "last_error",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {v}");
    }
    assert_eq!(v["name"], "acme/auth");
    assert!(v["skipped"].is_object(), "{v}");
    assert!(
        v["files"].as_u64().unwrap() >= 3 && v["chunks"].as_u64().unwrap() >= 3,
        "{v}"
    );
    assert!(v["last_error"].is_null(), "{v}");
    let (status, list) = get(&c, &server.url("/v1/repos"), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["repos"][0]["name"], "acme/auth", "{list}");

    // a new commit, then a reindex call: 202, and the new code becomes searchable
    std::fs::write(
        repo.path().join("src/quota.rs"),
        "/// Counts how many zebra quotas a tenant has left.\npub fn remaining_zebra_quota(used: u32, limit: u32) -> u32 {\n    limit.saturating_sub(used)\n}\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "quota"]);
    let second = head(repo.path());
    let (status, v) = send(
        &c,
        reqwest::Method::POST,
        &server.url("/v1/repos/acme/auth/reindex"),
        None,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let took = wait_searchable(&c, &server, "acme/auth", "zebra quota left", "remaining_zebra_quota").await;
    eprintln!("reindex call to searchable: {took:?}");
    wait_status(&c, &server, "acme/auth", |v| v["indexed_commit"] == second.as_str()).await;

    // webhooks: a bad signature is refused, a good one triggers the repo
    std::fs::write(
        repo.path().join("src/llama.rs"),
        "/// Shears the llama wool exactly once per season.\npub fn shear_llama_wool(season: u8) -> bool {\n    season % 4 == 1\n}\n",
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "llama"]);
    let third = head(repo.path());
    let body = json!({
        "ref": "refs/heads/main",
        "after": third,
        "repository": {"full_name": "acme/auth", "clone_url": "https://git.example/acme/auth.git", "default_branch": "main"}
    })
    .to_string();
    let hook = server.url("/v1/webhooks/github");
    let resp = c
        .post(&hook)
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature("wrong", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = c
        .post(&hook)
        .header("x-github-event", "push")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401, "no signature");
    let resp = c
        .post(&hook)
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature("hush", body.as_bytes()))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["triggered"], json!(["acme/auth"]), "{v}");
    let took = wait_searchable(&c, &server, "acme/auth", "shear the llama wool", "shear_llama_wool").await;
    eprintln!("webhook to searchable: {took:?}");
    // gitlab is not configured: refused
    let resp = c
        .post(server.url("/v1/webhooks/gitlab"))
        .header("x-gitlab-token", "hush")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // the configured sensitivity is on the record; unknown repos are 404 without auth
    let reg: Value = serde_json::from_slice(&std::fs::read(data.path().join("repos.json")).unwrap()).unwrap();
    assert_eq!(reg["acme/auth"]["sensitivity"], "confidential", "{reg}");
    let (status, _) = send(&c, reqwest::Method::POST, &server.url("/v1/repos/nope/reindex"), None).await;
    assert_eq!(status, 404);

    let (status, text) = get(&c, &server.url("/metrics"), None).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_string();
    for needle in [
        "cairn_index_runs_total{result=\"ok\"}",
        "cairn_embed_batch_seconds_count",
        "cairn_index_queue_depth",
        "cairn_repo_lag_seconds{repo=\"acme/auth\"}",
        "cairn_tokens_embedded_total",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    // DELETE purges it: its chunks no longer come back
    let (status, v) = send(&c, reqwest::Method::DELETE, &server.url("/v1/repos/acme/auth"), None).await;
    assert_eq!(status, 200, "{v}");
    let reg: Value = serde_json::from_slice(&std::fs::read(data.path().join("repos.json")).unwrap()).unwrap();
    assert!(reg.get("acme/auth").is_none(), "{reg}");
    let (status, v) = get(&c, &server.url("/v1/repos/acme/auth"), None).await;
    assert_eq!(status, 200, "a configured repo keeps a status: {v}");
    assert!(v["indexed_commit"].is_null(), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn repo_api_read_and_writer_rules() {
    let open = fixture_repo();
    let secret = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let config = write_config(
        data.path(),
        &format!(
            "[auth]\nmode = \"tokens\"\n\n[[repos]]\nname = \"team/open\"\nurl = \"{}\"\ngroups = [\"dev\"]\nmaintainers = [\"alice\"]\n\n[[repos]]\nname = \"team/secret\"\nurl = \"{}\"\ngroups = [\"sec\"]\n",
            open.path().display(),
            secret.path().display()
        ),
    );
    let bob = token(d, "bob", "dev");
    let alice = token(d, "alice", "dev");
    let admin = token(d, "root", "admin");
    let server = Server::start_with(data.path(), &["--config", config.to_str().unwrap()]);
    let c = reqwest::Client::new();
    let url = |p: &str| server.url(p);

    let (status, _) = get(&c, &url("/v1/repos"), None).await;
    assert_eq!(status, 401);
    let (status, v) = get(&c, &url("/v1/repos"), Some(&bob)).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team/open"], "only readable repos are listed");
    let (status, v) = get(&c, &url("/v1/repos"), Some(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(v["repos"].as_array().unwrap().len(), 2);

    // forbidden and missing look the same
    let (s1, forbidden) = get(&c, &url("/v1/repos/team/secret"), Some(&bob)).await;
    let (s2, missing) = get(&c, &url("/v1/repos/team/nope"), Some(&bob)).await;
    assert_eq!((s1, s2), (403, 403), "{forbidden} {missing}");
    assert_eq!(
        forbidden["error"].as_str().unwrap().replace("team/secret", "X"),
        missing["error"].as_str().unwrap().replace("team/nope", "X")
    );
    let (status, _) = send(
        &c,
        reqwest::Method::POST,
        &url("/v1/repos/team/nope/reindex"),
        Some(&bob),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&c, reqwest::Method::DELETE, &url("/v1/repos/team/secret"), Some(&bob)).await;
    assert_eq!(status, 403);

    // a reader who is not a maintainer may not trigger; a maintainer and an admin may
    let (status, v) = send(
        &c,
        reqwest::Method::POST,
        &url("/v1/repos/team/open/reindex"),
        Some(&bob),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = send(
        &c,
        reqwest::Method::POST,
        &url("/v1/repos/team/open/reindex?full=true"),
        Some(&alice),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["full"], true);
    let (status, _) = send(
        &c,
        reqwest::Method::POST,
        &url("/v1/repos/team/secret/reindex"),
        Some(&admin),
    )
    .await;
    assert_eq!(status, 202);

    // the configured groups reach the record once it is indexed
    let started = Instant::now();
    loop {
        let reg: Value = std::fs::read(data.path().join("repos.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        if reg["team/open"]["groups"] == json!(["dev"]) && reg["team/secret"]["groups"] == json!(["sec"]) {
            break;
        }
        assert!(started.elapsed() < WAIT, "groups never applied: {reg}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // gRPC: the same rules
    {
        use cairn_proto::v1::indexer_client::IndexerClient;
        use cairn_proto::v1::{GetRepoRequest, ListReposRequest, ReindexRequest};
        let mut client = IndexerClient::connect(format!("http://{}", server.grpc)).await.unwrap();
        fn with<T>(t: &str, mut req: tonic::Request<T>) -> tonic::Request<T> {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
            req
        }
        let list = client
            .list_repos(with(&bob, tonic::Request::new(ListReposRequest {})))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.repos.len(), 1);
        assert_eq!(list.repos[0].name, "team/open");
        // the index's generation, as in GET /v1/repos: one serving, none building
        let index = list.index.expect("ListRepos carries the index status");
        let serving = index.serving.expect("a serving generation");
        assert_eq!((serving.generation.as_str(), serving.dim), ("edge", 384));
        assert!(index.building.is_none(), "{:?}", index.building);
        let e = client
            .get_repo(with(
                &bob,
                tonic::Request::new(GetRepoRequest {
                    name: "team/secret".into(),
                }),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let e = client
            .reindex(with(
                &bob,
                tonic::Request::new(ReindexRequest {
                    name: "team/open".into(),
                    full: false,
                }),
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        let ok = client
            .reindex(with(
                &alice,
                tonic::Request::new(ReindexRequest {
                    name: "team/open".into(),
                    full: false,
                }),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ok.repo.unwrap().name, "team/open");
        let e = client
            .list_repos(tonic::Request::new(ListReposRequest {}))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    // an admin removes; webhooks need no bearer token but refuse unsigned calls
    let (status, _) = send(&c, reqwest::Method::DELETE, &url("/v1/repos/team/secret"), Some(&admin)).await;
    assert_eq!(status, 200);
    let resp = c.post(url("/v1/webhooks/github")).body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // a clean stop writes every queued audit record (SIGKILL would not)
    let mut server = server;
    server.terminate();

    // every call was audited, denials as denials
    let audit = std::fs::read_to_string(data.path().join("audit/audit.jsonl")).unwrap();
    for surface in [
        "http.repos.list",
        "http.repos.get",
        "http.repos.reindex",
        "http.repos.delete",
        "http.webhook.github",
        "grpc.repos.list",
        "grpc.repos.reindex",
    ] {
        assert!(audit.contains(&format!("\"{surface}\"")), "{surface} not audited");
    }
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"http.repos.get\"") && l.contains("\"deny\"") && l.contains("\"bob\"")),
        "the forbidden read is audited as a denial"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watched_local_directory_follows_saved_edits() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/repos/acme-auth/src");
    for f in ["lib.rs", "rate_limit.py"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let config = write_config(
        data.path(),
        &format!(
            "[indexer]\ndebounce_ms = 300\n\n[[repos]]\nname = \"notes\"\nurl = \"{}\"\nevery = \"1h\"\n",
            dir.path().display()
        ),
    );
    let server = Server::start_with(data.path(), &["--config", config.to_str().unwrap()]);
    let c = reqwest::Client::new();
    wait_status(&c, &server, "notes", |v| {
        v["last_indexed_at"].is_string() && v["state"] == "idle"
    })
    .await;
    let mut measured = Vec::new();
    for (i, word) in ["pelican", "walrus"].iter().enumerate() {
        let body = format!(
            "def count_{word}_feathers(n{i}):\n    \"\"\"Counts the {word} feathers in the aviary.\"\"\"\n    return n{i} * 2\n"
        );
        let path = dir.path().join(format!("{word}.py"));
        std::fs::write(&path, body).unwrap();
        let took = wait_searchable(
            &c,
            &server,
            "notes",
            &format!("count the {word} feathers"),
            &format!("count_{word}_feathers"),
        )
        .await;
        measured.push(took);
    }
    eprintln!("saved edit to searchable (watched directory): {measured:?}");
}

#[test]
fn indexer_command_is_refused_with_the_embedded_store_and_repo_remove_works() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (ok, _, err) = run(&["indexer", "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("cairn serve"), "{err}");
    assert!(err.contains("embedded store"), "{err}");

    let repo = fixture_repo();
    let (ok, _, err) = run(&[
        "index",
        repo.path().to_str().unwrap(),
        "--repo",
        "gone",
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["repo", "remove", "gone", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("removed gone"), "{out}");
    let reg = std::fs::read_to_string(data.path().join("repos.json")).unwrap();
    assert!(!reg.contains("\"gone\""), "{reg}");
    let (ok, out, _) = run(&["search", "token bucket", "--data-dir", d, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["results"].as_array().unwrap().is_empty(), "{v}");

    // bad repos in the config: every problem at once, exit 2
    let f = write_config(
        data.path(),
        "[[repos]]\nname = \"a\"\nurl = \"/x\"\nevery = \"soon\"\n[[repos]]\nname = \"a\"\nurl = \"/y\"\ncron = \"* *\"\n",
    );
    let out = crate::cairn()
        .args(["--config", f.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["repos.a.every", "defined twice", "repos.a.cron"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// A flood of forged webhooks from one address: past its bucket the calls
/// answer 429 before any signature is checked, and the refusals leave one
/// audit record per window, the next one counting those left out.
#[tokio::test(flavor = "multi_thread")]
async fn forged_webhooks_are_rate_limited_per_source_and_audited_once_per_window() {
    let (_repo, data) = crate::indexed_data_dir();
    let config = write_config(
        data.path(),
        "[webhooks]\ngithub_secret_env = \"E2E_GITHUB_SECRET\"\nper_source_per_minute = 60\nper_source_burst = 5\nrefusal_audit_window_secs = 2\n",
    );
    let mut server = Server::start_with_env(
        data.path(),
        &["--config", config.to_str().unwrap()],
        &[("E2E_GITHUB_SECRET", "hush")],
    );
    let c = reqwest::Client::new();
    let body = json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/auth"}}).to_string();
    let forged = || {
        c.post(server.url("/v1/webhooks/github"))
            .header("x-github-event", "push")
            .header("x-hub-signature-256", github_signature("wrong", body.as_bytes()))
            .body(body.clone())
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(forged().await.unwrap().status().as_u16());
    }
    // the bucket refills one call a second: the first five, perhaps one more
    let refused_early = statuses.iter().filter(|&&s| s == 401).count();
    assert!((5..=6).contains(&refused_early), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        12 - refused_early,
        "{statuses:?}"
    );
    // past the window, the next refusal is recorded with the count
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!([401, 429].contains(&forged().await.unwrap().status().as_u16()));
    server.terminate();

    let audit = std::fs::read_to_string(data.path().join("audit/audit.jsonl")).unwrap();
    let hooks: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["surface"] == "http.webhook.github")
        .collect();
    assert_eq!(hooks.len(), 2, "one record per window: {hooks:?}");
    assert_eq!(hooks[0]["principal"], "webhook:github@127.0.0.1");
    assert_eq!(hooks[0]["outcome"], "unauthenticated");
    assert!(hooks[0].get("left_out").is_none(), "{}", hooks[0]);
    assert_eq!(hooks[1]["left_out"], 11, "{}", hooks[1]);
}
