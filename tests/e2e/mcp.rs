//! IDE integrations: the MCP server at `/mcp`, driven by the official `mcp`
//! Python SDK (installed under `.local/test-venv` by `make setup`), and
//! Continue's http context provider at `/v1/continue/context`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::{Server, indexed_data_dir};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/e2e/clients/mcp_client.py` against `url` with `calls`.
pub fn mcp_client(url: &str, calls: &Value) -> Value {
    mcp_client_as(url, calls, None)
}

/// [`mcp_client`] sending a bearer token.
pub fn mcp_client_as(url: &str, calls: &Value, token: Option<&str>) -> Value {
    let python = root().join(".local/test-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make setup` to install the Python test clients",
        python.display()
    );
    let mut cmd = Command::new(&python);
    if let Some(t) = token {
        cmd.env("CAIRN_TOKEN", t);
    }
    let out = cmd
        .arg(root().join("tests/e2e/clients/mcp_client.py"))
        .arg(url)
        .arg(calls.to_string())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "mcp client failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stdout}"))
}

#[test]
fn mcp_tools_through_the_official_python_sdk() {
    let (_repo, data) = indexed_data_dir();
    let server = Server::start(data.path());
    let lib = std::fs::read_to_string(root().join("fixtures/repos/acme-auth/src/lib.rs")).unwrap();
    let lines: Vec<&str> = lib.split_inclusive('\n').collect();
    let verify = lines.iter().position(|l| l.contains("pub fn verify(")).unwrap() + 1;
    let calls = json!([
        ["search_code", {"query": "verify token signature and expiry", "k": 3}],
        ["read_code", {"repo": "acme-auth", "path": "src/lib.rs", "start_line": verify, "end_line": verify + 3}],
        ["read_code", {"repo": "acme-auth", "path": "src/lib.rs"}],
        ["list_repos", {}],
        ["search_code", {"query": "rate limit", "repos": ["acme-auth"], "k": 2}],
        ["read_code", {"repo": "no-such-repo", "path": "src/lib.rs"}],
        ["read_code", {"repo": "acme-auth", "path": "../../etc/passwd"}],
        ["read_code", {"repo": "acme-auth", "path": "src/nope.rs"}],
        ["read_code", {"repo": "acme-auth", "path": "src/lib.rs", "start_line": 100000}],
        ["read_code", {"repo": "acme-auth", "path": "src/lib.rs", "start_line": 5, "end_line": 2}],
        ["search_code", {"query": "x", "k": 0}],
        ["search_code", {"query": "x", "repos": ["no-such-repo"]}],
        ["search_code", {"k": 3}],
        ["no_such_tool", {}],
        ["search_code", {"query": "refill the token bucket", "k": 2, "group_by": "file"}],
        ["search_code", {"query": "x", "group_by": "repo"}],
    ]);
    let out = mcp_client(&server.url("/mcp"), &calls);

    assert_eq!(out["server_name"], "cairn", "{out}");
    assert!(
        out["protocol_version"].as_str().is_some_and(|v| v.starts_with("20")),
        "{out}"
    );
    let tools = out["tools"].as_object().unwrap();
    let mut names: Vec<_> = tools.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["list_repos", "read_code", "search_code"]);
    let schema = |t: &str| &tools[t]["input_schema"];
    assert_eq!(schema("search_code")["type"], "object");
    assert_eq!(schema("search_code")["required"], json!(["query"]));
    for p in ["query", "repos", "k", "group_by"] {
        assert!(
            schema("search_code")["properties"].get(p).is_some(),
            "{p}: {}",
            schema("search_code")
        );
    }
    assert_eq!(schema("read_code")["required"], json!(["repo", "path"]));
    for p in ["repo", "path", "start_line", "end_line"] {
        assert!(
            schema("read_code")["properties"].get(p).is_some(),
            "{p}: {}",
            schema("read_code")
        );
    }
    assert_eq!(schema("list_repos")["type"], "object");
    assert!(
        tools
            .values()
            .all(|t| t["description"].as_str().is_some_and(|d| !d.is_empty()))
    );

    let calls = out["calls"].as_array().unwrap();
    let ok = |i: usize| {
        let c = &calls[i];
        assert_eq!(c["is_error"], false, "call {i}: {c}");
        c
    };
    let tool_error = |i: usize, needle: &str| {
        let c = &calls[i];
        assert_eq!(c["is_error"], true, "call {i}: {c}");
        let text = c["text"].as_str().unwrap();
        assert!(text.contains(needle), "call {i}: {text}");
    };

    // search_code finds the verification function, labelled and with its code.
    let search = ok(0);
    let hits = search["structured"]["results"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{search}");
    assert_eq!(hits[0]["path"], "src/lib.rs");
    assert!(
        hits[0]["content"].as_str().unwrap().contains("pub fn verify("),
        "{search}"
    );
    let text = search["text"].as_str().unwrap();
    assert!(text.contains("acme-auth/src/lib.rs#L"), "{text}");
    assert!(text.contains("pub fn verify("), "{text}");

    // read_code returns exactly the lines asked for, from the indexed commit.
    let read = ok(1);
    let want: String = lines[verify - 1..verify + 3].concat();
    assert_eq!(read["structured"]["content"], want.as_str(), "{read}");
    assert_eq!(read["structured"]["start_line"], verify);
    assert_eq!(read["structured"]["end_line"], verify + 3);
    assert_eq!(read["structured"]["language"], "rust");
    assert!(read["text"].as_str().unwrap().contains(&want), "{read}");
    assert!(
        read["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("acme-auth/src/lib.rs#L{verify}-L{}@", verify + 3)),
        "{read}"
    );
    let whole = ok(2);
    assert_eq!(whole["structured"]["content"], lib.as_str());
    assert_eq!(whole["structured"]["total_lines"], lines.len());

    let repos = ok(3);
    let list = repos["structured"]["repos"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{repos}");
    assert_eq!(list[0]["name"], "acme-auth");
    assert_eq!(list[0]["commit"].as_str().unwrap().len(), 40);
    assert_eq!(read["structured"]["commit"], list[0]["commit"]);

    let filtered = ok(4);
    assert_eq!(filtered["structured"]["results"].as_array().unwrap().len(), 2);

    // Tool failures are results with isError and a message naming the problem.
    tool_error(5, "unknown repo \"no-such-repo\"");
    tool_error(6, "invalid path");
    tool_error(7, "no file \"src/nope.rs\"");
    tool_error(8, "past the end");
    tool_error(9, "before start_line");
    tool_error(10, "k must be between 1 and 100");
    tool_error(11, "no-such-repo");
    tool_error(12, "query");
    // An unknown tool is a protocol error.
    let unknown = &calls[13];
    assert!(unknown["protocol_error"]["code"].as_i64().is_some(), "{unknown}");

    // Files instead of chunks: `k` counts files, each with its best chunks.
    let by_file = ok(14);
    let files = by_file["structured"]["files"].as_array().unwrap();
    assert!(!files.is_empty() && files.len() <= 2, "{by_file}");
    assert_eq!(files[0]["path"], "src/rate_limit.py", "{by_file}");
    assert!(by_file["structured"].get("results").is_none(), "{by_file}");
    assert!(
        by_file["text"]
            .as_str()
            .unwrap()
            .contains("1. acme-auth/src/rate_limit.py"),
        "{by_file}"
    );
    tool_error(15, "group_by");
}

#[tokio::test(flavor = "multi_thread")]
async fn continue_http_context_provider() {
    let (_repo, data) = indexed_data_dir();
    let server = Server::start(data.path());
    let c = reqwest::Client::new();
    let url = server.url("/v1/continue/context");
    let post = |body: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let resp = c
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
            )
        }
    };

    // The shape Continue posts; `query` wins over `fullInput`.
    let (status, v) = post(
        json!({
            "query": "append a login attempt to the audit log",
            "fullInput": "@cairn append a login attempt to the audit log",
            "options": {"repos": ["acme-auth"], "k": 2},
            "workspacePath": "/home/dev/acme-auth"
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    let top = &items[0];
    let name = top["name"].as_str().unwrap();
    assert!(name.starts_with("acme-auth/src/audit.go#L"), "{top}");
    assert!(
        top["description"]
            .as_str()
            .unwrap()
            .contains("Logger.WriteLoginAttempt"),
        "{top}"
    );
    let content = top["content"].as_str().unwrap();
    assert!(content.starts_with(&format!("```go {name}\n")), "{content}");
    assert!(
        content.ends_with("```") && content.contains("WriteLoginAttempt"),
        "{content}"
    );

    // A blank query (Continue sends "" for plain mentions) searches the full input.
    let (status, v) = post(
        json!({"query": "", "fullInput": "refill the token bucket", "options": {}, "workspacePath": null}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(
        v[0]["name"]
            .as_str()
            .unwrap()
            .starts_with("acme-auth/src/rate_limit.py#L"),
        "{v}"
    );
    assert_eq!(v.as_array().unwrap().len(), 10);

    let cases: Vec<(String, u16, &str)> = vec![
        (json!({"query": "", "fullInput": "  "}).to_string(), 400, "empty"),
        (json!({}).to_string(), 400, "empty"),
        (json!({"query": "x", "options": {"k": 0}}).to_string(), 400, "k must be"),
        (json!({"query": "x", "options": {"topK": 3}}).to_string(), 400, "topK"),
        (json!({"query": 5}).to_string(), 400, "invalid"),
        ("{not json".to_string(), 400, "invalid"),
        (
            json!({"query": "x", "options": {"repos": ["nope"]}}).to_string(),
            404,
            "nope",
        ),
    ];
    for (body, want, needle) in cases {
        let (status, v) = post(body.clone()).await;
        assert_eq!(status, want, "{body}: {v}");
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{body}: {v}"));
        assert!(msg.contains(needle), "{body}: {msg}");
    }
}

/// MCP is stateless: no session id is handed out, and a tool call that
/// reaches a server which never saw this client's `initialize` (another
/// replica behind a load balancer) is answered all the same.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_is_stateless_so_any_replica_answers_any_request() {
    let (_repo, data) = indexed_data_dir();
    let mut server = Server::start(data.path());
    let client = reqwest::Client::new();
    let post = |body: Value| {
        client
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&body)
            .send()
    };
    let init = post(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}}))
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    assert!(
        init.headers().get("mcp-session-id").is_none(),
        "a session id was handed out"
    );

    let call = post(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "search_code", "arguments": {"query": "verify a password hash", "k": 2}}}))
    .await
    .unwrap();
    assert_eq!(call.status(), 200);
    let text = call.text().await.unwrap();
    // JSON, or one SSE event holding it
    let json_text = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .map_or(text.as_str(), str::trim);
    let v: Value = serde_json::from_str(json_text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["id"], 1, "{v}");
    assert!(v["result"]["isError"] != json!(true), "{v}");
    assert!(
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("acme-auth"),
        "{v}"
    );
    server.terminate();
}
