//! Chunking throughput over the eval corpus (criterion).

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn chunking(c: &mut Criterion) {
    let files = cairn_benches::corpus_files();
    if files.is_empty() {
        eprintln!(
            "chunking bench: no eval corpus at {}",
            cairn_benches::eval_dir().display()
        );
        return;
    }
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    let chunker = Chunker::new(ChunkerConfig::default());
    let mut group = c.benchmark_group("chunking");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("eval_corpus", |b| {
        b.iter(|| files.iter().map(|(p, t)| chunker.chunk(p, t).len()).sum::<usize>())
    });
    group.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
