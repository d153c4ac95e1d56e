//! The surface × promise matrix: every HTTP route (from the router's own
//! list), every gRPC method (from the service descriptors) and every MCP tool
//! (from the tool list) is called by a caller who may read one repo, over an
//! index that also holds a repo of another team, a repo above the caller's
//! clearance and a planted secret. For each surface the test checks:
//!
//! - **repo ACL**: nothing of the other team's repo comes back, and naming
//!   it is refused;
//! - **clearance**: nothing of the confidential repo comes back, and naming
//!   it is refused like a forbidden repo;
//! - **redaction**: the planted secret's value never comes back;
//! - **audit**: every request leaves exactly one audit record.
//!
//! A route, method or tool without a recipe here fails the test: a new
//! surface cannot go unchecked. The matrix is printed (`--nocapture`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::HashEmbedder;
use cairn_indexer::registry::Sensitivity;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::answer_tests::{Behaviour, backend, fake_backend};
use cairn_engine::engine::Engine;
use cairn_services::audit::{AuditConfig, AuditLog};
use cairn_services::auth::{AuthMode, TokenStore};
use cairn_services::config::Config;
use cairn_services::state::AppState;

/// Words that exist only in the repos the caller must not see.
const OTHER_TEAM: &str = "quokka";
const CONFIDENTIAL: &str = "narwhal";
/// The planted secret's value (a fake Stripe key the indexer redacts).
const SECRET: &str = "sk_live_51FAKEroUSqJog95a4gDKbaEgXwZfQ1cSD652OvH";
/// Every query asks for all three, so a missing filter would show.
const QUERY: &str = "zebrafish quokka narwhal ledger total stripe secret key settings";

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn functions(marker: &str) -> String {
    (0..4)
        .map(|i| {
            format!(
                "def {marker}_ledger_total_{i}(rows):\n    \"\"\"Sum the {marker} ledger rows, stripe secret key settings.\"\"\"\n    total = sum(r.amount for r in rows) + {i}\n    return total\n\n"
            )
        })
        .collect()
}

/// One row of the matrix: how many requests, and which promises failed.
#[derive(Default)]
struct Row {
    requests: usize,
    failures: Vec<String>,
}

struct World {
    http: String,
    grpc: String,
    token: String,
    audit: std::path::PathBuf,
    client: reqwest::Client,
}

