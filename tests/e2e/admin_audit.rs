//! Admin commands in the audit log: `cairn token create | revoke`, `cairn
//! index --groups --sensitivity`, `cairn repo remove` each write one `"type":
//! "admin"` record naming the OS user, into the same chain as `cairn serve`'s
//! request records, whether it runs or not, and `cairn audit verify` accepts
//! the result.

use std::path::Path;

use serde_json::{Value, json};

use crate::{Server, fixture_repo, run, token};

fn records(data: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(data.join("audit/audit.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn admin_actions(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r["type"] == "admin")
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `cairn audit verify` on the data dir's live log with its public key.
fn verify(data: &Path) -> String {
    let (ok, out, err) = run(&[
        "audit",
        "verify",
        data.join("audit/audit.jsonl").to_str().unwrap(),
        "--public-key",
        data.join("audit/signing-key.pub").to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    out
}

#[test]
fn token_commands_are_audited_without_a_server() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let alice = token(d, "alice", "payments");
    let _bob = token(d, "bob", "web");
    let (ok, out, err) = run(&["token", "revoke", "alice", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked 1 token(s)"), "{out}");
    // a failed action is recorded too
    let (ok, _, err) = run(&["token", "revoke", "nobody", "--data-dir", d]);
    assert!(!ok);
    assert!(err.contains("no token with id or principal"), "{err}");
    // listing changes nothing: not an admin record
    let (ok, out, err) = run(&["token", "list", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("bob"), "{out}");

    let recs = records(data.path());
    assert_eq!(
        admin_actions(&recs),
        [
            ("token.create".to_string(), "ok".to_string()),
            ("token.create".into(), "ok".into()),
            ("token.revoke".into(), "ok".into()),
            ("token.revoke".into(), "error".into()),
        ]
    );
    let admin: Vec<&Value> = recs.iter().filter(|r| r["type"] == "admin").collect();
    for r in &admin {
        assert!(!r["os_user"].as_str().unwrap().is_empty(), "{r}");
        assert!(r["time"].is_string(), "{r}");
    }
    assert_eq!(admin[0]["target"], "alice");
    assert_eq!(admin[0]["details"]["groups"], json!(["payments"]));
    assert!(
        admin[0]["details"]["id"].as_str().unwrap().starts_with("tok_"),
        "{}",
        admin[0]
    );
    assert_eq!(admin[2]["target"], "alice");
    assert_eq!(admin[2]["details"]["revoked"], 1);
    assert!(admin[3]["error"].as_str().unwrap().contains("no token"), "{}", admin[3]);
    // each admin record is sealed by a signed checkpoint
    assert!(recs.iter().all(|r| r["type"] != "request"));
    assert_eq!(recs.len(), 8, "{recs:?}");
    assert_eq!(recs.last().unwrap()["type"], "checkpoint");

    // never the token, nor its hash
    let text = std::fs::read_to_string(data.path().join("audit/audit.jsonl")).unwrap();
    assert!(!text.contains(&alice));
    let tokens: Value = serde_json::from_slice(&std::fs::read(data.path().join("tokens.json")).unwrap()).unwrap();
    for t in tokens["tokens"].as_array().unwrap() {
        assert!(!text.contains(t["sha256"].as_str().unwrap()));
    }

    let out = verify(data.path());
    assert!(
        out.contains("4 records (4 admin), 4 checkpoints") && out.contains("4 signatures verified"),
        "{out}"
    );
}

#[test]
fn a_disabled_audit_log_records_no_admin_action() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("cairn.toml");
    std::fs::write(&config, "[audit]\nenabled = false\n").unwrap();
    let (ok, _, err) = run(&[
        "--config",
        config.to_str().unwrap(),
        "token",
        "create",
        "--principal",
        "alice",
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(!data.path().join("audit").exists());
}

/// The fixture indexed as `acme-auth` for group `payments` (with `extra`
/// index arguments), served with `auth.mode = "tokens"`.
fn serve_with_tokens(extra: &[&str]) -> (tempfile::TempDir, tempfile::TempDir, Server) {
    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let mut args = vec![
        "index",
        repo.path().to_str().unwrap(),
        "--repo",
        "acme-auth",
        "--groups",
        "payments",
        "--data-dir",
        d,
    ];
    args.extend_from_slice(extra);
    let (ok, _, err) = run(&args);
    assert!(ok, "{err}");
    let config = data.path().join("cairn.toml");
    std::fs::write(&config, "[auth]\nmode = \"tokens\"\n").unwrap();
    let server = Server::start_with(data.path(), &["--config", config.to_str().unwrap()]);
    (repo, data, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_and_request_records_share_one_chain_while_serve_runs() {
    let (_repo, data, mut server) = serve_with_tokens(&["--sensitivity", "confidential"]);
    let d = data.path().to_str().unwrap();

    // created while the server holds the log open
    let alice = token(d, "alice", "payments");
    let client = reqwest::Client::new();
    let search = |token: String| {
        let req = client
            .post(server.url("/v1/search"))
            .bearer_auth(token)
            .json(&json!({"query": "verify a password hash", "k": 2}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(search(alice.clone()).await, 200);
    // give the writer thread a moment, so the revocation lands between requests
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (ok, _, err) = run(&["token", "revoke", "alice", "--data-dir", d]);
    assert!(ok, "{err}");
    assert_eq!(search(alice.clone()).await, 401);
    server.terminate();
    let (ok, _, err) = run(&["repo", "remove", "acme-auth", "--data-dir", d]);
    assert!(ok, "{err}");

    let recs = records(data.path());
    assert_eq!(
        admin_actions(&recs),
        [
            ("repo.groups".to_string(), "ok".to_string()),
            ("repo.sensitivity".into(), "ok".into()),
            ("token.create".into(), "ok".into()),
            ("token.revoke".into(), "ok".into()),
            ("repo.remove".into(), "ok".into()),
        ],
        "{recs:?}"
    );
    let groups = recs.iter().find(|r| r["action"] == "repo.groups").unwrap();
    assert_eq!(groups["target"], "acme-auth");
    assert_eq!(groups["details"]["groups"], json!(["payments"]));
    let sensitivity = recs.iter().find(|r| r["action"] == "repo.sensitivity").unwrap();
    assert_eq!(sensitivity["details"]["sensitivity"], "confidential");
    let requests: Vec<&Value> = recs.iter().filter(|r| r["type"] == "request").collect();
    assert!(
        requests
            .iter()
            .any(|r| r["principal"] == "alice" && r["surface"] == "http.search" && r["outcome"] == "ok"),
        "{requests:?}"
    );
    let seqs: Vec<u64> = recs.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=recs.len() as u64).collect::<Vec<_>>());
    let out = verify(data.path());
    assert!(out.contains("(5 admin)"), "{out}");
}

/// A gRPC `Watch` stream ends with UNAUTHENTICATED once its token is
/// revoked, instead of streaming repo status to a revoked caller.
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_stream_ends_when_its_token_is_revoked() {
    use cairn_proto::v1::WatchRequest;
    use cairn_proto::v1::indexer_client::IndexerClient;

    let (_repo, data, mut server) = serve_with_tokens(&[]);
    let d = data.path().to_str().unwrap();
    let alice = token(d, "alice", "payments");

    let mut client = IndexerClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    let mut request = tonic::Request::new(WatchRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let mut stream = client.watch(request).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().expect("the current status comes first");
    assert_eq!(first.name, "acme-auth");

    let (ok, _, err) = run(&["token", "revoke", "alice", "--data-dir", d]);
    assert!(ok, "{err}");
    let end = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the watch outlived its token's revocation");
    let status = end.expect_err("the stream ended without saying why");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    server.terminate();
}
