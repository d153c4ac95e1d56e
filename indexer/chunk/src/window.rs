//! Line-window chunking for files without a grammar (and when parsing fails).
//!
//! The file is first cut into *sections* where the format has natural
//! boundaries (Markdown headings, TOML tables, top-level YAML keys); other
//! formats are a single section. Small consecutive sections are merged into
//! runs of at most `merge_chars`; a bigger section is covered by windows of
//! `window_lines` lines overlapping by `window_overlap`, each at most
//! `max_chars`. Every chunk has kind `"section"` and no symbol.

use crate::Language;
use crate::emit::{ScopeLine, Sink};
use crate::lines::LineIndex;

/// Limits for window chunking (already clamped to sane values).
pub(crate) struct WindowLimits {
    pub merge_chars: usize,
    pub window_lines: usize,
    pub window_overlap: usize,
}

struct Section {
    start: usize,
    end: usize,
    /// Headings enclosing this section, including its own first line.
    scope: Vec<ScopeLine>,
}

pub(crate) fn chunk_windows(sink: &mut Sink<'_>, lang: Language, limits: &WindowLimits) {
    let lines = sink.lines;
    if lines.len() == 0 {
        return;
    }
    let sections = sections(lines, lang);
    let mut run: Option<(usize, usize, Vec<ScopeLine>)> = None;
    for sec in sections {
        let size = lines.size(sec.start, sec.end);
        let n_lines = sec.end - sec.start + 1;
        if size > limits.merge_chars || n_lines > limits.window_lines {
            if let Some((s, e, scope)) = run.take() {
                sink.push(s, e, "section", None, &scope);
            }
            windows(sink, sec.start, sec.end, &sec.scope, limits);
            continue;
        }
        if let Some((s, e, scope)) = run.take() {
            if lines.size(s, sec.end) > limits.merge_chars || sec.end - s + 1 > limits.window_lines {
                sink.push(s, e, "section", None, &scope);
                run = Some((sec.start, sec.end, sec.scope));
            } else {
                run = Some((s, sec.end, scope));
            }
        } else {
            run = Some((sec.start, sec.end, sec.scope));
        }
    }
    if let Some((s, e, scope)) = run {
        sink.push(s, e, "section", None, &scope);
    }
}

/// Overlapping windows over rows `start..=end`.
fn windows(sink: &mut Sink<'_>, start: usize, end: usize, scope: &[ScopeLine], limits: &WindowLimits) {
    let lines = sink.lines;
    let max = sink.max_chars;
    let mut s = start;
    while s <= end {
        if lines.is_blank(s) {
            s += 1;
            continue;
        }
        if lines.size(s, s) > max {
            sink.cut_line(s, "section", None, scope);
            s += 1;
            continue;
        }
        let mut e = s;
        while e < end && e + 1 - s < limits.window_lines && lines.size(s, e + 1) <= max {
            e += 1;
        }
        sink.push(s, e, "section", None, scope);
        if e >= end {
            break;
        }
        let len = e - s + 1;
        let overlap = limits.window_overlap.min(len / 2);
        s = (e + 1 - overlap).max(s + 1);
    }
}

fn sections(lines: &LineIndex<'_>, lang: Language) -> Vec<Section> {
    let n = lines.len();
    let mut starts: Vec<(usize, usize)> = Vec::new(); // (row, heading level)
    match lang {
        Language::Markdown => {
            let mut fence: Option<(u8, usize)> = None;
            for row in 0..n {
                let line = lines.line(row);
                let t = line.trim_start();
                let indent = line.len() - t.len();
                if indent < 4 && (t.starts_with("```") || t.starts_with("~~~")) {
                    let ch = t.as_bytes()[0];
                    let width = t.bytes().take_while(|&b| b == ch).count();
                    match fence {
                        None => fence = Some((ch, width)),
                        Some((c, w)) if c == ch && width >= w && t[width..].trim().is_empty() => {
                            fence = None;
                        }
                        Some(_) => {}
                    }
                    continue;
                }
                if fence.is_some() || indent >= 4 {
                    continue;
                }
                let level = t.bytes().take_while(|&b| b == b'#').count();
                if (1..=6).contains(&level) && t[level..].chars().next().is_none_or(char::is_whitespace) {
                    starts.push((row, level));
                }
            }
        }
        Language::Toml => {
            for row in 0..n {
                if lines.line(row).starts_with('[') {
                    starts.push((row, 1));
                }
            }
        }
        Language::Yaml => {
            for row in 0..n {
                let line = lines.line(row);
                let first = line.chars().next();
                let key = first.is_some_and(|c| c.is_alphanumeric() || c == '"' || c == '\'') && line.contains(':');
                if key || line.starts_with("---") {
                    starts.push((row, 1));
                }
            }
        }
        _ => {}
    }
    let mut sections = Vec::with_capacity(starts.len() + 1);
    if starts.first().is_none_or(|&(row, _)| row > 0) {
        let end = starts.first().map_or(n - 1, |&(row, _)| row - 1);
        sections.push(Section {
            start: 0,
            end,
            scope: Vec::new(),
        });
    }
    let mut stack: Vec<(usize, ScopeLine)> = Vec::new(); // (level, heading)
    for (i, &(row, level)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(n - 1, |&(next, _)| next - 1);
        while stack.last().is_some_and(|(l, _)| *l >= level) {
            stack.pop();
        }
        stack.push((level, (row, heading_text(lines.line(row)))));
        sections.push(Section {
            start: row,
            end,
            scope: stack.iter().map(|(_, s)| s.clone()).collect(),
        });
    }
    sections
}

fn heading_text(line: &str) -> String {
    let t = line.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => t[..i].to_string(),
        None => t.to_string(),
    }
}
