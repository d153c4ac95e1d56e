//! The audit log as an auditor meets it: one record per request, sealed with a
//! signed checkpoint at shutdown, and `cairn audit verify` on the files.

use serde_json::{Value, json};

use crate::{Server, indexed_data_dir, run};

#[tokio::test(flavor = "multi_thread")]
async fn every_search_is_audited_and_tampering_is_reported() {
    use cairn_proto::v1::SearchRequest;
    use cairn_proto::v1::retrieval_client::RetrievalClient;

    let (_repo, data) = indexed_data_dir();

    let mut server = Server::start(data.path());
    let client = reqwest::Client::new();
    let ok_status = client
        .post(server.url("/v1/search"))
        .json(&json!({"query": "verify a password hash", "k": 2}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(ok_status, 200);
    let bad = client
        .post(server.url("/v1/search"))
        .json(&json!({"query": "x", "k": 0}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(bad, 400);
    let mut grpc = RetrievalClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    grpc.search(SearchRequest {
        query: "refill the token bucket".into(),
        k: 1,
        repos: vec!["acme-auth".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    server.terminate();

    let log = data.path().join("audit/audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4, "three requests and the shutdown checkpoint:\n{text}");
    let (first, second, third, last) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(first["surface"], "http.search");
    assert_eq!(first["query"], "verify a password hash");
    assert_eq!(first["principal"], "anonymous");
    assert_eq!(first["decision"], "allow");
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["repos_allowed"], json!(["acme-auth"]));
    let results = first["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert!(!r["id"].as_str().unwrap().is_empty());
        assert_eq!(r["commit"].as_str().unwrap().len(), 40, "{r}");
    }
    assert_eq!(second["outcome"], "invalid_argument");
    assert_eq!(second["results"], json!([]));
    assert_eq!(third["surface"], "grpc.search");
    assert_eq!(last["type"], "checkpoint");
    assert_eq!(
        lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );

    let key = data.path().join("audit/signing-key.pub");
    let (ok, out, err) = run(&[
        "audit",
        "verify",
        log.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("3 records, 1 checkpoints") && out.contains("1 signatures verified"),
        "{out}"
    );

    // an edited query is caught at the next record
    let tampered = data.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("verify a password hash", "something else", 1)).unwrap();
    let (ok, out, _) = run(&[
        "audit",
        "verify",
        tampered.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        out.contains("tampered.jsonl:2: record seq 2 does not chain to seq 1"),
        "{out}"
    );
}

/// A request is refused (503) rather than served unrecorded when the audit
/// log cannot be written, and served again once it can; the anchor on
/// another "volume" receives every checkpoint, and `cairn audit verify
/// --anchor` then accepts the log and rejects it cut back.
#[tokio::test(flavor = "multi_thread")]
async fn requests_answer_503_while_the_audit_log_cannot_be_written() {
    let (_repo, data) = indexed_data_dir();
    let volume = tempfile::tempdir().unwrap();
    let anchor_dir = volume.path().join("anchor");
    let anchor = anchor_dir.join("audit-anchor.jsonl");
    let config = data.path().join("cairn.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\ncheckpoint_every = 1\nanchor_path = {:?}\n",
            anchor.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut server = Server::start_with_config(data.path(), Some(&config));
    let client = reqwest::Client::new();
    let search = || async {
        let resp = client
            .post(server.url("/v1/search"))
            .json(&json!({"query": "verify a password hash", "k": 1}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    assert_eq!(search().await.0, 200);
    // the writer anchors the record's checkpoint right after the response
    for _ in 0..500 {
        if anchor.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(anchor.exists(), "no checkpoint reached the anchor");

    // the anchor's volume goes away: checkpoints (one per record) fail
    std::fs::remove_dir_all(&anchor_dir).unwrap();
    std::fs::write(&anchor_dir, "not a directory").unwrap();
    let mut refused = None;
    for _ in 0..200 {
        let (status, body) = search().await;
        if status == 503 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body = refused.expect("requests kept being served while the audit log could not be written");
    assert!(body["error"].as_str().unwrap().contains("audit log"), "{body}");
    // every route but the health check
    let repos = client.get(server.url("/v1/repos")).send().await.unwrap();
    assert_eq!(repos.status(), 503);
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // the volume is back: the writer's retry succeeds and requests are served
    std::fs::remove_file(&anchor_dir).unwrap();
    std::fs::create_dir(&anchor_dir).unwrap();
    let mut served = false;
    for _ in 0..300 {
        if search().await.0 == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "requests stayed refused after the audit log could be written again"
    );
    server.terminate();

    let log = data.path().join("audit/audit.jsonl");
    let verify = |extra: &[&str]| {
        let mut args = vec!["audit", "verify", log.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&args)
    };
    let anchor_arg = anchor.to_str().unwrap();
    let (ok, out, err) = verify(&["--anchor", anchor_arg]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("anchored checkpoints found"), "{out}");
    assert!(out.contains("NO signature checked"), "{out}");

    // cut back to its first checkpoint: passes alone, fails with the anchor
    let text = std::fs::read_to_string(&log).unwrap();
    let cut: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, cut).unwrap();
    let (ok, out, _) = verify(&[]);
    assert!(ok, "{out}");
    let (ok, out, _) = verify(&["--anchor", anchor_arg]);
    assert!(!ok);
    assert!(out.contains("TAMPERED") && out.contains("cut back"), "{out}");
    // and the server refuses to continue it
    let mut child = crate::cairn()
        .args([
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "serve",
            "--http",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("cairn serve continued a log cut behind its anchor");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("cut back"), "{err}");
}
