//! Search: validate a request, embed the query, run dense and BM25 retrieval
//! inside the store (filters included), fuse, and shape the hits.
//!
//! Every transport (HTTP, gRPC, CLI, eval) calls [`SearchService::search`],
//! so the same question gets the same answer everywhere.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use cairn_indexer::chunk::Language;
use cairn_indexer::embed::Embed;
use cairn_indexer::registry::Registry;
use cairn_indexer::sparse;
use cairn_indexer::store::{ScoredChunk, SearchFilter, VectorStore};
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::ServiceError;
use crate::report;

pub use cairn_config::search::{Fusion, MAX_K, RankSettings};
pub use cairn_indexer::serving::{Serving, ServingPair};

/// Results when the request does not say.
pub const DEFAULT_K: i64 = 10;
/// Longest accepted query, in bytes: a pasted bug report with its stack
/// trace fits; a longer one is refused with 413.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Characters of a long query the embedding model sees (its `max_length`
/// of 256 tokens is about this much English); see [`report::model_text`].
pub const MODEL_QUERY_CHARS: usize = 1000;
/// Distinct BM25 terms a query contributes at most (its most frequent), so
/// a 64 KiB query costs about what a paragraph does.
pub const MAX_QUERY_TERMS: usize = 256;
/// Chunks of one file a `group_by: "file"` response shows.
pub const HITS_PER_FILE: usize = 3;

/// A search request as every transport receives it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default = "default_k")]
    pub k: i64,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// `"file"`: rank files (a file's score aggregates its best chunks) and
    /// return `files`, `k` counting files. Absent: chunks in `results`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
}

/// What a search ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    File,
}

impl GroupBy {
    /// A `group_by` given as text (gRPC, MCP): empty is none, `"file"` is
    /// [`GroupBy::File`], anything else is a 400.
    pub fn parse(s: &str) -> Result<Option<Self>, ServiceError> {
        match s {
            "" => Ok(None),
            "file" => Ok(Some(Self::File)),
            other => Err(ServiceError::invalid(format!(
                "group_by must be \"file\" or empty, got {other:?}"
            ))),
        }
    }
}

fn default_k() -> i64 {
    DEFAULT_K
}

/// One result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchHit {
    pub repo: String,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub language: String,
    pub kind: String,
    pub symbol: Option<String>,
    pub score: f32,
    pub content: String,
    pub commit: String,
    /// The chunk's point id (audit records name it; not part of the API).
    #[serde(skip)]
    pub id: String,
}

/// The answer to a [`SearchRequest`]: `results` (chunks), or with
/// `group_by: "file"` `files` instead.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct SearchResponse {
    #[serde(default)]
    pub results: Vec<SearchHit>,
    #[serde(default)]
    pub files: Option<Vec<FileHit>>,
    pub took_ms: f64,
}

impl Serialize for SearchResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("SearchResponse", 2)?;
        match &self.files {
            Some(files) => m.serialize_field("files", files)?,
            None => m.serialize_field("results", &self.results)?,
        }
        m.serialize_field("took_ms", &self.took_ms)?;
        m.end()
    }
}

impl SearchResponse {
    /// Every chunk the response returns, whichever its shape (audit records
    /// name them all).
    pub fn hits(&self) -> impl Iterator<Item = &SearchHit> {
        self.results
            .iter()
            .chain(self.files.iter().flatten().flat_map(|f| f.hits.iter()))
    }
}

/// One file of a `group_by: "file"` response, with its best chunks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileHit {
    pub repo: String,
    pub path: String,
    pub score: f32,
    pub hits: Vec<SearchHit>,
}

/// Answers searches over the serving store with its embedder.
#[derive(Clone)]
pub struct SearchService {
    serving: Serving,
    registry: Registry,
    rank: RankSettings,
}

impl SearchService {
    pub fn new(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>, registry: Registry, rank: RankSettings) -> Self {
        Self::with_serving(Serving::new(embedder, store), registry, rank)
    }

    /// A service over a shared [`Serving`] pair.
    pub fn with_serving(serving: Serving, registry: Registry, rank: RankSettings) -> Self {
        Self {
            serving,
            registry,
            rank,
        }
    }

