//! Line offsets of a file, computed once per file.

/// Byte and char offsets of every line of a text.
///
/// A line is the text between two `\n`; its *content* excludes the `\n` and a
/// `\r` right before it. A final `\n` does not start a new (empty) line.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    starts: Vec<usize>,
    /// Byte offset where each line's content ends.
    ends: Vec<usize>,
    /// Char offset where each line starts (same as `starts` for ASCII text).
    cstarts: Vec<usize>,
    /// Char offset where each line's content ends.
    cends: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let estimate = bytes.len() / 32 + 1;
        let mut starts = Vec::with_capacity(estimate);
        let mut ends = Vec::with_capacity(estimate);
        let ascii = text.is_ascii();
        let mut cstarts = Vec::with_capacity(if ascii { 0 } else { estimate });
        let mut cends = Vec::with_capacity(if ascii { 0 } else { estimate });
        let mut line_start = 0usize;
        let mut chars = 0usize;
        let mut line_cstart = 0usize;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                let has_cr = i > line_start && bytes[i - 1] == b'\r';
                starts.push(line_start);
                ends.push(if has_cr { i - 1 } else { i });
                if !ascii {
                    cstarts.push(line_cstart);
                    cends.push(if has_cr { chars - 1 } else { chars });
                }
                chars += 1;
                line_start = i + 1;
                line_cstart = chars;
            } else if !ascii && (b & 0xC0) != 0x80 {
                chars += 1;
            }
        }
        if line_start < bytes.len() {
            starts.push(line_start);
            ends.push(bytes.len());
            if !ascii {
                cstarts.push(line_cstart);
                cends.push(chars);
            }
        }
        if ascii {
            cstarts.clone_from(&starts);
            cends.clone_from(&ends);
        }
        LineIndex {
            text,
            starts,
            ends,
            cstarts,
            cends,
        }
    }

    /// Number of lines.
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Size in chars of the content of lines `s..=e` (newlines between them included).
    pub(crate) fn size(&self, s: usize, e: usize) -> usize {
        self.cends[e].saturating_sub(self.cstarts[s])
    }

    /// Byte range of the content of lines `s..=e`.
    pub(crate) fn byte_range(&self, s: usize, e: usize) -> (usize, usize) {
        (self.starts[s], self.ends[e].max(self.starts[s]))
    }

    /// The content of line `row`.
    pub(crate) fn line(&self, row: usize) -> &'a str {
        &self.text[self.starts[row]..self.ends[row]]
    }

    /// Whether line `row` has only whitespace.
    pub(crate) fn is_blank(&self, row: usize) -> bool {
        self.line(row).trim().is_empty()
    }

    /// The content of lines `s..=e`.
    pub(crate) fn slice(&self, s: usize, e: usize) -> &'a str {
        let (a, b) = self.byte_range(s, e);
        &self.text[a..b]
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn offsets_and_sizes() {
        let idx = LineIndex::new("ab\r\ncd\n\nxyz");
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.line(0), "ab");
        assert_eq!(idx.line(1), "cd");
        assert!(idx.is_blank(2));
        assert_eq!(idx.line(3), "xyz");
        assert_eq!(idx.slice(0, 1), "ab\r\ncd");
        assert_eq!(idx.size(0, 1), 6);
        assert_eq!(idx.size(3, 3), 3);
    }

    #[test]
    fn non_ascii_sizes_count_chars() {
        let idx = LineIndex::new("héllo\nwörld ✓\n");
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.size(0, 0), 5);
        assert_eq!(idx.size(1, 1), 7);
        assert_eq!(idx.size(0, 1), 13);
        assert_eq!(idx.slice(1, 1), "wörld ✓");
    }

    #[test]
    fn empty_and_trailing_newline() {
        assert_eq!(LineIndex::new("").len(), 0);
        assert_eq!(LineIndex::new("\n").len(), 1);
        assert_eq!(LineIndex::new("a\n").len(), 1);
        assert_eq!(LineIndex::new("a\nb").len(), 2);
    }
}
