//! Property tests of the chunker on arbitrary input, with a seeded generator
//! (reproducible; no extra crates): it never panics, every chunk's lines are
//! real lines of the file, and no line with content is lost.
//!
//! `CAIRN_PROPERTY_CASES` raises the number of cases per language (default 150).

use cairn_chunk::{Chunker, ChunkerConfig};

/// xorshift64*: small, fast, and the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pieces real and broken source is made of, in every parsed language.
const PIECES: &[&str] = &[
    "fn ",
    "def ",
    "class ",
    "impl ",
    "struct ",
    "func ",
    "public ",
    "static ",
    "void ",
    "int ",
    "return ",
    "if ",
    "else ",
    "for ",
    "while ",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ";",
    ":",
    ",",
    ".",
    "=",
    "=>",
    "->",
    "::",
    "\"",
    "'",
    "`",
    "/*",
    "*/",
    "//",
    "#",
    "<",
    ">",
    "@",
    "\\",
    "\n",
    "\n",
    "\n",
    "\r\n",
    "\t",
    "    ",
    " ",
    "x",
    "foo",
    "Bar",
    "_baz",
    "0",
    "42",
    "é",
    "日本",
    "🦀",
    "\u{feff}",
    "\u{0}",
    "template<typename T>",
    "namespace n {",
    "#include <x.h>",
    "import os\n",
    "package main\n",
    "const a = () => {",
    "export default ",
    "trait T {",
    "    def m(self):\n        pass\n",
];

fn text(rng: &mut Rng) -> String {
    let mut s = String::new();
    let parts = rng.below(400);
    for _ in 0..parts {
        if rng.below(10) == 0 {
            // raw bytes, decoded the way the indexer reads files
            let bytes: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
            s.push_str(&String::from_utf8_lossy(&bytes));
        } else if rng.below(50) == 0 {
            s.push_str(&"y".repeat(rng.below(20_000)));
        } else {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        }
    }
    s
}

#[test]
fn chunks_of_arbitrary_text_are_real_lines_and_lose_no_line() {
    let cases: usize = std::env::var("CAIRN_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let chunker = Chunker::new(ChunkerConfig {
        parse_timeout_micros: 0,
        ..ChunkerConfig::default()
    });
    let paths = [
        "a.rs",
        "a.py",
        "a.go",
        "a.java",
        "a.js",
        "a.ts",
        "a.tsx",
        "a.c",
        "a.cpp",
        "a.h",
        "notes.txt",
        "Makefile",
    ];
    let mut rng = Rng(0x5eed_c0de_1234_5678);
    for case in 0..cases {
        for path in paths {
            let text = text(&mut rng);
            let chunks = chunker.chunk(path, &text);
            let lines: Vec<&str> = text.split('\n').collect();
            let mut covered = vec![false; lines.len() + 1];
            for c in &chunks {
                assert!(
                    c.start_line >= 1 && c.start_line <= c.end_line && (c.end_line as usize) <= lines.len(),
                    "case {case} {path}: lines {}-{} of {}",
                    c.start_line,
                    c.end_line,
                    lines.len()
                );
                for l in c.start_line..=c.end_line {
                    covered[l as usize] = true;
                }
                // the content is those lines, or one piece of a long line
                let first = lines[c.start_line as usize - 1].trim_end_matches('\r');
                assert!(
                    first.contains(c.content.split('\n').next().unwrap_or("").trim_end_matches('\r'))
                        || c.content.starts_with(first),
                    "case {case} {path}: chunk at line {} does not start with that line",
                    c.start_line
                );
            }
            for (i, line) in lines.iter().enumerate() {
                if !line.trim().is_empty() {
                    assert!(
                        covered[i + 1],
                        "case {case} {path}: line {} ({:?}) is in no chunk",
                        i + 1,
                        line.chars().take(40).collect::<String>()
                    );
                }
            }
        }
    }
}
