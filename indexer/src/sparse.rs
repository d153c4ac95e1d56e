//! Code-aware BM25 sparse vectors.
//!
//! Text is split into identifier-aware terms: `parseHttpHeader` and
//! `parse_http_header` both yield `parse`, `http`, `header` (stemmed) plus the
//! whole identifier, so a natural-language query meets code. A document vector
//! holds BM25's saturated term-frequency part; the store applies the IDF part
//! (Qdrant's `idf` modifier), so the same vectors work on the embedded engine
//! and on a Qdrant server.

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};
use std::sync::OnceLock;

/// BM25 term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25 length normalisation.
pub const B: f32 = 0.75;
/// Assumed average document length in terms (chunks are size-bounded).
pub const AVG_LEN: f32 = 120.0;

/// A sparse vector: sorted unique term ids with their weights.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseVec {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "if", "in", "into", "is", "it", "its", "of", "on",
    "or", "that", "the", "this", "to", "was", "will", "with", "which", "when", "can", "should", "would",
];

fn stemmer() -> &'static Stemmer {
    static S: OnceLock<Stemmer> = OnceLock::new();
    S.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// Splits an identifier at `_`, case changes and letter/digit boundaries:
/// `HTTPServerError2` → `HTTP`, `Server`, `Error`, `2`.
fn split_identifier(word: &str) -> Vec<&str> {
    split_identifier_with(word, true)
}

/// [`split_identifier`], optionally keeping letters and digits together
/// (`u8`, `utf8`, `base64` stay whole for the embedding model).
fn split_identifier_with(word: &str, at_digits: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    for piece in word.split('_').filter(|p| !p.is_empty()) {
        let chars: Vec<(usize, char)> = piece.char_indices().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (pos, c) = chars[i];
            let prev = chars[i - 1].1;
            let next = chars.get(i + 1).map(|x| x.1);
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (at_digits && prev.is_alphabetic() != c.is_alphabetic())
                || (prev.is_uppercase() && c.is_uppercase() && next.is_some_and(|n| n.is_lowercase()));
            if boundary {
                parts.push(&piece[start..pos]);
                start = pos;
            }
        }
        parts.push(&piece[start..]);
    }
    parts
}

/// Rewrites identifiers as words for a natural-language embedding model:
/// `parseHttpHeader` and `parse_http_header` become `parse http header`;
/// everything else is kept as it is.
pub fn humanize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut word_start: Option<usize> = None;
    let flush = |out: &mut String, word: &str| {
        let parts = split_identifier_with(word, false);
        if parts.len() > 1 || word.contains('_') {
            let joined: Vec<String> = parts.iter().map(|p| p.to_lowercase()).collect();
            out.push_str(&joined.join(" "));
        } else {
            out.push_str(word);
        }
    };
    for (i, c) in text.char_indices() {
        let in_word = c.is_alphanumeric() || c == '_';
        match (in_word, word_start) {
            (true, None) => word_start = Some(i),
            (false, Some(s)) => {
                flush(&mut out, &text[s..i]);
                word_start = None;
                out.push(c);
            }
            (false, None) => out.push(c),
            (true, Some(_)) => {}
        }
    }
    if let Some(s) = word_start {
        flush(&mut out, &text[s..]);
    }
    out
}

/// The terms of `text`, in order, with repetitions.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word.is_empty() || word.len() > 64 {
            continue;
        }
        let parts = split_identifier(word);
        if parts.len() > 1 {
            let whole = word.trim_matches('_').to_lowercase();
            if whole.len() > 2 {
                out.push(whole);
            }
        }
        for p in parts {
            if p.len() < 2 || p.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            let lower = p.to_lowercase();
            if STOPWORDS.contains(&lower.as_str()) {
                continue;
            }
            out.push(stemmer().stem(&lower).into_owned());
        }
    }
    out
}

