//! Snapshot tests over the fixtures in `fixtures/chunking/`.
//!
//! The fixtures are small, so they are chunked with small limits
//! (`max_chars` 800, `merge_chars` 300) to exercise container and function
//! splitting. Each snapshot lists, per chunk, its kind, symbol, line range
//! and the head of its `embed_text` after the path line: the scope lines
//! (if any) and the first line of content.
//!
//! Update with `INSTA_UPDATE=always cargo test -p cairn-chunk --test snapshots`
//! and review the `.snap` files before committing.

use std::path::Path;

use cairn_chunk::{Chunk, Chunker, ChunkerConfig};
use serde::Serialize;

#[derive(Serialize)]
struct Entry {
    kind: String,
    symbol: Option<String>,
    lines: String,
    embed_head: Vec<String>,
}

fn entry(chunk: &Chunk) -> Entry {
    let first_content_line = chunk.content.lines().next().unwrap_or("");
    let mut embed_head = Vec::new();
    for line in chunk.embed_text.lines().skip(1) {
        embed_head.push(line.trim_end().to_string());
        if line == first_content_line {
            break;
        }
    }
    Entry {
        kind: chunk.kind.clone(),
        symbol: chunk.symbol.clone(),
        lines: format!("{}-{}", chunk.start_line, chunk.end_line),
        embed_head,
    }
}

fn snapshot(file: &str) -> Vec<Entry> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/chunking");
    let text = std::fs::read_to_string(root.join(file)).expect("fixture");
    let chunker = Chunker::new(ChunkerConfig {
        max_chars: 800,
        merge_chars: 300,
        ..ChunkerConfig::default()
    });
    let path = format!("fixtures/chunking/{file}");
    let chunks = chunker.chunk(&path, &text);
    for chunk in &chunks {
        assert!(chunk.embed_text.starts_with(&format!("{path}\n")));
        assert!(chunk.content.chars().count() <= 800);
    }
    chunks.iter().map(entry).collect()
}

macro_rules! fixture_snapshots {
    ($($name:ident => $file:literal),* $(,)?) => {$(
        #[test]
        fn $name() {
            insta::assert_yaml_snapshot!(stringify!($name), snapshot($file));
        }
    )*};
}

fixture_snapshots! {
    rust => "sample.rs",
    python => "sample.py",
    go => "sample.go",
    java => "Sample.java",
    javascript => "sample.js",
    typescript => "sample.ts",
    tsx => "sample.tsx",
    c => "sample.c",
    cpp => "sample.cpp",
    markdown => "README.md",
    yaml => "config.yaml",
}