    /// The embedder and store searches use.
    pub fn serving(&self) -> &Serving {
        &self.serving
    }

    /// The registry of indexed repositories this service answers from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Validates and runs one search.
    /// The repos it reads are those of `access`, and this list goes into
    /// the store query itself.
    pub async fn search(&self, access: &Access, request: SearchRequest) -> Result<SearchResponse, ServiceError> {
        let started = Instant::now();
        let group_by = request.group_by;
        let (query, k, filter) = self.validate(access, request)?;
        if access.filters() && filter.repos.is_empty() {
            // nothing readable: no store query at all
            return Ok(SearchResponse {
                results: Vec::new(),
                files: group_by.map(|_| Vec::new()),
                took_ms: started.elapsed().as_secs_f64() * 1000.0,
            });
        }
        let (embedder, store) = self.serving.get();
        let plan = QueryPlan::new(&query);
        // Documents are embedded with identifiers as words; queries too.
        let q = sparse::humanize(&plan.model_text);
        let dense_vec = tokio::task::spawn_blocking(move || embedder.embed_query(&q))
            .await
            .map_err(|e| ServiceError::internal(format!("query embedding task failed: {e}")))??;
        let sparse_vec = sparse::query_vector_budget(&query, MAX_QUERY_TERMS);
        let n = self.rank.candidates.max(k);
        let (dense, bm25) = tokio::try_join!(
            store.search_dense(dense_vec, &filter, n),
            store.search_sparse(sparse_vec, &filter, n)
        )?;
        let mut fused = fuse(&self.rank, dense, bm25, usize::MAX);
        plan.adjust(&self.rank, &mut fused);
        let hits = fused.into_iter().map(|(score, c)| SearchHit {
            repo: c.payload.repo,
            path: c.payload.path,
            start_line: c.payload.start_line,
            end_line: c.payload.end_line,
            language: c.payload.language,
            kind: c.payload.kind,
            symbol: c.payload.symbol,
            score,
            content: c.payload.content,
            commit: c.payload.commit,
            id: c.id,
        });
        let took = |started: Instant| started.elapsed().as_secs_f64() * 1000.0;
        Ok(match group_by {
            None => SearchResponse {
                results: hits.take(k).collect(),
                files: None,
                took_ms: took(started),
            },
            Some(GroupBy::File) => SearchResponse {
                results: Vec::new(),
                files: Some(group_files(hits, k, self.rank.file_decay)),
                took_ms: took(started),
            },
        })
    }

    /// The first chunk of `repos` that `text` quotes, as
    /// `repo/path#Lstart-Lend`: a keyword search for the text's terms inside
    /// those repos, then a line check on the best hits. A chunk counts as
    /// quoted when the text holds (trimmed) at least two of its substantial
    /// lines, or its only one. Labels like cairn's own citations count too.
    pub async fn quoted_in(&self, text: &str, repos: &[String]) -> Result<Option<(String, String)>, ServiceError> {
        if repos.is_empty() || text.trim().is_empty() {
            return Ok(None);
        }
        for repo in repos {
            // a citation label of that repo (`repo/path#L…`)
            let marker = format!("{repo}/");
            if text.match_indices(&marker).any(|(i, _)| {
                let before_ok = i == 0 || !text[..i].ends_with(|c: char| c.is_alphanumeric() || "._-/".contains(c));
                let rest = &text[i + marker.len()..];
                let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                before_ok && rest[..token_end].contains("#L")
            }) {
                return Ok(Some((repo.clone(), format!("a citation of {repo}"))));
            }
        }
        let lines: HashSet<&str> = text.lines().map(str::trim).filter(|l| substantial(l)).collect();
        if lines.is_empty() {
            return Ok(None);
        }
        let (_, store) = self.serving.get();
        let filter = SearchFilter {
            repos: repos.to_vec(),
            ..Default::default()
        };
        let hits = store
            .search_sparse(sparse::query_vector(text), &filter, QUOTE_CANDIDATES)
            .await?;
        for hit in hits {
            let own: Vec<&str> = hit
                .payload
                .content
                .lines()
                .map(str::trim)
                .filter(|l| substantial(l))
                .collect();
            let quoted = own.iter().filter(|l| lines.contains(*l)).count();
            if quoted > 0 && quoted >= own.len().min(2) {
                let p = &hit.payload;
                return Ok(Some((
                    p.repo.clone(),
                    format!("{}/{}#L{}-L{}", p.repo, p.path, p.start_line, p.end_line),
                )));
            }
        }
        Ok(None)
    }

