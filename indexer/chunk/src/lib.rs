//! Syntax-aware chunking of source files for cairn's code search.
//!
//! [`Chunker::chunk`] cuts one file into [`Chunk`]s: functions, methods,
//! classes, impls, … for languages with a tree-sitter grammar (Rust, Python,
//! Go, Java, JavaScript, TypeScript, TSX, C, C++), and line windows for
//! everything else. Each chunk carries its [`Language`], a kind
//! (`"function"`, `"class"`, `"items"`, `"section"`, …), a qualified symbol
//! (`Store::insert`, `Limiter.acquire`, `calc::Parser::parse`), its 1-based
//! line range, the exact source lines, and the `embed_text` handed to the
//! embedding model (path, enclosing scope signatures, then the content).
//!
//! * [`Language`] — detection from a path, names for payloads and filters.
//! * [`ChunkerConfig`] — size limits (`max_chars`, `merge_chars`), fallback
//!   window size and the per-file parse budget.
//! * [`Chunker`] — `Send + Sync`; keeps one tree-sitter parser per language
//!   and thread. Chunking never fails and never panics: files whose parse
//!   fails or times out are chunked with line windows.
//! * [`CHUNKER_VERSION`] — bumped whenever the output changes.
//!
//! Chunks are in file order and never overlap (except the overlap of
//! fallback windows); every non-blank line belongs to a chunk; no chunk's
//! content is longer than `max_chars` chars unless it is one piece of a
//! single longer line, which is cut at char boundaries.
//!
//! # Layout
//!
//! * `language` — [`Language`] and path / shebang detection.
//! * `lines` — line offsets (bytes and chars), computed once per file.
//! * `parse` — thread-local parsers, parsing with a time budget.
//! * `tree` — chunking along the syntax tree: units, runs, splitting,
//!   per-language classification and qualified symbols.
//! * `window` — line windows (Markdown headings, TOML tables and top-level
//!   YAML keys start new sections).
//! * `emit` — raw ranges, line packing, long-line cutting and the final
//!   [`Chunk`] with its `embed_text`.

mod emit;
mod language;
mod lines;
mod parse;
mod tree;
mod window;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use language::Language;

/// Bump whenever chunk output changes (it is part of point ids and triggers reindexing).
pub const CHUNKER_VERSION: u32 = 3;

/// One chunk of a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chunk {
    pub language: Language,
    /// `"function"`, `"method"`, `"class"`, `"impl"`, `"trait"`, `"struct"`,
    /// `"enum"`, `"interface"`, `"module"`, `"items"` (a merged run of small
    /// items) or `"section"` (a line window, or part of a split item).
    pub kind: String,
    /// Qualified symbol (`Type::method`, `Class.method`, `ns::Class::method`);
    /// `None` for merged runs and windows.
    pub symbol: Option<String>,
    /// 1-based, inclusive; includes doc comments, attributes and decorators
    /// directly above the item.
    pub start_line: u32,
    /// 1-based, inclusive.
    pub end_line: u32,
    /// The exact source lines `start_line..=end_line` (without the final line
    /// break), or one piece of a line longer than `max_chars`.
    pub content: String,
    /// `path`, the signatures of the enclosing containers (one per line, only
    /// when the chunk is inside one), then `content`.
    pub embed_text: String,
}

/// Size limits and budgets for [`Chunker`].
#[derive(Debug, Clone)]
pub struct ChunkerConfig {
    /// A node bigger than this (in chars) is split along its children.
    pub max_chars: usize,
    /// Small sibling items are merged into runs up to this size. Functions
    /// and methods are never merged with each other: each is its own chunk.
    pub merge_chars: usize,
    /// A container (class, impl, trait, module, namespace) bigger than this
    /// is split along its members, so methods become chunks of their own;
    /// a smaller one stays whole. Capped at `max_chars`.
    pub container_chars: usize,
    /// Fallback window size, in lines.
    pub window_lines: usize,
    /// Overlap of consecutive fallback windows, in lines.
    pub window_overlap: usize,
    /// Per-file tree-sitter parse budget (0 = none); on timeout the file is
    /// chunked with line windows.
    pub parse_timeout_micros: u64,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            max_chars: 6000,
            merge_chars: 1200,
            container_chars: 1500,
            window_lines: 60,
            window_overlap: 10,
            parse_timeout_micros: 2_000_000,
        }
    }
}

/// Cuts files into chunks. Cheap to share across threads.
#[derive(Debug, Clone, Default)]
pub struct Chunker {
    config: ChunkerConfig,
}

impl Chunker {
    pub fn new(config: ChunkerConfig) -> Self {
        Chunker { config }
    }

    pub fn config(&self) -> &ChunkerConfig {
        &self.config
    }

    /// Chunk one file. `path` is repo-relative with '/' separators. Never
    /// panics, on any input (invalid syntax, empty file, huge lines, CRLF).
    pub fn chunk(&self, path: &str, text: &str) -> Vec<Chunk> {
        if text.trim().is_empty() {
            return Vec::new();
        }
        let language = Language::detect(path, text);
        if cfg!(test) {
            // unit tests must see bugs, not the fallback
            return self.chunk_as(path, text, language, true);
        }
        // a bug must not take the indexer down: fall back to line windows,
        // then to nothing
        catch_unwind(AssertUnwindSafe(|| self.chunk_as(path, text, language, true)))
            .or_else(|_| catch_unwind(AssertUnwindSafe(|| self.chunk_as(path, text, language, false))))
            .unwrap_or_default()
    }

    fn chunk_as(&self, path: &str, text: &str, language: Language, syntax: bool) -> Vec<Chunk> {
        let cfg = &self.config;
        let max_chars = cfg.max_chars.max(1);
        let tree = if syntax {
            parse::parse(language, text, cfg.parse_timeout_micros)
        } else {
            None
        };
        let lines = lines::LineIndex::new(text);
        let mut sink = emit::Sink::new(&lines, max_chars);
        match &tree {
            Some(tree) => {
                let merge = cfg.merge_chars.min(max_chars);
                let container = cfg.container_chars.clamp(merge, max_chars);
                tree::Engine::new(text, language, merge, container, &mut sink).run(tree);
            }
            None => {
                let window_lines = cfg.window_lines.max(1);
                let limits = window::WindowLimits {
                    merge_chars: cfg.merge_chars.min(max_chars),
                    window_lines,
                    window_overlap: cfg.window_overlap.min(window_lines - 1),
                };
                window::chunk_windows(&mut sink, language, &limits);
            }
        }
        emit::finish(sink.out, &lines, text, path, language)
    }
}

#[cfg(test)]
mod tests;
