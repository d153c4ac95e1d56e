//! Embedding one batch of 32 real chunks with the default model (criterion).
//! Skips with a message when `make setup` has not installed the model.

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::embed::Embed;
use cairn_services::config::Config;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn embedding(c: &mut Criterion) {
    let config = match Config::load(None) {
        Ok(c) => c,
        Err(e) => return eprintln!("embedding bench: {e}"),
    };
    let embedder = match cairn_engine::engine::load_embedder(&config) {
        Ok(e) => e,
        Err(e) => return eprintln!("embedding bench skipped: {e:#}"),
    };
    let chunker = Chunker::new(ChunkerConfig::default());
    let texts: Vec<String> = cairn_benches::corpus_files()
        .iter()
        .flat_map(|(p, t)| chunker.chunk(p, t))
        .map(|c| c.embed_text)
        .take(32)
        .collect();
    if texts.len() < 32 {
        return eprintln!(
            "embedding bench: no eval corpus at {}",
            cairn_benches::eval_dir().display()
        );
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("embedding");
    group.sample_size(10);
    group.throughput(Throughput::Elements(32));
    group.bench_function("batch_32", |b| {
        b.iter(|| embedder.embed_documents(&refs).map(|e| e.tokens))
    });
    group.bench_function("query", |b| b.iter(|| embedder.embed_query("verify a session token")));
    group.finish();
}

criterion_group!(benches, embedding);
criterion_main!(benches);
