//! Prints the chunks of one file: `cargo run --release -p cairn-chunk
//! --example chunk_file -- PATH [MAX_CHARS [MERGE_CHARS]]`; set `FULL=1` to
//! print every chunk's `embed_text`.

use cairn_chunk::{Chunker, ChunkerConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: chunk_file PATH [MAX_CHARS [MERGE_CHARS]]");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let mut config = ChunkerConfig::default();
    if let Some(max) = args.get(2).and_then(|s| s.parse().ok()) {
        config.max_chars = max;
    }
    if let Some(merge) = args.get(3).and_then(|s| s.parse().ok()) {
        config.merge_chars = merge;
    }
    let full = std::env::var_os("FULL").is_some();
    for chunk in Chunker::new(config).chunk(path, &text) {
        println!(
            "{:>5}-{:<5} {:9} {:40} {:>5} chars",
            chunk.start_line,
            chunk.end_line,
            chunk.kind,
            chunk.symbol.as_deref().unwrap_or("-"),
            chunk.content.chars().count()
        );
        if full {
            println!("{}\n-----", chunk.embed_text);
        }
    }
}
