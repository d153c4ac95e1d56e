//! The dev eval on both store backends with the real model: the Qdrant
//! server must give the embedded store's recall@10 and MRR@10 within 0.01.
//! Runs when `QDRANT_URL` names a Qdrant 1.17+ gRPC endpoint (and the eval
//! set is beside the checkout); otherwise it says why it skipped and passes.
//! Its collection is dropped at the end, pass or fail.

use std::path::PathBuf;

use serde_json::Value;

use crate::run;

fn eval_metrics(args: &[&str]) -> Value {
    let (ok, out, err) = run(args);
    assert!(ok, "cairn {args:?} failed: {err}");
    let line = out.lines().last().expect("eval prints a JSON line");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["metrics"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_on_qdrant_matches_the_embedded_store() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!(
            "skipping eval_on_qdrant_matches_the_embedded_store: set QDRANT_URL \
             (a Qdrant 1.17+ gRPC endpoint, e.g. http://127.0.0.1:6334) to run it"
        );
        return;
    };
    let eval = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/dev");
    if !eval.join("queries.jsonl").is_file() {
        eprintln!(
            "skipping eval_on_qdrant_matches_the_embedded_store: no eval set at {}",
            eval.display()
        );
        return;
    }
    let eval = eval.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let collection = format!(
        "cairn_e2e_eval_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let api_key_env = if std::env::var_os("QDRANT_API_KEY").is_some() {
        "api_key_env = \"QDRANT_API_KEY\"\n"
    } else {
        ""
    };
    let config = tmp.path().join("qdrant.toml");
    std::fs::write(
        &config,
        format!("[store]\nkind = \"qdrant\"\nurl = \"{url}\"\ncollection = \"{collection}\"\n{api_key_env}"),
    )
    .unwrap();

    let edge_dir = tmp.path().join("edge");
    let edge = eval_metrics(&["--data-dir", edge_dir.to_str().unwrap(), "eval", eval, "--json"]);
    let qdrant_dir = tmp.path().join("qdrant");
    let outcome = std::panic::catch_unwind(|| {
        eval_metrics(&[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            qdrant_dir.to_str().unwrap(),
            "eval",
            eval,
            "--json",
        ])
    });
    let settings = cairn_indexer::store::qdrant::QdrantSettings {
        url,
        api_key: std::env::var("QDRANT_API_KEY").ok(),
        collection: collection.clone(),
        ..Default::default()
    };
    let store = cairn_indexer::store::qdrant::QdrantStore::new(settings, 384).unwrap();
    if let Err(e) = store.drop_collection().await {
        eprintln!("could not drop collection {collection}: {e}");
    }
    let qdrant = outcome.unwrap();
    eprintln!("eval, embedded: {edge}\neval, qdrant:   {qdrant}");
    for metric in ["recall@10", "mrr@10"] {
        let (a, b) = (edge[metric].as_f64().unwrap(), qdrant[metric].as_f64().unwrap());
        assert!((a - b).abs() <= 0.01, "{metric}: embedded {a}, qdrant {b}");
    }
}