    /// The repos `access` may search for `requested` (all readable ones
    /// when none are named). With authentication on, a repo that cannot be
    /// read and one that does not exist get the same 403, so existence is
    /// not revealed; without it an unknown repo is a 404.
    pub fn allowed_repos(&self, access: &Access, requested: &[String]) -> Result<Vec<String>, ServiceError> {
        let known = self.registry.load()?;
        if access.filters() {
            if let Some(denied) = requested
                .iter()
                .find(|name| !known.get(name.as_str()).is_some_and(|r| access.can_read(r)))
            {
                return Err(ServiceError::forbidden(format!(
                    "repo {denied:?} does not exist or is not readable with these credentials"
                )));
            }
            return Ok(if requested.is_empty() {
                access.readable(&known)
            } else {
                requested.to_vec()
            });
        }
        if let Some(missing) = requested.iter().find(|name| !known.contains_key(name.as_str())) {
            return Err(ServiceError::not_found(format!("unknown repo {missing:?}")));
        }
        Ok(requested.to_vec())
    }

    /// The repos a request searched, for audit records: [`Self::allowed_repos`],
    /// or every indexed repo when none was named and access is open. Empty
    /// when the request was refused.
    pub fn repos_in_scope(&self, access: &Access, requested: &[String]) -> Vec<String> {
        match self.allowed_repos(access, requested) {
            Ok(repos) if repos.is_empty() && !access.filters() => self
                .registry
                .load()
                .map(|m| m.into_keys().collect())
                .unwrap_or_default(),
            Ok(repos) => repos,
            Err(_) => Vec::new(),
        }
    }

