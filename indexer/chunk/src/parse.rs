//! Thread-local tree-sitter parsers with a per-file time budget.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use tree_sitter::{ParseOptions, ParseState, Parser, Point, Tree};

use crate::Language;

thread_local! {
    /// One parser per language, per thread (parsers are not `Sync`).
    static PARSERS: RefCell<Vec<(Language, Parser)>> = const { RefCell::new(Vec::new()) };
}

/// Parses `text`; `None` when the language has no grammar, the text is too
/// large for tree-sitter's 32-bit offsets, or the budget ran out.
pub(crate) fn parse(lang: Language, text: &str, timeout_micros: u64) -> Option<Tree> {
    if text.len() >= u32::MAX as usize / 2 {
        return None;
    }
    let grammar = lang.grammar()?;
    PARSERS.with(|cell| {
        let mut parsers = cell.try_borrow_mut().ok()?;
        let idx = match parsers.iter().position(|(l, _)| *l == lang) {
            Some(i) => i,
            None => {
                let mut parser = Parser::new();
                parser.set_language(&grammar).ok()?;
                parsers.push((lang, parser));
                parsers.len() - 1
            }
        };
        let parser = &mut parsers[idx].1;
        let tree = parse_with_budget(parser, text, timeout_micros);
        if tree.is_none() {
            // a cancelled parse would otherwise be resumed by the next call
            parser.reset();
        }
        tree
    })
}

fn parse_with_budget(parser: &mut Parser, text: &str, timeout_micros: u64) -> Option<Tree> {
    let bytes = text.as_bytes();
    let started = Instant::now();
    let budget = Duration::from_micros(timeout_micros);
    let mut progress = |_: &ParseState| timeout_micros != 0 && started.elapsed() >= budget;
    let options = ParseOptions::new().progress_callback(&mut progress);
    let mut input = |offset: usize, _: Point| -> &[u8] { bytes.get(offset..).unwrap_or(&[]) };
    parser.parse_with_options(&mut input, None, Some(options))
}
