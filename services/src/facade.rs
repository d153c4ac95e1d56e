//! The one operation facade. Every operation that returns code or facts
//! about repos is one [`AppState`] method taking a [`Caller`]: its access
//! (principal, groups, clearance) and the surface it came through.
//!
//! Each method puts the caller's readable repos, clearance included, inside
//! the store query (through [`crate::search::SearchService`] and
//! [`crate::code::CodeService`], which take the caller's access), returns
//! code redacted as indexed, and writes exactly one audit record, on success
//! and on failure alike. Transports only decode, call one of these and
//! encode; a request that never reaches one (a 401, a body that does not
//! parse) is recorded by [`crate::gate`].
//!
//! | operation | surfaces |
//! |---|---|
//! | [`AppState::search`] | HTTP `/v1/search`, Continue, gRPC `Search`, MCP `search_code`, `cairn search` |
//! | [`AppState::context`] | HTTP `/v1/context` |
//! | [`AppState::answer`] | HTTP `/v1/answer`, gRPC `Answer` |
//! | [`AppState::chat`] | HTTP `/v1/chat/completions` (the OpenAI gateway) |
//! | [`AppState::read_code`], [`AppState::code_repos`] | MCP `read_code`, `list_repos` |
//! | [`AppState::repos`], [`AppState::repo`], [`AppState::reindex`], [`AppState::remove`], [`AppState::watch`] | HTTP `/v1/repos…`, gRPC `Indexer` |
//! | [`AppState::refuse`] | a call refused before its operation (malformed MCP arguments) |

use std::time::Instant;

use crate::answer::{AnswerRequest, AnswerStream, ChatDeltas, ChatRequest};
use crate::audit::{AuditEvent, AuditResult};
use crate::auth::Access;
use crate::code::{CodeSlice, ReadRequest, RepoInfo, label};
use crate::context::{Context, ContextRequest};
use crate::daemon::{IndexStatus, RepoStatus};
use crate::error::ServiceError;
use crate::search::{SearchRequest, SearchResponse};
use crate::state::AppState;

/// Who asks, and through which surface (the audit record's `surface`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub access: Access,
    pub surface: &'static str,
}

impl Caller {
    pub fn new(access: Access, surface: &'static str) -> Self {
        Self { access, surface }
    }

    /// The local CLI (`cairn search`, `cairn eval`): it reads the data dir
    /// directly, so file permissions are its access control.
    pub fn local(surface: &'static str) -> Self {
        Self::new(Access::open(), surface)
    }
}

impl AppState {
    /// Queues the operation's record. An `Err` (503: the audit queue is
    /// full or its writer failed) replaces the operation's result: nothing
    /// is served unrecorded.
    fn record(
        &self,
        caller: &Caller,
        query: Option<String>,
        repos: Vec<String>,
        results: Vec<AuditResult>,
        error: Option<&ServiceError>,
        started: Instant,
    ) -> Result<(), ServiceError> {
        let event = AuditEvent::finished(caller.surface, &caller.access, query, repos, results, error, started);
        Ok(self.audit.record(event)?)
    }

    /// [`AppState::record`] for an operation that returns code: with
    /// `[audit] fsync = "every_record"` it returns once the record is synced.
    async fn record_synced(
        &self,
        caller: &Caller,
        query: Option<String>,
        repos: Vec<String>,
        results: Vec<AuditResult>,
        error: Option<&ServiceError>,
        started: Instant,
    ) -> Result<(), ServiceError> {
        let event = AuditEvent::finished(caller.surface, &caller.access, query, repos, results, error, started);
        Ok(self.audit.record_synced(event).await?)
    }

    /// Records an operation on one named repo and hands its result back.
    fn recorded_for_repo<T>(
        &self,
        caller: &Caller,
        name: &str,
        result: Result<T, ServiceError>,
        started: Instant,
    ) -> Result<T, ServiceError> {
        self.record(
            caller,
            None,
            vec![name.to_string()],
            Vec::new(),
            result.as_ref().err(),
            started,
        )?;
        result
    }

    /// One search: what was asked, which repos it could read, which chunks
    /// (and commits) went back, and how it ended.
    pub async fn search(&self, caller: &Caller, request: SearchRequest) -> Result<SearchResponse, ServiceError> {
        let started = Instant::now();
        let result = self.search.search(&caller.access, request.clone()).await;
        let results = result
            .as_ref()
            .map(|r| r.hits().map(AuditResult::from).collect())
            .unwrap_or_default();
        let scope = self.search.repos_in_scope(&caller.access, &request.repos);
        self.record_synced(
            caller,
            Some(request.query),
            scope,
            results,
            result.as_ref().err(),
            started,
        )
        .await?;
        result
    }

