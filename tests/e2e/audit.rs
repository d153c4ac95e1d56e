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
        out.contains("3 records, 1 checkpoints (1 signatures verified)"),
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