fn term_id(term: &str) -> u32 {
    let h = blake3::hash(term.as_bytes());
    let b = h.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn to_sparse(weights: HashMap<u32, f32>) -> SparseVec {
    let mut pairs: Vec<(u32, f32)> = weights.into_iter().collect();
    pairs.sort_unstable_by_key(|p| p.0);
    SparseVec {
        indices: pairs.iter().map(|p| p.0).collect(),
        values: pairs.iter().map(|p| p.1).collect(),
    }
}

/// How many extra times a symbol's terms count in its chunk's document
/// vector (a BM25F-style field boost: a name says more than a body).
pub const SYMBOL_BOOST: usize = 2;

/// Document vector: BM25 saturated term frequencies.
pub fn document_vector(text: &str) -> SparseVec {
    document_vector_with_symbol(text, None)
}

/// Document vector of a chunk whose qualified symbol's terms are boosted
/// by [`SYMBOL_BOOST`].
pub fn document_vector_with_symbol(text: &str, symbol: Option<&str>) -> SparseVec {
    let mut terms = terms(text);
    if let Some(symbol) = symbol {
        let extra = self::terms(symbol);
        for _ in 0..SYMBOL_BOOST {
            terms.extend(extra.iter().cloned());
        }
    }
    let len = terms.len() as f32;
    let mut tf: HashMap<u32, f32> = HashMap::new();
    for t in &terms {
        *tf.entry(term_id(t)).or_default() += 1.0;
    }
    let norm = K1 * (1.0 - B + B * len / AVG_LEN);
    to_sparse(tf.into_iter().map(|(k, f)| (k, f * (K1 + 1.0) / (f + norm))).collect())
}

/// A query's BM25 vector keeping at most `max_terms` distinct terms: the
/// most frequent, ties to the earliest (a pasted report's repeated names
/// outweigh its one-off words, and a 64 KiB query stays cheap).
pub fn query_vector_budget(text: &str, max_terms: usize) -> SparseVec {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, t) in terms(text).into_iter().enumerate() {
        counts.entry(t).or_insert((0, i)).0 += 1;
    }
    let mut ranked: Vec<(String, (usize, usize))> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    ranked.truncate(max_terms);
    to_sparse(ranked.iter().map(|(t, _)| (term_id(t), 1.0)).collect())
}

/// Query vector: each distinct term once (the store multiplies by IDF).
pub fn query_vector(text: &str) -> SparseVec {
    to_sparse(terms(text).iter().map(|t| (term_id(t), 1.0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_query_keeps_its_most_frequent_terms() {
        let text = format!("{} {} rare", "alpha ".repeat(5), "beta ".repeat(3));
        let budget = query_vector_budget(&text, 2);
        assert_eq!(budget.indices.len(), 2);
        let all = query_vector(&text);
        assert_eq!(all.indices.len(), 3);
        assert!(!budget.indices.contains(&term_id("rare")));
        assert_eq!(query_vector_budget(&text, 10), all);
    }

    #[test]
    fn identifiers_split_on_case_and_underscores() {
        assert_eq!(split_identifier("parseHttpHeader"), ["parse", "Http", "Header"]);
        assert_eq!(split_identifier("HTTPServerError2"), ["HTTP", "Server", "Error", "2"]);
        assert_eq!(split_identifier("prepare_cookies"), ["prepare", "cookies"]);
        assert_eq!(split_identifier("__init__"), ["init"]);
    }

    #[test]
    fn humanize_splits_identifiers_only() {
        assert_eq!(
            humanize("fn parseHttpHeader(raw_bytes: &[u8]) -> Header"),
            "fn parse http header(raw bytes: &[u8]) -> Header"
        );
        assert_eq!(humanize("__init__ x"), "init x");
        assert_eq!(humanize(""), "");
    }

    #[test]
    fn natural_language_meets_code() {
        let q: Vec<String> = terms("Prepares the given HTTP cookie data.");
        let d: Vec<String> = terms("def prepare_cookies(self, cookies):");
        for t in ["prepar", "cooki"] {
            assert!(q.contains(&t.to_string()), "{q:?}");
            assert!(d.contains(&t.to_string()), "{d:?}");
        }
        assert!(d.contains(&"prepare_cookies".to_string()));
    }

    #[test]
    fn document_vector_is_sorted_and_saturating() {
        let v = document_vector("foo foo foo foo bar");
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        let max = v.values.iter().cloned().fold(0.0, f32::max);
        assert!(max < K1 + 1.0);
        assert!(document_vector("").indices.is_empty());
    }
}
