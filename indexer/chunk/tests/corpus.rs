//! Throughput and chunk-size distribution over the eval corpus.
//!
//! `cargo test --release -p cairn-chunk --test corpus -- --ignored --nocapture`
//! (set `CAIRN_CORPUS` to chunk another directory).

use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn_chunk::{Chunker, ChunkerConfig};

const DEFAULT_CORPUS: &str = "/work/shared/eval/dev/corpus";

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
#[ignore = "reads the eval corpus; run explicitly"]
fn chunk_eval_corpus() {
    let root = std::env::var("CAIRN_CORPUS").unwrap_or_else(|_| DEFAULT_CORPUS.to_string());
    let root = Path::new(&root);
    let mut paths = Vec::new();
    files(root, &mut paths);
    paths.sort();
    let docs: Vec<(String, String)> = paths
        .iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(p).ok()?;
            let rel = p.strip_prefix(root).unwrap_or(p).to_string_lossy().replace('\\', "/");
            Some((rel, text))
        })
        .collect();
    assert!(!docs.is_empty(), "no files under {}", root.display());
    let bytes: usize = docs.iter().map(|(_, t)| t.len()).sum();

    let config = ChunkerConfig::default();
    let max_chars = config.max_chars;
    let chunker = Chunker::new(config);
    // warm up the thread-local parsers
    for (path, text) in docs.iter().take(4) {
        chunker.chunk(path, text);
    }
    let rounds = 3;
    let started = Instant::now();
    let mut chunks = Vec::new();
    for _ in 0..rounds {
        chunks = docs
            .iter()
            .map(|(path, text)| chunker.chunk(path, text))
            .collect::<Vec<_>>();
    }
    let elapsed = started.elapsed().as_secs_f64() / f64::from(rounds);

    let all: Vec<_> = chunks.iter().flatten().collect();
    let mb = bytes as f64 / 1e6;
    println!(
        "files {}  bytes {}  chunks {}  time {:.3}s  {:.1} MB/s (one core)",
        docs.len(),
        bytes,
        all.len(),
        elapsed,
        mb / elapsed
    );

    let mut sizes: Vec<usize> = all.iter().map(|c| c.content.chars().count()).collect();
    sizes.sort_unstable();
    let pct = |p: f64| sizes[((sizes.len() - 1) as f64 * p) as usize];
    println!(
        "chunk chars: min {}  p10 {}  p25 {}  median {}  p75 {}  p90 {}  p99 {}  max {}  mean {:.0}",
        sizes[0],
        pct(0.10),
        pct(0.25),
        pct(0.5),
        pct(0.75),
        pct(0.9),
        pct(0.99),
        sizes[sizes.len() - 1],
        sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
    );
    let buckets = [100, 250, 500, 1000, 1500, 2000, 2500, 3000, usize::MAX];
    let mut line = String::from("histogram:");
    let mut lo = 0;
    for hi in buckets {
        let n = sizes.iter().filter(|&&s| s > lo && s <= hi).count();
        let label = if hi == usize::MAX {
            format!(">{lo}")
        } else {
            format!("{}-{hi}", lo + 1)
        };
        line.push_str(&format!("  {label}: {n}"));
        lo = hi;
    }
    println!("{line}");
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for c in &all {
        match kinds.iter_mut().find(|(k, _)| *k == c.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((c.kind.clone(), 1)),
        }
    }
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    println!("kinds: {kinds:?}");
    let with_symbol = all.iter().filter(|c| c.symbol.is_some()).count();
    println!("with symbol: {with_symbol} / {}", all.len());

    // invariants over real code
    for ((path, text), chunks) in docs.iter().zip(&chunks) {
        let lines: Vec<&str> = text.lines().collect();
        let mut covered = vec![false; lines.len()];
        let mut prev_end = 0;
        for c in chunks {
            assert!(c.content.chars().count() <= max_chars, "{path}: oversized chunk");
            assert!(c.start_line > prev_end || c.start_line == c.end_line, "{path}: overlap");
            prev_end = c.end_line;
            for flag in &mut covered[c.start_line as usize - 1..c.end_line as usize] {
                *flag = true;
            }
        }
        for (i, l) in lines.iter().enumerate() {
            assert!(covered[i] || l.trim().is_empty(), "{path}:{} not covered", i + 1);
        }
    }
}

/// The output invariants, over real code and tight limits that force deep
/// splitting: every chunk fits `max_chars`, is the exact source lines (or a
/// piece of one over-long line), chunks are ordered without overlap, and
/// every non-blank line is covered.
#[test]
#[ignore = "reads the eval corpus; run explicitly"]
fn corpus_invariants_with_tight_limits() {
    let root = std::env::var("CAIRN_CORPUS").unwrap_or_else(|_| DEFAULT_CORPUS.to_string());
    let mut paths = Vec::new();
    files(Path::new(&root), &mut paths);
    paths.sort();
    for (max_chars, merge_chars) in [(3000, 1200), (500, 200), (120, 40), (30, 1)] {
        let chunker = Chunker::new(ChunkerConfig {
            max_chars,
            merge_chars,
            ..ChunkerConfig::default()
        });
        let mut total = 0;
        for p in &paths {
            let Ok(text) = std::fs::read_to_string(p) else {
                continue;
            };
            let path = p.to_string_lossy();
            let chunks = chunker.chunk(&path, &text);
            total += chunks.len();
            let lines: Vec<&str> = text.split('\n').collect();
            let mut covered = vec![false; lines.len()];
            let mut prev_end = 0;
            for c in &chunks {
                assert!(c.content.chars().count() <= max_chars, "{path}: {c:?}");
                let (s, e) = (c.start_line as usize - 1, c.end_line as usize - 1);
                let exact = lines[s..=e].join("\n");
                let exact = exact.strip_suffix('\r').unwrap_or(&exact);
                if c.content != exact {
                    assert!(s == e && exact.contains(&c.content), "{path}: {c:?}");
                } else {
                    assert!(c.start_line > prev_end, "{path}: overlap at {c:?}");
                }
                prev_end = c.end_line;
                for flag in &mut covered[s..=e] {
                    *flag = true;
                }
            }
            for (i, l) in lines.iter().enumerate() {
                assert!(covered[i] || l.trim().is_empty(), "{path}:{} not covered", i + 1);
            }
        }
        println!("max_chars {max_chars} merge_chars {merge_chars}: {total} chunks");
    }
}
