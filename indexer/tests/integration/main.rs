//! Integration tests of the indexer: pipeline + embedded store, with the
//! deterministic hash embedder so they need no model files.

mod conformance;
mod incremental;
mod secrets;

use std::sync::Arc;

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::embed::{Embed, HashEmbedder};
use cairn_indexer::pipeline::{IndexOptions, NoProgress, index_snapshot};
use cairn_indexer::source::{FileLimits, read};
use cairn_indexer::sparse;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::{SearchFilter, VectorStore};

fn write(dir: &std::path::Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn sample_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "src/parse.rs",
        "/// Parses a config file.\npub fn parse_config(text: &str) -> Config {\n    Config::default()\n}\n",
    );
    write(
        dir.path(),
        "src/net/http.py",
        "def send_request(url):\n    \"\"\"Sends an HTTP request.\"\"\"\n    return fetch(url)\n",
    );
    write(
        dir.path(),
        "lib/util.go",
        "package util\n\n// Clamp limits v to [lo, hi].\nfunc Clamp(v, lo, hi int) int {\n\tif v < lo {\n\t\treturn lo\n\t}\n\treturn v\n}\n",
    );
    dir
}

async fn index(dir: &std::path::Path, repo: &str, store: Arc<dyn VectorStore>, embedder: Arc<dyn Embed>) -> usize {
    let snap = read(dir, &FileLimits::default()).unwrap();
    let chunker = Arc::new(Chunker::new(ChunkerConfig::default()));
    let report = index_snapshot(snap, &IndexOptions::new(repo), chunker, embedder, store, &NoProgress)
        .await
        .unwrap();
    report.chunks
}

#[tokio::test(flavor = "multi_thread")]
async fn index_search_filter_reindex_and_reopen() {
    let repo = sample_repo();
    let store_dir = tempfile::tempdir().unwrap();
    let embedder: Arc<dyn Embed> = Arc::new(HashEmbedder::new(64));
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 64).unwrap());

    let chunks = index(repo.path(), "demo", store.clone(), embedder.clone()).await;
    assert!(chunks >= 3, "{chunks}");
    assert_eq!(store.count(&SearchFilter::default()).await.unwrap(), chunks);

    // Dense and sparse retrieval both find the config parser.
    let q = embedder.embed_query("parse config").unwrap();
    let hits = store.search_dense(q, &SearchFilter::default(), 3).await.unwrap();
    assert_eq!(hits[0].payload.path, "src/parse.rs");
    assert_eq!(hits[0].payload.start_line, 1, "doc comment is part of the chunk");
    let hits = store
        .search_sparse(sparse::query_vector("parse config"), &SearchFilter::default(), 3)
        .await
        .unwrap();
    assert_eq!(hits[0].payload.path, "src/parse.rs");

    // Filters run inside the store.
    let only_py = SearchFilter {
        languages: vec!["python".into()],
        ..Default::default()
    };
    let hits = store
        .search_dense(embedder.embed_query("parse").unwrap(), &only_py, 10)
        .await
        .unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.payload.language == "python"));
    let prefix = SearchFilter {
        path_prefix: Some("src/ne".into()),
        ..Default::default()
    };
    let hits = store
        .search_dense(embedder.embed_query("request").unwrap(), &prefix, 10)
        .await
        .unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.payload.path.starts_with("src/ne")));
    let other_repo = SearchFilter {
        repos: vec!["nope".into()],
        ..Default::default()
    };
    assert!(
        store
            .search_dense(embedder.embed_query("x").unwrap(), &other_repo, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A second repo, then re-indexing the first after a deletion.
    index(repo.path(), "other", store.clone(), embedder.clone()).await;
    std::fs::remove_file(repo.path().join("lib/util.go")).unwrap();
    let chunks2 = index(repo.path(), "demo", store.clone(), embedder.clone()).await;
    let demo = SearchFilter {
        repos: vec!["demo".into()],
        ..Default::default()
    };
    assert_eq!(store.count(&demo).await.unwrap(), chunks2);
    let hits = store
        .search_sparse(sparse::query_vector("clamp"), &demo, 10)
        .await
        .unwrap();
    assert!(
        hits.iter().all(|h| h.payload.path != "lib/util.go"),
        "deleted file's points are gone"
    );
    let other = SearchFilter {
        repos: vec!["other".into()],
        ..Default::default()
    };
    assert_eq!(
        store.count(&other).await.unwrap(),
        chunks,
        "the other repo is untouched"
    );

    // Persisted across reopen.
    drop(store);
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 64).unwrap());
    assert_eq!(store.count(&demo).await.unwrap(), chunks2);
    // A different dimension is refused with a clear message.
    drop(store);
    let err = EdgeStore::open(store_dir.path(), 32).err().unwrap().to_string();
    assert!(err.contains("64") && err.contains("32"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reindexing_unchanged_repo_is_idempotent() {
    let repo = sample_repo();
    let store_dir = tempfile::tempdir().unwrap();
    let embedder: Arc<dyn Embed> = Arc::new(HashEmbedder::new(32));
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 32).unwrap());
    let a = index(repo.path(), "r", store.clone(), embedder.clone()).await;
    let b = index(repo.path(), "r", store.clone(), embedder.clone()).await;
    assert_eq!(a, b);
    assert_eq!(store.count(&SearchFilter::default()).await.unwrap(), a);
    store.delete_repo("r").await.unwrap();
    assert_eq!(store.count(&SearchFilter::default()).await.unwrap(), 0);
}
