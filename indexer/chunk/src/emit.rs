//! Raw chunk ranges, line packing, and the final conversion into [`Chunk`]s.

use crate::lines::LineIndex;
use crate::{Chunk, Language};

/// One line of enclosing scope for `embed_text`: the row where the
/// container's signature starts, and the signature text.
pub(crate) type ScopeLine = (usize, String);

/// A chunk before its text is materialised: a range of rows (0-based, inclusive).
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub start: usize,
    pub end: usize,
    pub kind: &'static str,
    pub symbol: Option<String>,
    pub scope: Vec<ScopeLine>,
    /// A piece of one over-long line: byte range within the text.
    pub cut: Option<(usize, usize)>,
    /// Only header/closing-bracket lines: may be folded into a neighbour.
    pub glue: bool,
}

/// Collects raw chunks in file order.
pub(crate) struct Sink<'a> {
    pub lines: &'a LineIndex<'a>,
    pub max_chars: usize,
    pub out: Vec<Raw>,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(lines: &'a LineIndex<'a>, max_chars: usize) -> Self {
        Sink {
            lines,
            max_chars: max_chars.max(1),
            out: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        start: usize,
        end: usize,
        kind: &'static str,
        symbol: Option<String>,
        scope: &[ScopeLine],
    ) {
        self.out.push(Raw {
            start,
            end,
            kind,
            symbol,
            scope: scope.to_vec(),
            cut: None,
            glue: false,
        });
    }

    /// Packs rows `start..=end` greedily into chunks of at most `max_chars`;
    /// a single line longer than that is cut into pieces.
    pub(crate) fn pack_lines(
        &mut self,
        start: usize,
        end: usize,
        kind: &'static str,
        symbol: Option<&str>,
        scope: &[ScopeLine],
    ) {
        let lines = self.lines;
        let mut s = start;
        while s <= end {
            if lines.is_blank(s) {
                s += 1;
                continue;
            }
            if lines.size(s, s) > self.max_chars {
                self.cut_line(s, kind, symbol, scope);
                s += 1;
                continue;
            }
            let mut e = s;
            while e < end && lines.size(s, e + 1) <= self.max_chars {
                e += 1;
            }
            self.push(s, e, kind, symbol.map(str::to_string), scope);
            s = e + 1;
        }
    }

    /// Cuts one over-long line into pieces of at most `max_chars` chars.
    pub(crate) fn cut_line(&mut self, row: usize, kind: &'static str, symbol: Option<&str>, scope: &[ScopeLine]) {
        let line = self.lines.line(row);
        let (base, _) = self.lines.byte_range(row, row);
        let mut piece_start = 0usize;
        let mut count = 0usize;
        let emit = |sink: &mut Self, a: usize, b: usize| {
            if !line[a..b].trim().is_empty() {
                sink.out.push(Raw {
                    start: row,
                    end: row,
                    kind,
                    symbol: symbol.map(str::to_string),
                    scope: scope.to_vec(),
                    cut: Some((base + a, base + b)),
                    glue: false,
                });
            }
        };
        for (i, _) in line.char_indices() {
            if count == self.max_chars {
                emit(self, piece_start, i);
                piece_start = i;
                count = 0;
            }
            count += 1;
        }
        if piece_start < line.len() {
            emit(self, piece_start, line.len());
        }
    }

    /// Folds glue-only chunks produced since `from` (a bare `impl Foo {`
    /// header, a lone closing `}`) into a neighbouring chunk when the result
    /// still fits `max_chars`: the first chunk of a level goes forward, others
    /// backward, else the other way. A glue chunk that fits nowhere keeps its
    /// flag so that an enclosing level can try again.
    pub(crate) fn fold_glue(&mut self, from: usize) {
        if !self.out[from..].iter().any(|r| r.glue) {
            return;
        }
        let lines = self.lines;
        let max = self.max_chars;
        let fits = |a: &Raw, b: &Raw| a.cut.is_none() && b.cut.is_none() && lines.size(a.start, b.end) <= max;
        let tail: Vec<Raw> = self.out.drain(from..).collect();
        let mut result: Vec<Raw> = Vec::with_capacity(tail.len());
        let mut carry: Option<usize> = None; // start row folded into the next chunk
        let mut iter = tail.into_iter().peekable();
        while let Some(mut raw) = iter.next() {
            if let Some(start) = carry.take() {
                raw.start = start;
            }
            if raw.glue && raw.cut.is_none() {
                let can_prev = result.last().is_some_and(|p| fits(p, &raw));
                let can_next = iter.peek().is_some_and(|n| fits(&raw, n));
                if can_next && (result.is_empty() || !can_prev) {
                    carry = Some(raw.start);
                    continue;
                }
                if can_prev && let Some(prev) = result.last_mut() {
                    prev.end = raw.end;
                    continue;
                }
            }
            result.push(raw);
        }
        self.out.extend(result);
    }
}

/// Turns raw ranges into [`Chunk`]s: trims blank lines at both ends, drops
/// blank chunks, and builds `content` and `embed_text`.
pub(crate) fn finish(raws: Vec<Raw>, lines: &LineIndex<'_>, text: &str, path: &str, language: Language) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(raws.len());
    let n = lines.len();
    for raw in raws {
        let (start, end, content) = match raw.cut {
            Some((a, b)) => (raw.start, raw.end, &text[a..b]),
            None => {
                if n == 0 {
                    continue;
                }
                let mut s = raw.start.min(n - 1);
                let mut e = raw.end.min(n - 1);
                while s < e && lines.is_blank(s) {
                    s += 1;
                }
                while e > s && lines.is_blank(e) {
                    e -= 1;
                }
                if s > e || lines.is_blank(s) {
                    continue;
                }
                (s, e, lines.slice(s, e))
            }
        };
        let scope: Vec<&str> = raw
            .scope
            .iter()
            .filter(|(row, _)| *row < start)
            .map(|(_, line)| line.as_str())
            .collect();
        let mut embed_text =
            String::with_capacity(path.len() + 1 + scope.iter().map(|l| l.len() + 1).sum::<usize>() + content.len());
        embed_text.push_str(path);
        embed_text.push('\n');
        for line in scope {
            embed_text.push_str(line);
            embed_text.push('\n');
        }
        embed_text.push_str(content);
        chunks.push(Chunk {
            language,
            kind: raw.kind.to_string(),
            symbol: raw.symbol,
            start_line: to_u32(start + 1),
            end_line: to_u32(end + 1),
            content: content.to_string(),
            embed_text,
        });
    }
    chunks
}

fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
