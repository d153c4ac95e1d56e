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

/// A Qdrant server to test against (`QDRANT_URL`, and `QDRANT_API_KEY`
/// when set) with a collection name of its own.
pub struct TestQdrant {
    pub url: String,
    pub collection: String,
}

impl TestQdrant {
    /// `None` (after printing why `test` skips) when `QDRANT_URL` is unset.
    pub fn from_env(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("QDRANT_URL") else {
            eprintln!(
                "skipping {test}: set QDRANT_URL (a Qdrant 1.17+ gRPC endpoint, e.g. http://127.0.0.1:6334) to run it"
            );
            return None;
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Some(Self {
            url,
            collection: format!("cairn_e2e_{}_{stamp}", std::process::id()),
        })
    }

    /// The `[store]` section that points cairn at it.
    pub fn store_toml(&self) -> String {
        let api_key_env = if std::env::var_os("QDRANT_API_KEY").is_some() {
            "api_key_env = \"QDRANT_API_KEY\"\n"
        } else {
            ""
        };
        format!(
            "[store]\nkind = \"qdrant\"\nurl = \"{}\"\ncollection = \"{}\"\n{api_key_env}",
            self.url, self.collection
        )
    }

    /// Settings for its chunks collection (`collection`: another name).
    pub fn settings(&self, collection: &str) -> cairn_indexer::store::qdrant::QdrantSettings {
        cairn_indexer::store::qdrant::QdrantSettings {
            url: self.url.clone(),
            api_key: std::env::var("QDRANT_API_KEY").ok(),
            collection: collection.to_string(),
            ..Default::default()
        }
    }

    /// The test's collections on the server: the chunks collection of each
    /// generation and the metadata collection.
    pub async fn collections(&self) -> Vec<String> {
        let mut names = cairn_indexer::store::qdrant::collections(&self.settings(&self.collection))
            .await
            .unwrap();
        names.retain(|n| n == &self.collection || n.starts_with(&format!("{}-", self.collection)));
        names.sort();
        names
    }

    /// Drops every collection of the test (a failure is printed, not
    /// raised: the test's own outcome matters more).
    pub async fn drop_collections(&self) {
        let names = match cairn_indexer::store::qdrant::collections(&self.settings(&self.collection)).await {
            Ok(names) => names,
            Err(e) => return eprintln!("could not list the collections of {}: {e}", self.collection),
        };
        for name in names
            .iter()
            .filter(|n| *n == &self.collection || n.starts_with(&format!("{}-", self.collection)))
        {
            let outcome = match cairn_indexer::store::qdrant::QdrantStore::new(self.settings(name), 384) {
                Ok(store) => store.drop_collection().await,
                Err(e) => Err(e),
            };
            if let Err(e) = outcome {
                eprintln!("could not drop the collection {name}: {e}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_on_qdrant_matches_the_embedded_store() {
    let Some(qdrant) = TestQdrant::from_env("eval_on_qdrant_matches_the_embedded_store") else {
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
    let config = tmp.path().join("qdrant.toml");
    std::fs::write(&config, qdrant.store_toml()).unwrap();

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
    qdrant.drop_collections().await;
    let on_qdrant = outcome.unwrap();
    eprintln!("eval, embedded: {edge}\neval, qdrant:   {on_qdrant}");
    for metric in ["recall@10", "mrr@10"] {
        let (a, b) = (edge[metric].as_f64().unwrap(), on_qdrant[metric].as_f64().unwrap());
        assert!((a - b).abs() <= 0.01, "{metric}: embedded {a}, qdrant {b}");
    }
}
