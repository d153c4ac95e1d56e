//! Runs the secret scanner over a directory tree the way the indexer reads
//! files (UTF-8 text up to 1 MiB, hidden files included) and prints every
//! redaction as `rule path:line: <redacted line>` (the value itself is never
//! printed), counts per rule and the scan throughput. For checking the false
//! positive rate on real code:
//!
//! `cargo run --release -p cairn-benches --example scan_secrets -- DIR [--quiet]`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_indexer::secrets::Scanner;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quiet = args.iter().any(|a| a == "--quiet");
    let root = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| cairn_benches::eval_dir().join("corpus"));
    let scanner = Scanner::new()?;
    let (mut files, mut bytes, mut took) = (0usize, 0usize, Duration::ZERO);
    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            if !ft.is_file() || e.metadata().map_or(true, |m| m.len() > 1 << 20) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            if text.contains('\0') {
                continue;
            }
            files += 1;
            bytes += text.len();
            let t = Instant::now();
            let rel = p.strip_prefix(&root).unwrap_or(&p).to_string_lossy().into_owned();
            let r = scanner.redact_file(&rel, &text);
            took += t.elapsed();
            for f in &r.findings {
                *per_rule.entry(f.rule).or_default() += 1;
                if !quiet {
                    let line = r.text.lines().nth(f.line - 1).unwrap_or("");
                    let shown: String = line.trim().chars().take(160).collect();
                    println!("{} {rel}:{}: {shown}", f.rule, f.line);
                }
            }
        }
    }
    println!(
        "{files} files, {:.1} MB, {} redactions {per_rule:?}; scanned in {:.2}s = {:.0} MB/s",
        bytes as f64 / 1e6,
        per_rule.values().sum::<usize>(),
        took.as_secs_f64(),
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
    Ok(())
}