impl World {
    /// Request records in the audit log so far (the log checkpoints, and so
    /// flushes, after every record).
    fn records(&self) -> usize {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"type\":\"request\""))
            .count()
    }

    /// Waits until the log holds `want` records (the writer is a thread), or
    /// returns what it holds after a while.
    async fn settle(&self, want: usize) -> usize {
        for _ in 0..100 {
            let n = self.records();
            if n >= want {
                // a little longer, to see a second record if one comes
                tokio::time::sleep(Duration::from_millis(30)).await;
                return self.records();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.records()
    }

    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let url = format!("{}{path}", self.http);
        let mut req = match method {
            "GET" => self.client.get(url),
            "POST" => self.client.post(url),
            "DELETE" => self.client.delete(url),
            other => panic!("no recipe for method {other}"),
        }
        .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == "POST" {
            req = req.header("content-type", "application/json");
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

/// The response without the repo names the request itself named (an error
/// that echoes the caller's own words leaks nothing).
fn unechoed(what: &str, body: &str) -> String {
    let mut body = body.to_string();
    for repo in ["quokka-team", "narwhal-vault"] {
        if what.contains(repo) {
            body = body.replace(repo, "");
        }
    }
    body
}

/// Checks one response against the promises and the audit count.
async fn check(world: &World, row: &mut Row, what: &str, before: usize, status: u16, body: &str) {
    row.requests += 1;
    let body = &unechoed(what, body);
    for (promise, needle) in [
        ("repo ACL", OTHER_TEAM),
        ("clearance", CONFIDENTIAL),
        ("redaction", SECRET),
    ] {
        if body.contains(needle) {
            row.failures
                .push(format!("{promise}: {what} ({status}) returned {needle:?}"));
        }
    }
    let after = world.settle(before + 1).await;
    if after != before + 1 {
        row.failures.push(format!(
            "audit: {what} ({status}) left {} records, not 1",
            after - before
        ));
    }
}

/// A repo the caller may not name: refused (403 with authentication, or
/// an MCP tool error).
fn named(row: &mut Row, what: &str, repo: &str, status: u16, body: &str) {
    if status != 403 && !body.contains("\"isError\":true") {
        let promise = if repo.contains("vault") {
            "clearance"
        } else {
            "repo ACL"
        };
        row.failures.push(format!(
            "{promise}: {what} naming {repo} answered {status}: {body:.200}"
        ));
    }
}

/// MCP over its streamable HTTP transport: initialize, then tool calls.
/// cairn's MCP is stateless (any replica answers any request), so no
/// session id comes back; one that did would be sent along.
struct Mcp {
    session: String,
}

impl Mcp {
    async fn rpc(world: &World, session: Option<&str>, body: Value) -> (u16, String) {
        let mut req = world
            .client
            .post(format!("{}/mcp", world.http))
            .bearer_auth(&world.token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session.filter(|s| !s.is_empty()) {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.unwrap_or_default();
        if body["method"] == "initialize" {
            return (status, session);
        }
        (status, text)
    }

    async fn open(world: &World) -> Self {
        let (status, session) = Self::rpc(
            world,
            None,
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "matrix", "version": "1"}}}),
        )
        .await;
        assert_eq!(status, 200, "MCP initialize");
        assert!(session.is_empty(), "stateless MCP handed out a session id: {session}");
        Self::rpc(
            world,
            Some(&session),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        Self { session }
    }

    async fn call(&self, world: &World, tool: &str, args: Value) -> (u16, String) {
        Self::rpc(
            world,
            Some(&self.session),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_surface_holds_every_promise() {
    let (url, _fake) = fake_backend(Behaviour::Reply).await;
    let mut b = backend("local", &url);
    // a backend trusted with everything: only the caller's clearance may stop code
    b.max_sensitivity = Sensitivity::Restricted;
    let config = Config {
        backends: vec![b],
        ..Default::default()
    };
    let data = tempfile::tempdir().unwrap();
    let sources = tempfile::tempdir().unwrap();
    let dir = DataDir::open(data.path(), "test").unwrap();
    let engine = Engine::with_embedder(&config, dir, Arc::new(HashEmbedder::new(64))).unwrap();
    let repos = [
        ("open", "dev", Sensitivity::Internal, "zebrafish"),
        ("quokka-team", "ops", Sensitivity::Internal, OTHER_TEAM),
        ("narwhal-vault", "dev", Sensitivity::Confidential, CONFIDENTIAL),
    ];
    for (name, group, level, marker) in repos {
        let root = sources.path().join(name);
        write(&root, "src/ledger.py", &functions(marker));
        if name == "open" {
            write(
                &root,
                "config/settings.py",
                &format!(
                    "\"\"\"Stripe secret key settings for the zebrafish ledger.\"\"\"\nSTRIPE_SECRET_KEY = \"{SECRET}\"\nLEDGER_TOTAL_ROWS = 10\n"
                ),
            );
        }
        engine
            .index(&root, name, &config, &cairn_indexer::pipeline::NoProgress)
            .await
            .unwrap();
        engine.set_groups(name, vec![group.to_string()]).unwrap();
        engine.set_sensitivity(name, level).unwrap();
    }
    let tokens = Arc::new(TokenStore::new(data.path()));
    let (_, token) = tokens
        .create_capped("dev-user", vec!["dev".into()], Some(Sensitivity::Internal))
        .await
        .unwrap();
    let audit_config = AuditConfig {
        checkpoint_every: 1,
        ..Default::default()
    };
    let audit = Arc::new(AuditLog::open(&audit_config, data.path()).unwrap());
    let state = AppState::for_engine(&engine, &config)
        .with_auth(AuthMode::Tokens, tokens)
        .with_audit(audit.clone());
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, grpc_addr) = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        let _engine = engine;
        crate::server::run(state, http, grpc, 1 << 20, async move {
            let _ = rx.await;
        })
        .await
    });
    let world = World {
        http: format!("http://{http_addr}"),
        grpc: format!("http://{grpc_addr}"),
        token,
        audit: data.path().join("audit/audit.jsonl"),
        client: reqwest::Client::new(),
    };

    let mut matrix: BTreeMap<String, Row> = BTreeMap::new();

    // HTTP: every route the router serves, every method
    for route in crate::http::routes() {
        for &method in route.methods {
            let surface = format!("{method} {}", route.path);
            let mut row = Row::default();
            let calls: Vec<(String, Option<Value>)> = match (method, route.path) {
                ("POST", "/v1/search") => vec![
                    ("/v1/search".into(), Some(json!({"query": QUERY, "k": 50}))),
                    (
                        "/v1/search".into(),
                        Some(json!({"query": QUERY, "repos": ["quokka-team"]})),
                    ),
                    (
                        "/v1/search".into(),
                        Some(json!({"query": QUERY, "repos": ["narwhal-vault"]})),
                    ),
                ],
                ("POST", "/v1/context") => vec![
                    ("/v1/context".into(), Some(json!({"query": QUERY}))),
                    (
                        "/v1/context".into(),
                        Some(json!({"query": QUERY, "repos": ["quokka-team"]})),
                    ),
                    (
                        "/v1/context".into(),
                        Some(json!({"query": QUERY, "repos": ["narwhal-vault"]})),
                    ),
                ],
                ("POST", "/v1/answer") => vec![
                    ("/v1/answer".into(), Some(json!({"query": QUERY}))),
                    (
                        "/v1/answer".into(),
                        Some(json!({"query": QUERY, "repos": ["quokka-team"]})),
                    ),
                    (
                        "/v1/answer".into(),
                        Some(json!({"query": QUERY, "repos": ["narwhal-vault"]})),
                    ),
                ],
                ("POST", "/v1/chat/completions") => vec![(
                    "/v1/chat/completions".into(),
                    Some(json!({"model": "local", "messages": [{"role": "user", "content": QUERY}]})),
                )],
                ("GET", "/v1/models") => vec![("/v1/models".into(), None)],
                ("POST", "/v1/continue/context") => vec![
                    (
                        "/v1/continue/context".into(),
                        Some(json!({"query": QUERY, "options": {"k": 50}})),
                    ),
                    (
                        "/v1/continue/context".into(),
                        Some(json!({"query": QUERY, "options": {"repos": ["narwhal-vault"]}})),
                    ),
                ],
                ("GET", "/v1/repos") => vec![("/v1/repos".into(), None)],
                ("GET", "/v1/repos/{*name}") => vec![
                    ("/v1/repos/open".into(), None),
                    ("/v1/repos/quokka-team".into(), None),
                    ("/v1/repos/narwhal-vault".into(), None),
                ],
                ("POST", "/v1/repos/{*name}") => vec![
                    ("/v1/repos/quokka-team/reindex".into(), None),
                    ("/v1/repos/narwhal-vault/reindex".into(), None),
                ],
                ("DELETE", "/v1/repos/{*name}") => {
                    vec![
                        ("/v1/repos/quokka-team".into(), None),
                        ("/v1/repos/narwhal-vault".into(), None),
                    ]
                }
                ("GET", "/metrics") => vec![("/metrics".into(), None)],
                ("GET", "/healthz") => {
                    // no code and no repo facts, and not recorded: checked for leaks only
                    let (status, body) = world.http("GET", "/healthz", None).await;
                    assert_eq!(status, 200);
                    assert!(!body.contains(OTHER_TEAM) && !body.contains(CONFIDENTIAL));
                    continue;
                }
                ("POST", "/v1/webhooks/{provider}") => vec![("/v1/webhooks/github".into(), Some(json!({})))],
                ("GET" | "POST" | "DELETE", "/mcp") => {
                    // the MCP tools are checked one by one below; a bare
                    // request (no JSON-RPC body; GET and DELETE have no
                    // stream or session to act on) is refused and recorded
                    let before = world.records();
                    let (status, body) = world.http(method, "/mcp", None).await;
                    assert!(status >= 400, "{method} /mcp without a JSON-RPC body: {status}");
                    check(&world, &mut row, &format!("{method} /mcp"), before, status, &body).await;
                    matrix.insert(surface, row);
                    continue;
                }
                _ => panic!(
                    "no promise recipe for {method} {}: add one to gate_tests.rs",
                    route.path
                ),
            };
            for (path, body) in calls {
                let before = world.records();
                let names = format!("{path} {}", body.as_ref().map(|b| b.to_string()).unwrap_or_default());
                let open_ended = body.as_ref().is_some_and(|b| {
                    b.get("repos").is_none() && b["options"].get("repos").is_none() && b.get("query").is_some()
                });
                let (status, text) = world.http(method, &path, body).await;
                let what = format!("{method} {names}");
                check(&world, &mut row, &what, before, status, &text).await;
                // the readable repo does come back: the checks above are not vacuous
                if open_ended && !path.contains("answer") && !text.contains("zebrafish") {
                    row.failures.push(format!(
                        "repo ACL: {what} ({status}) did not return the readable repo: {text:.200}"
                    ));
                }
                for repo in ["quokka-team", "narwhal-vault"] {
                    if names.contains(&format!("/{repo}")) || names.contains(&format!("\"{repo}\"")) {
                        named(&mut row, &what, repo, status, &text);
                    }
                }
            }
            matrix.insert(surface, row);
        }
    }

    // gRPC: every method of every cairn service, from the descriptors
    {
        use cairn_proto::v1::indexer_client::IndexerClient;
        use cairn_proto::v1::retrieval_client::RetrievalClient;
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(cairn_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut retrieval = RetrievalClient::connect(world.grpc.clone()).await.unwrap();
        let mut indexer = IndexerClient::connect(world.grpc.clone()).await.unwrap();
        let bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            format!("Bearer {}", world.token).parse().unwrap();
        fn with<T>(bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>, m: T) -> tonic::Request<T> {
            let mut r = tonic::Request::new(m);
            r.metadata_mut().insert("authorization", bearer.clone());
            r
        }
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    let name = format!("{}/{}", service.name(), method.name());
                    let mut row = Row::default();
                    let start = world.records();
                    let outcomes: Vec<(String, u16, String)> = match name.as_str() {
                        "Retrieval/Search" => {
                            let mut out = Vec::new();
                            for repos in [
                                vec![],
                                vec!["quokka-team".to_string()],
                                vec!["narwhal-vault".to_string()],
                            ] {
                                let r = retrieval
                                    .search(with(
                                        &bearer,
                                        cairn_proto::v1::SearchRequest {
                                            query: QUERY.into(),
                                            k: 50,
                                            repos: repos.clone(),
                                            ..Default::default()
                                        },
                                    ))
                                    .await;
                                out.push(grpc_outcome(
                                    format!("Search {repos:?}"),
                                    r.map(|r| format!("{:?}", r.into_inner())),
                                ));
                            }
                            out
                        }
                        "Retrieval/Answer" => {
                            let mut out = Vec::new();
                            for repos in [vec![], vec!["narwhal-vault".to_string()]] {
                                let r = retrieval
                                    .answer(with(
                                        &bearer,
                                        cairn_proto::v1::AnswerRequest {
                                            query: QUERY.into(),
                                            repos: repos.clone(),
                                            ..Default::default()
                                        },
                                    ))
                                    .await;
                                let text = match r {
                                    Ok(stream) => {
                                        let mut s = stream.into_inner();
                                        let mut all = String::new();
                                        while let Ok(Some(e)) = s.message().await {
                                            all.push_str(&format!("{e:?}"));
                                        }
                                        Ok(all)
                                    }
                                    Err(e) => Err(e),
                                };
                                out.push(grpc_outcome(format!("Answer {repos:?}"), text));
                            }
                            out
                        }
                        "Indexer/ListRepos" => {
                            let r = indexer
                                .list_repos(with(&bearer, cairn_proto::v1::ListReposRequest {}))
                                .await;
                            vec![grpc_outcome(
                                "ListRepos".into(),
                                r.map(|r| format!("{:?}", r.into_inner())),
                            )]
                        }
                        "Indexer/GetRepo" => {
                            let mut out = Vec::new();
                            for repo in ["quokka-team", "narwhal-vault"] {
                                let r = indexer
                                    .get_repo(with(&bearer, cairn_proto::v1::GetRepoRequest { name: repo.into() }))
                                    .await;
                                out.push(grpc_outcome(
                                    format!("GetRepo {repo}"),
                                    r.map(|r| format!("{:?}", r.into_inner())),
                                ));
                            }
                            out
                        }
                        "Indexer/Reindex" => {
                            let mut out = Vec::new();
                            for repo in ["quokka-team", "narwhal-vault"] {
                                let r = indexer
                                    .reindex(with(
                                        &bearer,
                                        cairn_proto::v1::ReindexRequest {
                                            name: repo.into(),
                                            ..Default::default()
                                        },
                                    ))
                                    .await;
                                out.push(grpc_outcome(
                                    format!("Reindex {repo}"),
                                    r.map(|r| format!("{:?}", r.into_inner())),
                                ));
                            }
                            out
                        }
                        "Indexer/Watch" => {
                            let r = indexer
                                .watch(with(&bearer, cairn_proto::v1::WatchRequest::default()))
                                .await;
                            let text = match r {
                                Ok(stream) => {
                                    let mut s = stream.into_inner();
                                    // the first event, if any comes quickly
                                    match tokio::time::timeout(Duration::from_millis(300), s.message()).await {
                                        Ok(Ok(Some(e))) => Ok(format!("{e:?}")),
                                        _ => Ok(String::new()),
                                    }
                                }
                                Err(e) => Err(e),
                            };
                            vec![grpc_outcome("Watch".into(), text)]
                        }
                        other => panic!("no promise recipe for gRPC {other}: add one to gate_tests.rs"),
                    };
                    let calls = outcomes.len();
                    for (what, status, text) in outcomes {
                        row.requests += 1;
                        let text = unechoed(&what, &text);
                        for (promise, needle) in [
                            ("repo ACL", OTHER_TEAM),
                            ("clearance", CONFIDENTIAL),
                            ("redaction", SECRET),
                        ] {
                            if text.contains(needle) {
                                row.failures
                                    .push(format!("{promise}: {what} ({status}) returned {needle:?}"));
                            }
                        }
                        for repo in ["quokka-team", "narwhal-vault"] {
                            if what.contains(repo) && status != 403 {
                                row.failures.push(format!(
                                    "{}: {what} naming {repo} answered {status}",
                                    if repo.contains("vault") {
                                        "clearance"
                                    } else {
                                        "repo ACL"
                                    }
                                ));
                            }
                        }
                    }
                    let after = world.settle(start + calls).await;
                    if after != start + calls {
                        row.failures
                            .push(format!("audit: {name}: {} records for {calls} calls", after - start));
                    }
                    matrix.insert(format!("gRPC {name}"), row);
                }
            }
        }
    }

    // MCP: every tool in the tool list
    let mcp = Mcp::open(&world).await;
    for tool in crate::mcp::CodeTools::tools() {
        let name = tool.name.to_string();
        let mut row = Row::default();
        let calls: Vec<Value> = match name.as_str() {
            "search_code" => vec![
                json!({"query": QUERY, "k": 50}),
                json!({"query": QUERY, "repos": ["quokka-team"]}),
                json!({"query": QUERY, "repos": ["narwhal-vault"]}),
                json!({"query": 5}),
            ],
            "read_code" => vec![
                json!({"repo": "open", "path": "config/settings.py"}),
                json!({"repo": "quokka-team", "path": "src/ledger.py"}),
                json!({"repo": "narwhal-vault", "path": "src/ledger.py"}),
                json!({"repo": "open", "path": "nope.py"}),
            ],
            "list_repos" => vec![json!({})],
            other => panic!("no promise recipe for MCP tool {other}: add one to gate_tests.rs"),
        };
        for args in calls {
            let before = world.records();
            let (status, text) = mcp.call(&world, &name, args.clone()).await;
            let what = format!("{name} {args}");
            check(&world, &mut row, &what, before, status, &text).await;
            for repo in ["quokka-team", "narwhal-vault"] {
                if args["repos"].to_string().contains(repo) || args["repo"] == repo {
                    named(&mut row, &what, repo, status, &text);
                }
            }
            if name == "search_code"
                && args.get("repos").is_none()
                && args["query"].is_string()
                && !text.contains("zebrafish")
            {
                row.failures
                    .push(format!("repo ACL: {what} did not return the readable repo"));
            }
            if name == "read_code" && args["path"] == "config/settings.py" && !text.contains("[REDACTED:") {
                row.failures.push(format!(
                    "redaction: read_code of the planted file shows no placeholder: {text:.300}"
                ));
            }
        }
        matrix.insert(format!("MCP {name}"), row);
    }

    let _ = tx.send(());
    served.await.unwrap().unwrap();
    audit.close();

    println!(
        "\n{:<34} {:>4}  repo ACL  clearance  redaction  audit",
        "surface", "reqs"
    );
    let mut failures = Vec::new();
    for (surface, row) in &matrix {
        let cell = |promise: &str| {
            if row.failures.iter().any(|f| f.starts_with(promise)) {
                "✗"
            } else {
                "✓"
            }
        };
        println!(
            "{surface:<34} {:>4}  {:^8}  {:^9}  {:^9}  {:^5}",
            row.requests,
            cell("repo ACL"),
            cell("clearance"),
            cell("redaction"),
            cell("audit")
        );
        failures.extend(row.failures.iter().map(|f| format!("{surface}: {f}")));
    }
    assert!(matrix.len() >= 20, "the matrix lost surfaces: {}", matrix.len());
    assert!(failures.is_empty(), "promises broken:\n{}", failures.join("\n"));
}

fn grpc_outcome(what: String, result: Result<String, tonic::Status>) -> (String, u16, String) {
    match result {
        Ok(text) => (what, 200, text),
        Err(status) => {
            let code = match status.code() {
                tonic::Code::PermissionDenied => 403,
                tonic::Code::Unauthenticated => 401,
                tonic::Code::NotFound => 404,
                tonic::Code::InvalidArgument => 400,
                tonic::Code::Unavailable => 503,
                _ => 500,
            };
            (what, code, status.message().to_string())
        }
    }
}