    fn validate(&self, access: &Access, r: SearchRequest) -> Result<(String, usize, SearchFilter), ServiceError> {
        let query = r.query.trim().to_string();
        if query.is_empty() {
            return Err(ServiceError::invalid("query must not be empty"));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(ServiceError::too_large(format!(
                "query is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        if !(1..=MAX_K).contains(&r.k) {
            return Err(ServiceError::invalid(format!(
                "k must be between 1 and {MAX_K}, got {}",
                r.k
            )));
        }
        let mut languages = Vec::new();
        for l in &r.languages {
            match Language::parse_name(l) {
                Some(lang) => languages.push(lang.as_str().to_string()),
                None => return Err(ServiceError::invalid(format!("unknown language {l:?}"))),
            }
        }
        let repos = self.allowed_repos(access, &r.repos)?;
        let filter = SearchFilter {
            repos,
            languages,
            path_prefix: r.path_prefix.filter(|p| !p.is_empty()),
            paths: Vec::new(),
        };
        Ok((query, r.k as usize, filter))
    }
}

/// Best keyword hits whose lines [`SearchService::quoted_in`] compares.
const QUOTE_CANDIDATES: usize = 10;

/// A line worth comparing: 16 or more non-blank characters, not only punctuation.
fn substantial(line: &str) -> bool {
    line.chars().filter(|c| !c.is_whitespace()).count() >= 16 && line.chars().any(char::is_alphanumeric)
}

/// Normalised scores of one list for score-based fusion.
fn normalised(fusion: Fusion, list: &[ScoredChunk]) -> Vec<f32> {
    let scores: Vec<f32> = list.iter().map(|h| h.score).collect();
    if scores.is_empty() {
        return scores;
    }
    let (lo, hi) = match fusion {
        Fusion::Dbsf => {
            let n = scores.len() as f32;
            let mean = scores.iter().sum::<f32>() / n;
            let sd = (scores.iter().map(|s| (s - mean).powi(2)).sum::<f32>() / n).sqrt();
            (mean - 3.0 * sd, mean + 3.0 * sd)
        }
        _ => (
            scores.iter().cloned().fold(f32::INFINITY, f32::min),
            scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        ),
    };
    let span = hi - lo;
    scores
        .iter()
        .map(|s| {
            if span > 0.0 {
                ((s - lo) / span).clamp(0.0, 1.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// Fuses the dense and BM25 lists (see [`Fusion`]) and keeps the best `k`.
pub fn fuse(rank: &RankSettings, dense: Vec<ScoredChunk>, bm25: Vec<ScoredChunk>, k: usize) -> Vec<(f32, ScoredChunk)> {
    let mut fused: HashMap<String, (f32, ScoredChunk)> = HashMap::new();
    for (weight, list) in [(rank.dense_weight, dense), (rank.sparse_weight, bm25)] {
        let norm = normalised(rank.fusion, &list);
        for (i, hit) in list.into_iter().enumerate() {
            let s = match rank.fusion {
                Fusion::Rrf => weight / (rank.rrf_k + i as f32 + 1.0),
                Fusion::Relative | Fusion::Dbsf => weight * norm[i],
            };
            fused.entry(hit.id.clone()).and_modify(|e| e.0 += s).or_insert((s, hit));
        }
    }
    let mut out: Vec<(f32, ScoredChunk)> = fused
        .into_values()
        .map(|(s, h)| {
            (
                if h.payload.kind == "items" {
                    s * rank.items_weight
                } else {
                    s
                },
                h,
            )
        })
        .collect();
    sort_hits(&mut out);
    out.truncate(k);
    out
}

/// What the retrievers make of one query: the part the model embeds, and
/// the signals a bug report carries (paths and functions named in stack
/// traces, identifiers), used as hints after fusion.
struct QueryPlan {
    model_text: String,
    report_like: bool,
    /// The query names a test or a doc file: the support prior stays off.
    names_support: bool,
    paths: Vec<String>,
    symbols: HashSet<String>,
}

impl QueryPlan {
    fn new(query: &str) -> Self {
        // one pass over the query; the report helpers reuse its signals
        let signals = report::extract(query);
        let report_like = report::looks_like_report_with(query, &signals);
        let model_text = report::model_text_with(query, &signals, MODEL_QUERY_CHARS);
        let mut paths: Vec<String> = signals.frames.iter().filter_map(|f| f.path.clone()).collect();
        paths.extend(signals.paths.iter().cloned());
        paths.sort();
        paths.dedup();
        let symbols: HashSet<String> = signals
            .frames
            .iter()
            .filter_map(|f| f.short_function().map(str::to_string))
            .chain(signals.identifiers.iter().map(|i| last_segment(i).to_string()))
            .filter(|s| s.len() >= 3)
            .collect();
        let names_support = paths.iter().any(|p| is_support(p))
            || signals
                .identifiers
                .iter()
                .any(|i| last_segment(i).starts_with("test_") || last_segment(i).starts_with("Test"));
        Self {
            model_text,
            report_like,
            names_support,
            paths,
            symbols,
        }
    }

    /// Applies the hints and the support prior to fused scores, then sorts.
    fn adjust(&self, rank: &RankSettings, fused: &mut [(f32, ScoredChunk)]) {
        for (score, c) in fused.iter_mut() {
            let p = &c.payload;
            if self.report_like && !self.names_support && is_support(&p.path) {
                *score *= rank.support_weight;
            }
            if self.paths.iter().any(|named| report::path_matches(named, &p.path)) {
                *score *= rank.named_path_boost;
            }
            if p.symbol
                .as_deref()
                .is_some_and(|s| self.symbols.contains(last_segment(s)))
            {
                *score *= rank.named_symbol_boost;
            }
        }
        sort_hits(fused);
    }
}

/// The last part of a dotted or `::` path: `Foo.bar` → `bar`.
fn last_segment(s: &str) -> &str {
    s.rsplit(['.', ':']).next().unwrap_or(s)
}

/// Tests, docs, changelogs, examples and generated files: where a bug
/// report's words are often quoted but its fix rarely goes.
pub fn is_support(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    let dirs = lower.split('/').rev().skip(1);
    let support_dir = |d: &str| {
        matches!(
            d,
            "test"
                | "tests"
                | "testing"
                | "__tests__"
                | "spec"
                | "doc"
                | "docs"
                | "example"
                | "examples"
                | "benchmarks"
        )
    };
    dirs.clone().any(support_dir)
        || file.starts_with("test_")
        || file.starts_with("conftest")
        || file.ends_with("_test.go")
        || file.ends_with("_test.py")
        || file.ends_with("_tests.rs")
        || file.contains(".test.")
        || file.contains(".spec.")
        || (file.ends_with("test.java") || file.ends_with("tests.cs"))
        || ["changelog", "changes", "history", "news", "readme", "whats_new"]
            .iter()
            .any(|n| file.starts_with(n))
        || [".md", ".rst", ".txt", ".adoc"].iter().any(|e| file.ends_with(e))
        || file.ends_with("_pb2.py")
        || file.ends_with(".pb.go")
        || file.ends_with(".min.js")
        || lower
            .split('/')
            .any(|d| matches!(d, "vendor" | "node_modules" | "generated"))
}

/// Best first; ties by path, then line, so equal scores rank the same way
/// every time.
fn sort_hits(hits: &mut [(f32, ScoredChunk)]) {
    hits.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.payload.path.cmp(&b.1.payload.path))
            .then_with(|| a.1.payload.start_line.cmp(&b.1.payload.start_line))
    });
}

/// Files in rank order, `k` of them: a file scores its best chunk plus a
/// decayed share of its next ones (`decay`, `[search] file_decay`), so a
/// file with several matching places beats one lucky chunk by a little,
/// never by its size.
fn group_files(hits: impl Iterator<Item = SearchHit>, k: usize, decay: f32) -> Vec<FileHit> {
    let mut files: Vec<FileHit> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for h in hits {
        let key = (h.repo.clone(), h.path.clone());
        let i = *index.entry(key).or_insert_with(|| {
            files.push(FileHit {
                repo: h.repo.clone(),
                path: h.path.clone(),
                score: 0.0,
                hits: Vec::new(),
            });
            files.len() - 1
        });
        let f = &mut files[i];
        if f.hits.len() < HITS_PER_FILE {
            f.score += h.score * decay.powi(f.hits.len() as i32);
            f.hits.push(h);
        }
    }
    files.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.path.cmp(&b.path)));
    files.truncate(k);
    files
}

impl From<&SearchHit> for crate::audit::AuditResult {
    /// A search hit, named by its point id.
    fn from(h: &SearchHit) -> Self {
        Self {
            id: h.id.clone(),
            repo: h.repo.clone(),
            path: h.path.clone(),
            commit: h.commit.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_indexer::store::ChunkPayload;

    #[test]
    fn tests_docs_and_generated_files_are_support_and_source_is_not() {
        for p in [
            "sklearn/tests/test_base.py",
            "lib/matplotlib/tests/test_axes.py",
            "pkg/server/handler_test.go",
            "web/src/app.spec.ts",
            "docs/guide.md",
            "CHANGELOG.md",
            "README.rst",
            "examples/plot.py",
            "api/v1/service_pb2.py",
            "vendor/lib/x.go",
            "src/test/java/FooTest.java",
        ] {
            assert!(is_support(p), "{p}");
        }
        for p in [
            "sklearn/linear_model/ridge.py",
            "lib/matplotlib/axes/_base.py",
            "src/main.rs",
            "testkit.go",
        ] {
            assert!(!is_support(p), "{p}");
        }
    }

    fn search_hit(path: &str, score: f32) -> SearchHit {
        SearchHit {
            repo: "r".into(),
            path: path.into(),
            start_line: 1,
            end_line: 2,
            language: "python".into(),
            kind: "function".into(),
            symbol: None,
            score,
            content: String::new(),
            commit: String::new(),
            id: format!("{path}-{score}"),
        }
    }

    #[test]
    fn files_score_their_best_chunk_plus_a_decayed_share_of_the_next() {
        let hits = [
            ("a.py", 1.0),
            ("b.py", 0.9),
            ("b.py", 0.8),
            ("c.py", 0.5),
            ("b.py", 0.1),
            ("b.py", 0.05),
        ]
        .into_iter()
        .map(|(p, s)| search_hit(p, s));
        let files = group_files(hits, 2, 0.5);
        assert_eq!(files.len(), 2, "k counts files");
        assert_eq!((files[0].path.as_str(), files[1].path.as_str()), ("b.py", "a.py"));
        assert!(
            (files[0].score - (0.9 + 0.4 + 0.025)).abs() < 1e-6,
            "{}",
            files[0].score
        );
        assert_eq!(files[0].hits.len(), HITS_PER_FILE);
        assert!(files[0].hits.iter().all(|h| h.path == "b.py"));
    }

    #[test]
    fn a_report_names_paths_and_functions_and_the_prior_spares_one_naming_a_test() {
        let report = "ValueError in fit\n\nTraceback (most recent call last):\n  File \"/home/u/sklearn/linear_model/ridge.py\", line 12, in fit\n    raise ValueError\nValueError: bad alpha\n";
        let plan = QueryPlan::new(report);
        assert!(plan.report_like && !plan.names_support);
        assert!(plan.symbols.contains("fit"), "{:?}", plan.symbols);
        assert!(
            plan.paths
                .iter()
                .any(|p| report::path_matches(p, "sklearn/linear_model/ridge.py"))
        );
        let with_test = format!("{report}\nSee sklearn/linear_model/tests/test_ridge.py\n");
        assert!(QueryPlan::new(&with_test).names_support);
        assert!(!QueryPlan::new("where are migrations squashed").report_like);
    }

    #[test]
    fn the_whole_query_is_searched_up_to_64_kib_and_no_further() {
        assert_eq!(MAX_QUERY_BYTES, 64 * 1024);
        let report = "x".repeat(MAX_QUERY_BYTES);
        assert!(QueryPlan::new(&report).model_text.chars().count() <= MODEL_QUERY_CHARS);
    }

    fn hit(id: &str) -> ScoredChunk {
        ScoredChunk {
            id: id.into(),
            score: 0.0,
            payload: ChunkPayload {
                repo: "r".into(),
                path: format!("{id}.rs"),
                language: "rust".into(),
                kind: "function".into(),
                symbol: None,
                start_line: 1,
                end_line: 2,
                commit: String::new(),
                blob: String::new(),
                content: String::new(),
            },
        }
    }

    #[test]
    fn fusion_rewards_agreement() {
        let r = RankSettings::default();
        let out = fuse(&r, vec![hit("a"), hit("b"), hit("c")], vec![hit("c"), hit("d")], 10);
        let ids: Vec<_> = out.iter().map(|(_, h)| h.id.as_str()).collect();
        assert_eq!(ids[0], "c");
        assert_eq!(ids.len(), 4);
        assert!(out.windows(2).all(|w| w[0].0 >= w[1].0));
    }

    #[test]
    fn score_fusions_normalise_each_list() {
        let scored = |id: &str, score: f32| ScoredChunk { score, ..hit(id) };
        for fusion in [Fusion::Relative, Fusion::Dbsf] {
            let r = RankSettings {
                fusion,
                ..Default::default()
            };
            // Cosine scores near 1 and BM25 scores near 12 weigh the same after normalisation.
            let out = fuse(
                &r,
                vec![scored("b", 0.9), scored("a", 0.8), scored("x", 0.1)],
                vec![scored("c", 12.0), scored("b", 11.0), scored("y", 1.0)],
                10,
            );
            assert!(out.iter().all(|(s, _)| (0.0..=2.0).contains(s)), "{fusion:?}");
            assert_eq!(out[0].1.id, "b", "{fusion:?}: near the top of both lists");
            assert_eq!(out.len(), 5);
        }
    }

    #[test]
    fn items_weight_demotes_runs_of_declarations() {
        let items = |id: &str| {
            let mut h = hit(id);
            h.payload.kind = "items".into();
            h
        };
        let r = RankSettings::default();
        // equal evidence: the function wins over the run of imports
        let out = fuse(&r, vec![items("a"), hit("b")], vec![hit("b"), items("a")], 10);
        assert_eq!(out[0].1.id, "b");
        let neutral = RankSettings { items_weight: 1.0, ..r };
        let out = fuse(&neutral, vec![items("a"), hit("b")], vec![items("a"), hit("b")], 10);
        assert_eq!(out[0].1.id, "a");
    }

    #[test]
    fn fusion_truncates_to_k() {
        let out = fuse(&RankSettings::default(), vec![hit("a"), hit("b")], vec![hit("c")], 2);
        assert_eq!(out.len(), 2);
    }
}
