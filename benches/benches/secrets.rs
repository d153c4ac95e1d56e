//! Secret scanner throughput over the eval corpus (criterion), and the
//! redactions it makes there: the corpus is real OSS code with no planted
//! secrets, so every redaction printed is a false positive to look at.
//!
//! `cargo bench -p cairn-benches --bench secrets`

use std::collections::BTreeMap;

use cairn_indexer::secrets::Scanner;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn secrets(c: &mut Criterion) {
    let files = cairn_benches::corpus_files();
    if files.is_empty() {
        eprintln!(
            "secrets bench: no eval corpus at {}",
            cairn_benches::eval_dir().display()
        );
        return;
    }
    let bytes: usize = files.iter().map(|f| f.1.len()).sum();
    let scanner = Scanner::new().expect("rules compile");

    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for (path, text) in &files {
        for f in scanner.scan_file(path, text) {
            *per_rule.entry(f.rule).or_default() += 1;
            let line = text.lines().nth(f.line - 1).unwrap_or("");
            let shown: String = line.trim().chars().take(120).collect();
            println!("redaction: {} {path}:{}: {shown}", f.rule, f.line);
        }
    }
    println!(
        "secrets: {} files, {:.2} MB, {} redactions {per_rule:?}",
        files.len(),
        bytes as f64 / 1e6,
        per_rule.values().sum::<usize>()
    );

    let mut group = c.benchmark_group("secrets");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.bench_function("scan_eval_corpus", |b| {
        b.iter(|| files.iter().map(|(p, t)| scanner.scan_file(p, t).len()).sum::<usize>())
    });
    group.bench_function("redact_eval_corpus", |b| {
        b.iter(|| {
            files
                .iter()
                .map(|(p, t)| scanner.redact_file(p, t).text.len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, secrets);
criterion_main!(benches);
