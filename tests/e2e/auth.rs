//! API tokens and the read rule, through the real binary: 401 without
//! credentials, the same 403 for a forbidden and a missing repo, results only
//! from readable repos, admins read all, and revocation applies at once.

use serde_json::{Value, json};

use crate::{Server, cairn, fixture_repo, run, token};

async fn search(client: &reqwest::Client, server: &Server, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = client.post(server.url("/v1/search")).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn repos_of(v: &Value) -> Vec<String> {
    let mut r: Vec<String> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["repo"].as_str().unwrap().to_string())
        .collect();
    r.sort();
    r.dedup();
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_the_read_rule() {
    use cairn_proto::v1::SearchRequest;
    use cairn_proto::v1::retrieval_client::RetrievalClient;

    let repo = fixture_repo();
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let src = repo.path().to_str().unwrap();
    let (ok, _, err) = run(&[
        "index",
        src,
        "--repo",
        "payments-auth",
        "--groups",
        "payments",
        "--data-dir",
        d,
    ]);
    assert!(ok, "{err}");
    // the same code under a repo nobody but admins may read
    let (ok, _, err) = run(&["index", src, "--repo", "vault", "--data-dir", d]);
    assert!(ok, "{err}");

    let alice = token(d, "alice", "payments");
    let bob = token(d, "bob", "web");
    let root = token(d, "root", "admin");
    let config = data.path().join("cairn.toml");
    std::fs::write(&config, "[auth]\nmode = \"tokens\"\n").unwrap();
    let server = Server::start_with(data.path(), &["--config", config.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let q = json!({"query": "verify a password hash", "k": 20});

    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health needs no credentials");
    let (status, body) = search(&client, &server, None, q.clone()).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = search(&client, &server, Some("cairn_not-a-token"), q.clone()).await;
    assert_eq!(status, 401);

    let (status, body) = search(&client, &server, Some(&alice), q.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(repos_of(&body), ["payments-auth"], "the copy in vault must never show");
    let (status, body) = search(&client, &server, Some(&root), q.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(repos_of(&body), ["payments-auth", "vault"]);
    let (status, body) = search(&client, &server, Some(&bob), q.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(repos_of(&body), Vec::<String>::new());

    // naming a readable repo is fine
    let (status, body) = search(
        &client,
        &server,
        Some(&alice),
        json!({"query": "x", "repos": ["payments-auth"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // forbidden and missing look the same
    let (s1, forbidden) = search(
        &client,
        &server,
        Some(&alice),
        json!({"query": "x", "repos": ["vault"]}),
    )
    .await;
    let (s2, missing) = search(&client, &server, Some(&alice), json!({"query": "x", "repos": ["nope"]})).await;
    assert_eq!((s1, s2), (403, 403));
    assert_eq!(
        forbidden["error"].as_str().unwrap().replace("vault", "R"),
        missing["error"].as_str().unwrap().replace("nope", "R")
    );

    // gRPC: metadata `authorization`
    let mut grpc = RetrievalClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    let req = || SearchRequest {
        query: "verify a password hash".into(),
        k: 20,
        ..Default::default()
    };
    let err = grpc.search(req()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut with_token = tonic::Request::new(req());
    with_token
        .metadata_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    let resp = grpc.search(with_token).await.unwrap().into_inner();
    assert!(!resp.results.is_empty());
    assert!(resp.results.iter().all(|r| r.repo == "payments-auth"));
    let mut denied = tonic::Request::new(SearchRequest {
        repos: vec!["vault".into()],
        ..req()
    });
    denied
        .metadata_mut()
        .insert("authorization", format!("Bearer {alice}").parse().unwrap());
    assert_eq!(
        grpc.search(denied).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );

    // MCP and the Continue provider: the same rule
    let calls = json!([
        ["search_code", {"query": "verify a password hash", "k": 20}],
        ["read_code", {"repo": "vault", "path": "src/lib.rs"}],
        ["read_code", {"repo": "payments-auth", "path": "src/lib.rs", "start_line": 1, "end_line": 2}],
        ["list_repos", {}]
    ]);
    let out = crate::mcp::mcp_client_as(&server.url("/mcp"), &calls, Some(&alice));
    let c = &out["calls"];
    let hits = c[0]["structured"]["results"].as_array().unwrap();
    assert!(
        !hits.is_empty() && hits.iter().all(|h| h["repo"] == "payments-auth"),
        "{}",
        c[0]
    );
    assert_eq!(c[1]["is_error"], true, "{}", c[1]);
    assert!(c[1]["text"].as_str().unwrap().contains("not readable"), "{}", c[1]);
    assert_eq!(c[2]["is_error"], false, "{}", c[2]);
    let names: Vec<&str> = c[3]["structured"]["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["payments-auth"]);
    let anonymous = client.post(server.url("/mcp")).json(&json!({})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let items: Value = client
        .post(server.url("/v1/continue/context"))
        .bearer_auth(&alice)
        .json(&json!({"query": "verify a password hash", "fullInput": "", "options": {"k": 20}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = items.as_array().unwrap();
    assert!(
        !items.is_empty()
            && items
                .iter()
                .all(|i| i["name"].as_str().unwrap().starts_with("payments-auth/"))
    );

    // revocation while the server runs applies to the next request
    let (ok, out, err) = run(&["token", "revoke", "alice", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("revoked 1"), "{out}");
    let (status, _) = search(&client, &server, Some(&alice), q.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = search(&client, &server, Some(&root), q).await;
    assert_eq!(status, 200);
}

#[test]
fn no_auth_is_refused_off_loopback() {
    let data = tempfile::tempdir().unwrap();
    let out = cairn()
        .args([
            "--data-dir",
            data.path().to_str().unwrap(),
            "serve",
            "--http",
            "0.0.0.0:0",
            "--grpc",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.mode = \"none\" is allowed only on loopback"),
        "{stderr}"
    );
}
