//! `cairn serve`: the HTTP and gRPC contracts, the data-dir lock, persistence.

use serde_json::{Value, json};

use crate::{Server, indexed_data_dir, run};

async fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = client
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
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn http_search_contract_and_errors() {
    let (_repo, data) = indexed_data_dir();
    let server = Server::start(data.path());
    let c = reqwest::Client::new();
    let url = server.url("/v1/search");

    let health = c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let (status, v) = post(
        &c,
        &url,
        json!({"query": "append a login attempt to the audit log", "k": 2}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let top = &results[0];
    for field in [
        "repo",
        "path",
        "start_line",
        "end_line",
        "language",
        "kind",
        "symbol",
        "score",
        "content",
    ] {
        assert!(top.get(field).is_some(), "missing {field}: {top}");
    }
    assert_eq!(top["path"], "src/audit.go");
    assert_eq!(top["symbol"], "Logger.WriteLoginAttempt");
    assert!(top["start_line"].as_u64().unwrap() >= 1 && top["end_line"].as_u64() >= top["start_line"].as_u64());
    assert!(v["took_ms"].is_number());

    // Filters.
    let (status, v) = post(
        &c,
        &url,
        json!({"query": "rate limit", "languages": ["python"], "k": 5}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["language"] == "python"),
        "{v}"
    );
    let (status, v) = post(
        &c,
        &url,
        json!({"query": "token", "path_prefix": "src/rate", "k": 10}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let hits = v["results"].as_array().unwrap();
    assert!(
        !hits.is_empty() && hits.iter().all(|h| h["path"].as_str().unwrap().starts_with("src/rate")),
        "{v}"
    );
    let (status, v) = post(&c, &url, json!({"query": "token", "repos": ["acme-auth"]}).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["results"].as_array().unwrap().len(),
        10.min(v["results"].as_array().unwrap().len())
    );

    // A pasted bug report of exactly 64 KiB is searched whole; one byte more is 413.
    let words = "TypeError in WriteLoginAttempt when the audit log rotates\n";
    let mut report = words.repeat(64 * 1024 / words.len() + 1);
    report.truncate(64 * 1024 - 1);
    report.push('.');
    assert_eq!(report.trim().len(), 64 * 1024);
    let (status, v) = post(&c, &url, json!({"query": report, "k": 3}).to_string()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"][0]["path"], "src/audit.go", "{v}");
    let (status, v) = post(&c, &url, json!({"query": format!("{report}x"), "k": 3}).to_string()).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("longer than 65536 bytes"), "{v}");

    // Files instead of chunks: `k` counts files, each with its best chunks.
    let (status, v) = post(
        &c,
        &url,
        json!({"query": "append a login attempt to the audit log", "k": 3, "group_by": "file"}).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("results").is_none(), "{v}");
    let files = v["files"].as_array().unwrap();
    assert!(!files.is_empty() && files.len() <= 3, "{v}");
    assert_eq!(files[0]["path"], "src/audit.go");
    let mut paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.dedup();
    assert_eq!(paths.len(), files.len(), "each file once: {v}");
    for f in files {
        let hits = f["hits"].as_array().unwrap();
        assert!(
            (1..=3).contains(&hits.len()) && hits.iter().all(|h| h["path"] == f["path"]),
            "{f}"
        );
        assert!(f["score"].is_number());
    }

    // Client mistakes: 4xx with a JSON message naming the problem.
    let cases: Vec<(String, u16, &str)> = vec![
        (json!({"query": ""}).to_string(), 400, "query"),
        (json!({"query": "   "}).to_string(), 400, "query"),
        (json!({"query": "x", "k": 0}).to_string(), 400, "k must be"),
        (json!({"query": "x", "k": 101}).to_string(), 400, "k must be"),
        (json!({"query": "x", "k": "ten"}).to_string(), 400, "invalid"),
        (json!({"query": 5}).to_string(), 400, "invalid"),
        (json!({"k": 5}).to_string(), 400, "query"),
        ("{not json".to_string(), 400, "invalid"),
        (
            json!({"query": "x", "repos": ["no-such-repo"]}).to_string(),
            404,
            "no-such-repo",
        ),
        (
            json!({"query": "x", "languages": ["klingon"]}).to_string(),
            400,
            "klingon",
        ),
        (
            json!({"query": "x", "group_by": "repo"}).to_string(),
            400,
            "unknown variant",
        ),
        (json!({"query": "x".repeat(2 * 1024 * 1024)}).to_string(), 413, "larger"),
    ];
    for (body, want, needle) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let (status, v) = post(&c, &url, body).await;
        assert_eq!(status, want, "{shown}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message for {shown}: {v}"));
        assert!(msg.contains(needle), "{shown}: {msg}");
    }
    // The 413 said `Connection: close` (its body was left unread), so the same
    // pooling client opens a new connection instead of reusing a dead one.
    let resp = c.get(server.url("/v1/nope")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_search_health_and_reflection() {
    use cairn_proto::v1::SearchRequest;
    use cairn_proto::v1::retrieval_client::RetrievalClient;

    let (_repo, data) = indexed_data_dir();
    let server = Server::start(data.path());
    let endpoint = format!("http://{}", server.grpc);
    let mut client = RetrievalClient::connect(endpoint.clone()).await.unwrap();
    let resp = client
        .search(SearchRequest {
            query: "refill the token bucket".into(),
            k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results.len(), 3);
    assert_eq!(resp.results[0].path, "src/rate_limit.py");
    assert!(
        resp.results[0].symbol.starts_with("TokenBucket"),
        "{:?}",
        resp.results[0]
    );

    // Files instead of chunks, as over HTTP.
    let files = client
        .search(SearchRequest {
            query: "refill the token bucket".into(),
            k: 2,
            group_by: "file".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(files.results.is_empty());
    assert!(!files.files.is_empty() && files.files.len() <= 2, "{files:?}");
    assert_eq!(files.files[0].path, "src/rate_limit.py");
    assert!(files.files[0].hits.iter().all(|h| h.path == "src/rate_limit.py"));
    let err = client
        .search(SearchRequest {
            query: "x".into(),
            group_by: "repo".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let err = client
        .search(SearchRequest {
            query: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .search(SearchRequest {
            query: "x".into(),
            k: 500,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .search(SearchRequest {
            query: "x".into(),
            repos: vec!["missing".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let channel = tonic::transport::Channel::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "cairn.v1.Retrieval".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("{msg:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"cairn.v1.Retrieval".to_string()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn held_data_dir_is_refused_and_index_persists_across_restarts() {
    let (_repo, data) = indexed_data_dir();
    let d = data.path().to_str().unwrap();
    let server = Server::start(data.path());
    let (ok, _, err) = run(&["index", ".", "--repo", "other", "--data-dir", d]);
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "data dir {d} is in use by cairn serve, pid {}",
            server.child.id()
        )),
        "{err}"
    );
    assert!(err.contains("use its HTTP API"), "{err}");
    drop(server);

    // Restarted, the server answers from the persisted store.
    let server = Server::start(data.path());
    let c = reqwest::Client::new();
    let (status, v) = post(
        &c,
        &server.url("/v1/search"),
        json!({"query": "verify token signature and expiry", "k": 1}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["results"][0]["path"], "src/lib.rs", "{v}");
    assert!(
        v["results"][0]["content"].as_str().unwrap().contains("pub fn verify("),
        "{v}"
    );
}