    /// Context assembly: the pieces returned, by label.
    pub async fn context(&self, caller: &Caller, request: ContextRequest) -> Result<Context, ServiceError> {
        let started = Instant::now();
        let (query, repos) = (request.query.clone(), request.repos.clone());
        let result = self.context.context(&caller.access, request).await;
        let results = result
            .as_ref()
            .map(|c| c.pieces.iter().map(AuditResult::from).collect())
            .unwrap_or_default();
        let scope = self.search.repos_in_scope(&caller.access, &repos);
        self.record_synced(caller, Some(query), scope, results, result.as_ref().err(), started)
            .await?;
        result
    }

    /// An answer stream (recorded when it starts, naming the pieces sent to
    /// the backend, or when it fails before).
    pub async fn answer(&self, caller: &Caller, request: AnswerRequest) -> Result<AnswerStream, ServiceError> {
        self.answers.answer(&caller.access, request, caller.surface).await
    }

    /// The gateway: a conversation in, sanitized deltas out (recorded like an answer).
    pub async fn chat(&self, caller: &Caller, request: ChatRequest) -> Result<ChatDeltas, ServiceError> {
        self.answers.chat(&caller.access, request, caller.surface).await
    }

    /// Lines of one indexed file, redacted.
    pub async fn read_code(&self, caller: &Caller, request: ReadRequest) -> Result<CodeSlice, ServiceError> {
        let started = Instant::now();
        let repo = request.repo.clone();
        let result = self.code.read(&caller.access, request).await;
        let (scope, results) = match &result {
            Ok(slice) => (
                vec![slice.repo.clone()],
                vec![AuditResult {
                    id: label(&slice.repo, &slice.path, slice.start_line, slice.end_line),
                    repo: slice.repo.clone(),
                    path: slice.path.clone(),
                    commit: slice.commit.clone(),
                }],
            ),
            // a refused repo is not named in the record's scope
            Err(e) if e.kind == crate::error::ServiceErrorKind::Forbidden => (Vec::new(), Vec::new()),
            Err(_) => (vec![repo], Vec::new()),
        };
        self.record_synced(caller, None, scope, results, result.as_ref().err(), started)
            .await?;
        result
    }

    /// The indexed repositories the caller may read.
    pub fn code_repos(&self, caller: &Caller) -> Result<Vec<RepoInfo>, ServiceError> {
        let started = Instant::now();
        let result = self.code.list_repos(&caller.access);
        let scope = match &result {
            Ok(_) => self.search.repos_in_scope(&caller.access, &[]),
            Err(_) => Vec::new(),
        };
        self.record(caller, None, scope, Vec::new(), result.as_ref().err(), started)?;
        result
    }

    /// The readable repos' status, and the index's generations as far as they show.
    pub fn repos(&self, caller: &Caller) -> Result<(Vec<RepoStatus>, IndexStatus), ServiceError> {
        let started = Instant::now();
        let result = self.list_repos(&caller.access);
        let names: Vec<String> = result
            .as_ref()
            .map(|r| r.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        self.record(caller, None, names.clone(), Vec::new(), result.as_ref().err(), started)?;
        let repos = result?;
        Ok((repos, self.index_status(&names)))
    }

    /// One readable repo's status.
    pub fn repo(&self, caller: &Caller, name: &str) -> Result<RepoStatus, ServiceError> {
        let started = Instant::now();
        let result = self.get_repo(&caller.access, name);
        self.recorded_for_repo(caller, name, result, started)
    }

    /// Queues a run of `name` (a rebuild when `full`).
    pub fn reindex(&self, caller: &Caller, name: &str, full: bool) -> Result<RepoStatus, ServiceError> {
        let started = Instant::now();
        let result = self.reindex_repo(&caller.access, name, full);
        self.recorded_for_repo(caller, name, result, started)
    }

    /// Purges `name`.
    pub async fn remove(&self, caller: &Caller, name: &str) -> Result<(), ServiceError> {
        let started = Instant::now();
        let result = self.remove_repo(&caller.access, name).await;
        self.recorded_for_repo(caller, name, result, started)
    }

    /// The start of a status watch: the current status of the readable repos
    /// among `wanted` (all readable ones when empty), checked and recorded.
    pub fn watch(&self, caller: &Caller, wanted: &[String]) -> Result<Vec<RepoStatus>, ServiceError> {
        let started = Instant::now();
        let result = wanted
            .iter()
            .try_for_each(|name| self.get_repo(&caller.access, name).map(|_| ()))
            .and_then(|()| self.list_repos(&caller.access));
        let readable: Vec<String> = result
            .as_ref()
            .map(|r| r.iter().map(|s| s.name.clone()).collect())
            .unwrap_or_default();
        self.record(caller, None, readable, Vec::new(), result.as_ref().err(), started)?;
        result
    }

    /// A call refused before it reached an operation: recorded, then
    /// returned (or the 503 of a record that could not be taken).
    pub fn refuse(&self, caller: &Caller, error: ServiceError) -> ServiceError {
        match self.record(caller, None, Vec::new(), Vec::new(), Some(&error), Instant::now()) {
            Ok(()) => error,
            Err(unrecorded) => unrecorded,
        }
    }
}
