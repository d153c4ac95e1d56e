//! The two vector store backends side by side, in one run
//! (`cargo bench --locked -p cairn-benches --bench stores`):
//!
//! 1. the eval corpus is indexed once into the embedded store with the real
//!    model (full-pipeline throughput, embedding included);
//! 2. those points (vectors and payloads, no re-embedding) are written into a
//!    fresh embedded store and, when `QDRANT_URL` names a Qdrant 1.17+ gRPC
//!    endpoint, into a fresh Qdrant collection (dropped at the end): write
//!    throughput, then the time to optimize;
//! 3. the eval's queries, embedded once, run against each: the store's share
//!    of a search (dense and BM25 candidates, joined, as `/v1/search` does)
//!    at concurrency 1 (p50/p99) and 8 (queries/s), each query filtered to
//!    its repo;
//! 4. the overlap of the two backends' top 10 (the same data should give the
//!    same answers; HNSW is approximate, so a little less than 1.0 is normal).
//!
//! Without `QDRANT_URL` the Qdrant rows say why they are missing. Nothing
//! here asserts a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use cairn_benches::{eval_dir, percentile};
use cairn_engine::engine::Engine;
use cairn_indexer::sparse;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::qdrant::{QdrantSettings, QdrantStore};
use cairn_indexer::store::{ChunkPoint, SearchFilter, VectorStore};
use cairn_services::config::Config;
use futures::StreamExt;

/// Candidates per list, as `/v1/search` asks for (`[rank] candidates`).
const CANDIDATES: usize = 100;
const BATCH: usize = 256;

struct Query {
    repo: String,
    dense: Vec<f32>,
    sparse: sparse::SparseVec,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("stores: bench");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let eval = eval_dir();
    let corpus = eval.join("corpus");
    anyhow::ensure!(corpus.is_dir(), "no eval corpus at {}", corpus.display());
    let tmp = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    config.data_dir = tmp.path().join("data");
    let engine = Engine::open(&config, "cairn bench")?;

    // 1. The corpus, one repo per directory, through the whole pipeline.
    let mut repos: Vec<String> = std::fs::read_dir(&corpus)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    repos.sort();
    let started = Instant::now();
    let mut chunks = 0;
    for repo in &repos {
        let report = engine
            .index(&corpus.join(repo), repo, &config, &cairn_indexer::pipeline::NoProgress)
            .await?;
        chunks += report.chunks;
    }
    let pipeline_s = started.elapsed().as_secs_f64();
    println!(
        "## Stores ({} repos, {chunks} chunks, dim {})",
        repos.len(),
        engine.store.dim()
    );
    println!(
        "full pipeline into the embedded store: {pipeline_s:.1}s  {:.1} chunks/s (embedding included)",
        chunks as f64 / pipeline_s
    );

    let points = export_all(engine.store.as_ref()).await?;
    let queries = queries(&engine, &eval).await?;
    println!("{} points, {} queries\n", points.len(), queries.len());

    let dim = engine.store.dim();
    let edge: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(&tmp.path().join("edge-copy"), dim)?);
    let edge_top = measure("embedded (qdrant-edge)", edge, &points, &queries).await?;

    match std::env::var("QDRANT_URL") {
        Err(_) => println!(
            "qdrant: skipped; set QDRANT_URL (a Qdrant 1.17+ gRPC endpoint, e.g. http://127.0.0.1:6334) to measure it"
        ),
        Ok(url) => {
            let settings = QdrantSettings {
                url,
                api_key: std::env::var("QDRANT_API_KEY").ok(),
                collection: format!("cairn_bench_{}_{}", std::process::id(), chrono_free_stamp()),
                ..Default::default()
            };
            let store = Arc::new(QdrantStore::connect(settings, dim).await?);
            let outcome = measure("qdrant server", store.clone(), &points, &queries).await;
            store.drop_collection().await?;
            let qdrant_top = outcome?;
            let overlap: f64 = edge_top
                .iter()
                .zip(&qdrant_top)
                .map(|(a, b)| {
                    let a: HashSet<&String> = a.iter().collect();
                    let shared = b.iter().filter(|id| a.contains(id)).count();
                    shared as f64 / a.len().max(b.len()).max(1) as f64
                })
                .sum::<f64>()
                / edge_top.len().max(1) as f64;
            println!("top-10 overlap, embedded vs qdrant (dense): {overlap:.3}");
        }
    }
    Ok(())
}

/// A collection-name suffix that differs between runs.
fn chrono_free_stamp() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

async fn export_all(store: &dyn VectorStore) -> anyhow::Result<Vec<ChunkPoint>> {
    let mut out = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = store.export(offset, 1024).await?;
        out.extend(page);
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(out),
        }
    }
}

async fn queries(engine: &Engine, eval: &std::path::Path) -> anyhow::Result<Vec<Query>> {
    let text = std::fs::read_to_string(eval.join("queries.jsonl"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let (Some(repo), Some(query)) = (v["repo"].as_str(), v["query"].as_str()) else {
            anyhow::bail!("query without repo or query: {line}");
        };
        out.push(Query {
            repo: repo.to_string(),
            dense: engine.embedder.embed_query(&sparse::humanize(query))?,
            sparse: sparse::query_vector(query),
        });
    }
    Ok(out)
}

/// Writes `points` into `store`, optimizes, then times the queries; returns
/// each query's dense top-10 ids.
async fn measure(
    name: &str,
    store: Arc<dyn VectorStore>,
    points: &[ChunkPoint],
    queries: &[Query],
) -> anyhow::Result<Vec<Vec<String>>> {
    let started = Instant::now();
    for batch in points.chunks(BATCH) {
        store.upsert(batch.to_vec()).await?;
    }
    store.flush().await?;
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    store.optimize().await?;
    let optimize_s = started.elapsed().as_secs_f64();
    println!(
        "{name}: write {:.0} points/s ({write_s:.2}s, batches of {BATCH}, acknowledged), optimize {optimize_s:.2}s",
        points.len() as f64 / write_s
    );

    // warm-up: one pass, untimed
    for q in queries.iter().take(20) {
        search(&store, q).await?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut tops = Vec::with_capacity(queries.len());
    for q in queries {
        let started = Instant::now();
        search(&store, q).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let filter = SearchFilter {
            repos: vec![q.repo.clone()],
            ..Default::default()
        };
        let top = store.search_dense(q.dense.clone(), &filter, 10).await?;
        tops.push(top.into_iter().map(|h| h.id).collect());
    }
    println!(
        "{name}: search (dense + BM25 candidates, {CANDIDATES} each), concurrency 1: p50 {:.2} ms  p99 {:.2} ms",
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0)
    );
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(queries.iter().cycle().take(queries.len() * 2))
        .map(|q| {
            let store = store.clone();
            async move { search(&store, q).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!(
        "{name}: concurrency 8: {:.0} queries/s\n",
        (queries.len() * 2) as f64 / started.elapsed().as_secs_f64()
    );
    Ok(tops)
}

async fn search(store: &Arc<dyn VectorStore>, q: &Query) -> anyhow::Result<()> {
    let filter = SearchFilter {
        repos: vec![q.repo.clone()],
        ..Default::default()
    };
    let (dense, bm25) = tokio::try_join!(
        store.search_dense(q.dense.clone(), &filter, CANDIDATES),
        store.search_sparse(q.sparse.clone(), &filter, CANDIDATES)
    )?;
    std::hint::black_box((dense, bm25));
    Ok(())
}
