//! Code access beside search: the indexed repositories, and line ranges of
//! files as they were indexed (the git blob at the indexed commit, or the
//! file on disk for plain directories). The MCP tools `read_code` and
//! `list_repos` call this, so any other transport gets the same answers.
//!
//! Both take the caller's [`Access`]: its read rule and clearance decide
//! which repos exist for it, exactly as in search. A file is served only
//! when the index holds it (the serving store has chunks of that path), so
//! include/exclude globs and skip rules apply, and it is redacted with the
//! indexer's secret rules and placeholders when its repo was indexed with
//! redaction; line numbers stay those of the original file.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use cairn_indexer::secrets::Scanner;
use cairn_indexer::source;
use cairn_indexer::store::SearchFilter;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::ServiceError;
use crate::search::SearchService;

/// Largest file `read` serves, in bytes.
pub const MAX_READ_BYTES: usize = 16 * 1024 * 1024;

/// One indexed repository, as callers see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepoInfo {
    pub name: String,
    /// Commit the index reflects (empty for plain directories).
    pub commit: String,
    pub files: usize,
    pub chunks: usize,
    pub last_indexed_at: String,
}

/// A request for lines of one file; lines are 1-based and inclusive.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub repo: String,
    pub path: String,
    #[serde(default)]
    pub start_line: Option<i64>,
    #[serde(default)]
    pub end_line: Option<i64>,
}

/// Lines of one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CodeSlice {
    pub repo: String,
    pub path: String,
    pub commit: String,
    pub language: String,
    pub start_line: usize,
    /// Inclusive; a requested end past the last line is clamped to it.
    pub end_line: usize,
    pub total_lines: usize,
    /// The lines, each with its line ending.
    pub content: String,
}

/// The indexer's built-in secret rules, compiled once for every read.
static SCANNER: LazyLock<Result<Arc<Scanner>, String>> =
    LazyLock::new(|| Scanner::new().map(Arc::new).map_err(|e| e.to_string()));

/// Reads indexed repositories through the registry and the serving store.
#[derive(Clone)]
pub struct CodeService {
    search: SearchService,
    /// The rules reads are redacted with (an error fails every read: closed).
    scanner: Result<Arc<Scanner>, String>,
}

impl CodeService {
    pub fn new(search: SearchService) -> Self {
        Self {
            search,
            scanner: SCANNER.clone(),
        }
    }

    /// Redacts reads with the built-in rules plus those of `rules_file`
    /// (`[secrets] rules_file`), as indexing does.
    pub fn with_rules_file(mut self, rules_file: Option<&std::path::Path>) -> Self {
        if rules_file.is_some() {
            self.scanner = Scanner::with_optional_rules_file(rules_file)
                .map(Arc::new)
                .map_err(|e| e.to_string());
        }
        self
    }

    /// The indexed repositories `access` may read, by name.
    pub fn list_repos(&self, access: &Access) -> Result<Vec<RepoInfo>, ServiceError> {
        Ok(self
            .search
            .registry()
            .load()?
            .into_values()
            .filter(|r| access.can_read(r))
            .map(|r| RepoInfo {
                name: r.name,
                commit: r.indexed_commit,
                files: r.files,
                chunks: r.chunks,
                last_indexed_at: r.last_indexed_at,
            })
            .collect())
    }

    /// Lines `start_line..=end_line` of `path` in `repo` as indexed,
    /// redacted. A repo `access` cannot read answers as search does for it
    /// (403 with authentication, else 404), and a file the index does not
    /// hold is not found.
    pub async fn read(&self, access: &Access, req: ReadRequest) -> Result<CodeSlice, ServiceError> {
        self.search.allowed_repos(access, std::slice::from_ref(&req.repo))?;
        let record = self
            .search
            .registry()
            .load()?
            .remove(&req.repo)
            .ok_or_else(|| ServiceError::not_found(format!("unknown repo {:?}", req.repo)))?;
        let start = req.start_line.unwrap_or(1);
        if start < 1 {
            return Err(ServiceError::invalid(format!(
                "start_line must be at least 1, got {start}"
            )));
        }
        if let Some(end) = req.end_line
            && end < start
        {
            return Err(ServiceError::invalid(format!(
                "end_line {end} is before start_line {start}"
            )));
        }
        source::checked_relative_path(&req.path)?;
        let not_found = || ServiceError::not_found(format!("no file {:?} in repo {:?}", req.path, req.repo));
        // only what the index holds: skipped, excluded and never-indexed files are not found
        let (_, store) = self.search.serving().get();
        let held = store
            .count(&SearchFilter {
                repos: vec![req.repo.clone()],
                paths: vec![req.path.clone()],
                ..Default::default()
            })
            .await?;
        if held == 0 {
            return Err(not_found());
        }
        let root = PathBuf::from(&record.source);
        let commit = record.indexed_commit.clone();
        let path = req.path.clone();
        let text =
            tokio::task::spawn_blocking(move || source::read_indexed_file(&root, &commit, &path, MAX_READ_BYTES))
                .await
                .map_err(|e| ServiceError::internal(format!("file reader task failed: {e}")))?
                .map_err(|e| {
                    let mut e = ServiceError::from(e);
                    if e.kind == crate::error::ServiceErrorKind::NotFound {
                        e.message = not_found().message;
                    }
                    e
                })?;
        // the indexer's rules and placeholders; the line count never changes
        let text = if record.redact_secrets {
            let scanner = self
                .scanner
                .as_ref()
                .map_err(|e| ServiceError::internal(format!("secret rules: {e}")))?;
            scanner.redact_file(&req.path, &text).text.into_owned()
        } else {
            text
        };
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let total = lines.len();
        let start = start as usize;
        if start > total.max(1) {
            return Err(ServiceError::invalid(format!(
                "start_line {start} is past the end of {} ({total} lines)",
                req.path
            )));
        }
        let end = req
            .end_line
            .map_or(total, |e| (e as usize).min(total))
            .max(start.min(total));
        let content = if total == 0 {
            String::new()
        } else {
            lines[start - 1..end].concat()
        };
        Ok(CodeSlice {
            language: cairn_indexer::chunk::Language::from_path(&req.path)
                .as_str()
                .to_string(),
            repo: req.repo,
            path: req.path,
            commit: record.indexed_commit,
            start_line: start,
            end_line: end,
            total_lines: total,
            content,
        })
    }
}

/// `content` as a fenced markdown code block tagged `info` (language, then
/// anything else), with a fence longer than any backtick run inside it.
pub fn fenced(info: &str, content: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in content.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let newline = if content.ends_with('\n') || content.is_empty() {
        ""
    } else {
        "\n"
    };
    format!("{fence}{info}\n{content}{newline}{fence}")
}

/// `repo/path#Lstart-Lend`, the label every transport gives a range of lines.
pub fn label(repo: &str, path: &str, start_line: usize, end_line: usize) -> String {
    format!("{repo}/{path}#L{start_line}-L{end_line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outgrow_backticks_in_the_content() {
        assert_eq!(fenced("rust", "fn a() {}\n"), "```rust\nfn a() {}\n```");
        assert_eq!(fenced("md", "x\n```\ny"), "````md\nx\n```\ny\n````");
        assert_eq!(fenced("", ""), "```\n```");
    }
}
