//! Integration tests of the indexer: pipeline + embedded store, with the
//! deterministic hash embedder so they need no model files.

mod conformance;
mod incremental;
mod secrets;
mod secrets_properties;

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

/// Counts the texts it embeds.
struct Counting {
    inner: HashEmbedder,
    texts: std::sync::atomic::AtomicUsize,
}

impl Embed for Counting {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }
    fn embed_documents(&self, texts: &[&str]) -> cairn_indexer::error::Result<cairn_indexer::embed::Embedded> {
        self.texts.fetch_add(texts.len(), std::sync::atomic::Ordering::Relaxed);
        self.inner.embed_documents(texts)
    }
    fn embed_query(&self, text: &str) -> cairn_indexer::error::Result<Vec<f32>> {
        self.inner.embed_query(text)
    }
}

/// An indexer that lost its embedding cache (a new indexer taking over a
/// Qdrant deployment, a wiped data dir) reads the vectors of chunks that are
/// already stored instead of embedding them again; a chunk whose text
/// changed under the same id (redaction switched on) is embedded anew.
#[tokio::test(flavor = "multi_thread")]
async fn stored_points_are_not_embedded_again() {
    let repo = sample_repo();
    write(
        repo.path(),
        "deploy/settings.py",
        "def connect():\n    token = \"ghp_abcdefghijklmnopqrstuvwxyz0123456789\"\n    return token\n",
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 32).unwrap());
    let embedder = Arc::new(Counting {
        inner: HashEmbedder::new(32),
        texts: Default::default(),
    });
    let run = |redact: bool| {
        let (store, embedder) = (store.clone(), embedder.clone());
        let dir = repo.path().to_path_buf();
        async move {
            let snap = read(&dir, &FileLimits::default()).unwrap();
            let mut options = IndexOptions::new("r");
            options.redact_secrets = redact;
            let chunker = Arc::new(Chunker::new(ChunkerConfig::default()));
            let before = embedder.texts.load(std::sync::atomic::Ordering::Relaxed);
            let report = index_snapshot(snap, &options, chunker, embedder.clone(), store, &NoProgress)
                .await
                .unwrap();
            let embedded = embedder.texts.load(std::sync::atomic::Ordering::Relaxed) - before;
            (report, embedded)
        }
    };
    let (first, embedded) = run(false).await;
    assert!(
        first.chunks >= 4 && embedded == first.chunks,
        "{} chunks, {embedded} embedded",
        first.chunks
    );
    let vectors = |points: Vec<cairn_indexer::store::ChunkPoint>| {
        let mut v: Vec<(String, Vec<f32>)> = points.into_iter().map(|p| (p.id, p.dense)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = vectors(store.export(None, 1000).await.unwrap().0);

    // the same snapshot again, with no cache: nothing is embedded, nothing changes
    let (second, embedded) = run(false).await;
    assert_eq!((second.chunks, second.tokens, embedded), (first.chunks, 0, 0));
    assert_eq!(vectors(store.export(None, 1000).await.unwrap().0), before);

    // redaction on: the chunk holding the token changes text under the same
    // id and is embedded again; every other chunk is reused
    let (third, embedded) = run(true).await;
    assert_eq!(third.secrets.values().sum::<usize>(), 1);
    assert_eq!((third.chunks, embedded), (first.chunks, 1));
    let hits = store
        .search_sparse(sparse::query_vector("connect token"), &SearchFilter::default(), 1)
        .await
        .unwrap();
    assert!(!hits[0].payload.content.contains("ghp_"), "{}", hits[0].payload.content);
}

/// A line too long for one chunk is cut into several chunks with the same
/// line range; each keeps its own point (none overwrites another).
#[tokio::test(flavor = "multi_thread")]
async fn chunks_of_one_long_line_are_all_stored() {
    let repo = sample_repo();
    // a long line among ordinary ones (a file of long lines only is skipped as minified)
    let entries: Vec<String> = (0..600).map(|i| format!("\"key_{i}\": \"value number {i}\"")).collect();
    let ordinary: String = (0..60)
        .map(|i| format!("def helper_{i}(x):\n    return x + {i}\n"))
        .collect();
    write(
        repo.path(),
        "data/table.py",
        &format!("TABLE = {{{}}}\n\n{ordinary}", entries.join(", ")),
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(store_dir.path(), 32).unwrap());
    let written = index(repo.path(), "r", store.clone(), Arc::new(HashEmbedder::new(32))).await;
    let table: Vec<_> = store
        .scroll_repo("r")
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, p)| p.path == "data/table.py" && (p.start_line, p.end_line) == (1, 1))
        .collect();
    assert!(table.len() >= 2, "the line was cut into {} stored chunks", table.len());
    assert_eq!(store.count(&SearchFilter::default()).await.unwrap(), written);
}
